/**
 * Sessions that SESSION_GRACE_S ended end at their server's last heartbeat before the silence (README,
 * "Usage"; issue 15: "a session ended by a fence or a timeout ends at the last moment the server was known
 * alive"), also when the stream or viewer shard learns of that end late: from the registry's answer after
 * the server came back (which moves its last heartbeat on), or from a notice merged with a later
 * restart's while the first was still undelivered (project "webhooks": the stream.ended events too).
 */
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { ALLOW, createStream, hook, newEdge, play, publish, uniqueStream } from "../srs";
import { at, beat, deliverNotices, events, holdMatching, hourPeaks, restarted, serverStub, shardStub, streamStub, iso, T0, usage, useFakeClock } from "../fleet";
import { Receiver } from "../receiver";
import { StreamObject } from "../../src/stream/object";
import type { ServerRegistry } from "../../src/server/registry";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
useFakeClock();

let receiver: Receiver;
beforeEach(() => {
  receiver = new Receiver().install();
});

const total = (body: any, field: string) => body.buckets.reduce((s: number, b: any) => s + b[field], 0);

/**
 * A publisher pub1 (and, with `viewer`, a viewer v1) on a fresh edge that heartbeats at 0 and 20 s, then
 * falls silent past SESSION_GRACE_S (which ends them at 20 s); `back`: heard from again at DAY + 60 s.
 */
async function silentPastTheGrace({ viewer = false, back = true } = {}) {
  const edge = newEdge();
  const stream = uniqueStream();
  const key = await createStream(stream);
  await beat(edge);
  expect(await hook(publish("live", stream, key, { ...edge, client: "pub1" }))).toEqual(ALLOW);
  if (viewer) expect(await hook(play("live", stream, { ...edge, client: "v1" }))).toEqual(ALLOW);
  at(20_000);
  await beat(edge);
  if (back) {
    at(DAY + 60_000);
    await beat(edge);
  }
  return { edge, stream, key };
}

describe("SESSION_GRACE_S, learnt by asking the registry after the server came back", () => {
  it("a publisher ended by the grace ends at its server's last heartbeat, also when its stream learns of it from the registry's answer after the server returned", async () => {
    const { edge, stream } = await silentPastTheGrace({ back: false });
    // Silent for more than a day, then the same process heartbeats again: the grace ends pub1 (at 20 s).
    at(DAY + 60_000);
    await beat(edge);
    // The stream's own sweep asks the registry before the registry's notice reaches it.
    await runDurableObjectAlarm(streamStub(stream));
    await deliverNotices(edge);
    const [, ended] = await receiver.received(stream, 2);
    expect(ended.body.data).toMatchObject({ client_id: "pub1", reason: "timeout" });
    const body = await usage(stream, `?from=${iso(0)}&to=${iso(DAY + 2 * HOUR)}`);
    // README: "one ended by a restart's fence or by SESSION_GRACE_S ends at its server's last heartbeat".
    expect({ duration: ended.body.data.duration, publishSeconds: total(body, "publishSeconds") }).toEqual({ duration: 20, publishSeconds: 20 });
  });

  it("viewers ended by the grace end at the last heartbeat, also when their shard learns of it from the registry's answer after the server returned", async () => {
    const edge = newEdge();
    const stream = uniqueStream();
    await createStream(stream);
    await beat(edge);
    expect(await hook(play("live", stream, { ...edge, client: "v1" }))).toEqual(ALLOW);
    at(20_000);
    await beat(edge);
    at(DAY + 60_000);
    await beat(edge);
    await runDurableObjectAlarm(shardStub(edge));
    await deliverNotices(edge);
    const body = await usage(stream, `?from=${iso(0)}&to=${iso(DAY + 2 * HOUR)}`);
    expect(total(body, "viewerSeconds")).toBe(20);
  });
});

describe("SESSION_GRACE_S on time, its notice not delivered (the stream could not be reached), the server back meanwhile", () => {
  it("the publisher still ends at the last heartbeat, not 42 s later, when the stream's sweep asks the registry", async () => {
    const { edge, stream } = await silentPastTheGrace({ back: false });
    // The registry's alarm ends the silence's sessions at the grace, on time; the stream cannot take the notice.
    const down = vi.spyOn(StreamObject.prototype, "applyStatus").mockImplementation(() => {
      throw Object.assign(new Error("Durable Object is overloaded. Too many requests queued."), { overloaded: true });
    });
    at(DAY + 20_000);
    await runDurableObjectAlarm(serverStub(edge));
    down.mockRestore();
    // The server is back a few seconds later; the stream's own sweep asks before the notice is tried again.
    at(DAY + 25_000);
    await beat(edge);
    await runDurableObjectAlarm(streamStub(stream));
    await deliverNotices(edge);
    const [, ended] = await receiver.received(stream, 2);
    const body = await usage(stream, `?from=${iso(0)}&to=${iso(DAY + 2 * HOUR)}`);
    expect({ reason: ended.body.data.reason, duration: ended.body.data.duration, publishSeconds: total(body, "publishSeconds") }).toEqual({ reason: "timeout", duration: 20, publishSeconds: 20 });
  });
});

describe("a grace's end and a restart whose notices meet in the registry's outbox", () => {
  it("sessions the grace ended still end at the last heartbeat before the silence when the returning process restarts before the notice goes out", async () => {
    // Silent for more than a day; the process is heard from again (the grace ends pub1 and v1 at 20 s)...
    const { edge, stream } = await silentPastTheGrace({ viewer: true });
    // ...and restarts ten seconds later, before the registry's alarm delivered the grace's notice.
    at(DAY + 70_000);
    await beat(restarted(edge));
    await deliverNotices(edge);
    const [, ended] = await receiver.received(stream, 2);
    const body = await usage(stream, `?from=${iso(0)}&to=${iso(DAY + 2 * HOUR)}`);
    // README: "one ended by a restart's fence or by SESSION_GRACE_S ends at its server's last heartbeat" (the one before the silence: 20 s).
    expect({ reason: ended.body.data.reason, duration: ended.body.data.duration, publishSeconds: total(body, "publishSeconds"), viewerSeconds: total(body, "viewerSeconds") })
      .toEqual({ reason: "timeout", duration: 20, publishSeconds: 20, viewerSeconds: 20 });
  });
});

describe("deploy: a grace expired by the previous version (expired_last_alive NULL), its notice pending, then a restart", () => {
  it("the pending notice's exact last heartbeat (20 s) is kept, not replaced by the restart's fallback guess (the cutoff)", async () => {
    const { edge, stream } = await silentPastTheGrace();
    // As the previous version left it: the notice (last_alive 20 s) pending, the row without expired_last_alive.
    const lastAlive = await runInDurableObject(serverStub(edge), (registry: ServerRegistry, state: DurableObjectState) => {
      state.storage.sql.exec("UPDATE servers SET expired_last_alive = NULL WHERE server_id = ?", edge.server);
      (registry as unknown as { servers: Map<string, { expired_last_alive: number | null }> }).servers.get(edge.server)!.expired_last_alive = null;
      return state.storage.sql
        .exec<{ last_alive: number }>("SELECT last_alive FROM notices WHERE server_id = ? AND kind = 'end' AND stream_key = ?", edge.server, `__defaultVhost__/live/${stream}`)
        .toArray()
        .map((r) => r.last_alive);
    });
    expect(lastAlive).toEqual([T0 + 20_000]);
    at(DAY + 70_000);
    await beat(restarted(edge));
    await deliverNotices(edge);
    const [, ended] = await receiver.received(stream, 2);
    expect({ reason: ended.body.data.reason, duration: ended.body.data.duration }).toEqual({ reason: "timeout", duration: 20 });
  });
});

describe("decision log", () => {
  it("a publisher the grace ended, learnt from the registry's answer after the return, is logged as ended by SESSION_GRACE_S (not 'its server is alive')", async () => {
    const { stream } = await silentPastTheGrace();
    await runDurableObjectAlarm(streamStub(stream));
    const fence = (await events(stream)).filter((e: any) => e.action === "fence").map((e: any) => e.reason);
    expect(fence).toHaveLength(1);
    expect(fence[0]).toMatch(/SESSION_GRACE_S/);
  });
});

describe("a grace's end and what follows it", () => {
  it("control: two graces told by the merged notice (no question first) end the first grace's publisher at 20 s", async () => {
    const { edge, stream } = await silentPastTheGrace();
    at(DAY + 80_000);
    await beat(edge);
    at(2 * DAY + 200_000);
    await beat(edge);
    await deliverNotices(edge);
    const [, ended] = await receiver.received(stream, 2);
    expect({ reason: ended.body.data.reason, duration: ended.body.data.duration }).toEqual({ reason: "timeout", duration: 20 });
  });

  it("a publisher admitted after the return, before the restart, ends at the restart's last heartbeat with reason restart", async () => {
    const edge = newEdge();
    const s1 = uniqueStream();
    const s2 = uniqueStream();
    const k1 = await createStream(s1);
    const k2 = await createStream(s2);
    await beat(edge);
    expect(await hook(publish("live", s1, k1, { ...edge, client: "pub1" }))).toEqual(ALLOW);
    at(20_000);
    await beat(edge);
    at(DAY + 60_000);
    await beat(edge);
    at(DAY + 65_000);
    expect(await hook(publish("live", s2, k2, { ...edge, client: "pub2" }))).toEqual(ALLOW);
    at(DAY + 68_000);
    await beat(edge);
    at(DAY + 70_000);
    await beat(restarted(edge));
    // s2's stream asks first; s1 hears by notice.
    await runDurableObjectAlarm(streamStub(s2));
    await deliverNotices(edge);
    const [, e1] = await receiver.received(s1, 2);
    const [, e2] = await receiver.received(s2, 2);
    expect([e1, e2].map((e) => ({ reason: e.body.data.reason, duration: e.body.data.duration }))).toEqual([
      { reason: "timeout", duration: 20 },
      { reason: "restart", duration: 3 },
    ]);
  });

  it("a grace notice on its way when the restart merges into it: delivered once in effect, the earlier end kept, nothing left pending", async () => {
    const { edge, stream } = await silentPastTheGrace();
    const held = holdMatching(StreamObject.prototype, "applyStatus", (_self, args) => args[0].cutoff > 0);
    const alarm = runDurableObjectAlarm(serverStub(edge));
    await vi.waitFor(() => expect(held.reached).toBe(true), { timeout: 10_000 });
    at(DAY + 70_000);
    await beat(restarted(edge));
    held.released = true;
    await alarm;
    await deliverNotices(edge);
    const events = await receiver.received(stream, 2);
    expect(events.map((e) => e.body.type)).toEqual(["stream.started", "stream.ended"]);
    expect({ reason: events[1].body.data.reason, duration: events[1].body.data.duration }).toEqual({ reason: "timeout", duration: 20 });
    const pending = await runInDurableObject(serverStub(edge), (_: ServerRegistry, state: DurableObjectState) =>
      state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM notices WHERE server_id = ?", edge.server).one().n);
    expect(pending).toBe(0);
  });

  it("peaks: an early and a restart ending in one notice take back each set's counts once", async () => {
    const edge = newEdge();
    const stream = uniqueStream();
    await createStream(stream);
    await beat(edge);
    at(5_000);
    expect(await hook(play("live", stream, { ...edge, client: "v1" }))).toEqual(ALLOW);
    at(20_000);
    await beat(edge);
    at(DAY + 60_000);
    await beat(edge);
    at(DAY + 70_000);
    expect(await hook(play("live", stream, { ...edge, client: "v2" }))).toEqual(ALLOW);
    at(DAY + 80_000);
    await beat(edge);
    at(DAY + 2 * HOUR + 60_000);
    await beat(restarted(edge));
    await deliverNotices(edge);
    const peaks = await hourPeaks(stream, 0, DAY + 3 * HOUR);
    expect([peaks[0], peaks[1], peaks[23], peaks[24], peaks[25], peaks[26]]).toEqual([1, 0, 0, 1, 0, 0]);
    const body = await usage(stream, `?from=${iso(0)}&to=${iso(DAY + 3 * HOUR)}`);
    expect(total(body, "viewerSeconds")).toBe(15 + 10);
  });
});
