/**
 * Review of issue 10 (liveness and epochs): sequences under which a rule broke.
 */
import { runDurableObjectAlarm } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import { ViewerShard } from "../src/viewers/shard";
import { StreamObject } from "../src/stream/object";
import { ViewerSeats } from "../src/viewers/seats";
import { ALLOW, admin, close, createStream, hook, play, publish, stopPlay, streamHook, streamState, uniqueStream } from "./srs";
import { at, beat, deliverNotices, holdMatching, overloaded, restarted, serverListed, serverStub, streamStub, until, edge, other, twoEdgesOnTheFakeClock } from "./fleet";


twoEdgesOnTheFakeClock();

describe("a restart's heartbeat is a heartbeat, even while its shard's notice is on its way", () => {
  it("the restarted process, which heartbeated 1.5 s ago, is not taken for silent: its publisher keeps blocking", async () => {
    // The old process heartbeats at 0 and has a viewer (so its server's viewer shard has a notice to get at a restart).
    expect(await beat(edge)).toEqual(ALLOW);
    const v = uniqueStream();
    await createStream(v);
    expect(await hook(play("live", v, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    const s = uniqueStream();
    const key = await createStream(s);

    // SRS restarts; the new process's first heartbeat comes 29 s after the old one's last. Its shard's notice
    // is slow to arrive (a cold or busy shard: the registry waits up to 5 s for it before it answers).
    const next = restarted(edge);
    const slow = holdMatching(ViewerShard.prototype, "applyStatus", (_self, args) => args[0]?.serviceId === edge.service);
    at(29_000);
    const restartBeat = beat(next);
    await until(() => slow.reached);
    // The new process's encoder publishes: admitted (the restart is recorded).
    at(29_500);
    expect(await hook(publish("live", s, key, { ...next, client: "enc00001" }))).toEqual(ALLOW);

    // 1.5 s after that heartbeat, another edge's encoder tries the same stream.
    at(30_500);
    expect(await beat(other)).toEqual(ALLOW);
    const second = await hook(publish("live", s, key, { ...other, client: "enc00002" }));
    slow.released = true;
    expect(await restartBeat).toEqual(ALLOW);
    expect(second.body.code, "a second live publisher admitted").toBe(4004);
    expect(await serverListed(next)).toMatchObject({ serviceId: next.service, alive: true });
    expect(await streamState(s)).toMatchObject({ live: true, publisher: { serverId: next.server, state: "live" } });
  });
});

const TIMEOUT_MS = 30_000;
const GRACE_MS = 86_400_000;
const RETENTION_MS = 7 * 86_400_000;

describe("SESSION_GRACE_S ends the same sessions at the stream and in the server index", () => {
  /** The edge heartbeats at 0 and goes silent (30 s); its encoder's on_publish arrived at 29 s and the stream admitted it at `admittedAt`. */
  async function straddlingPublisher(admittedAt: number) {
    expect(await beat(edge)).toEqual(ALLOW);
    const s = uniqueStream();
    const key = await createStream(s);
    const slow = holdMatching(StreamObject.prototype, "publish", (_self, args) => args[0]?.clientId === "enc00001");
    at(29_000);
    const publishing = hook(publish("live", s, key, { ...edge, client: "enc00001" }));
    await until(() => slow.reached);
    at(admittedAt);
    slow.released = true;
    expect(await publishing).toEqual(ALLOW);
    expect((await serverListed(edge)).sessions).toBe(1);
    return { s, key };
  }

  it("an encoder whose on_publish arrived before its edge went silent, admitted a moment after, is ended by the grace like the rest; a week later the edge is forgotten and blocks nobody", async () => {
    // The stream's decision took 2 s (a busy object, a liveness round, a takeover's kick): it admits the
    // encoder at 31 s, just after the edge's silence began. Then the edge stays partitioned, for good.
    const { s, key } = await straddlingPublisher(31_000);

    // A day of silence: SESSION_GRACE_S ends what the edge held when it went silent.
    at(GRACE_MS + 60_000);
    await runDurableObjectAlarm(serverStub(edge));
    await deliverNotices(edge);
    await runDurableObjectAlarm(streamStub(s));
    expect((await streamState(s)).publisher, "the edge's encoder after SESSION_GRACE_S").toBeNull();
    expect((await serverListed(edge))?.sessions ?? 0, "indexed sessions of the edge").toBe(0);

    // A week later the edge (decommissioned) is forgotten: nothing of it comes back as a live publisher.
    at(GRACE_MS + RETENTION_MS + 120_000);
    await runDurableObjectAlarm(serverStub(edge));
    await runDurableObjectAlarm(streamStub(s));
    expect(await beat(other)).toEqual(ALLOW);
    expect(await hook(publish("live", s, key, { ...other, client: "enc00002" })), "the encoder on a live edge").toEqual(ALLOW);
    expect(await serverListed(edge), "the forgotten edge").toBeUndefined();
  });

  it("whatever the stream still holds of a silent edge after the grace stays indexed (on_close, a restart and an operator find it)", async () => {
    // A decision slower than any hook's deadline (it cannot happen, but the index must not depend on it).
    const { s } = await straddlingPublisher(45_000);
    at(GRACE_MS + 60_000);
    await runDurableObjectAlarm(serverStub(edge));
    await deliverNotices(edge);
    const held = (await streamState(s)).publisher ? 1 : 0;
    expect((await serverListed(edge))?.sessions ?? 0, "indexed sessions of the edge").toBe(held);
    if (held) {
      const ended = await admin("DELETE", `/servers/${edge.server}/sessions`);
      expect(ended.body.ended).toHaveLength(1);
      expect((await streamState(s)).publisher).toBeNull();
    }
  });
});

describe("SESSION_GRACE_S's end notice, delivered late, and the returned process's next encoder", () => {
  it("an encoder indexed after the grace's cutoff, still being admitted when the end notice lands, keeps its index entry: its on_close ends it", async () => {
    expect(await beat(edge)).toEqual(ALLOW);
    const s = uniqueStream();
    const key = await createStream(s);
    expect(await hook(publish("live", s, key, { ...edge, client: "enc00001" }))).toEqual(ALLOW);
    // The stream cannot be told anything for a while (overloaded): the grace's end notice waits in the outbox.
    const told = { failing: true };
    const real = StreamObject.prototype.applyStatus;
    const failing = async function (this: StreamObject, ...args: Parameters<StreamObject["applyStatus"]>) {
      if (told.failing) throw overloaded();
      return real.apply(this, args);
    };
    vi.spyOn(StreamObject.prototype, "applyStatus").mockImplementation(failing as unknown as StreamObject["applyStatus"]);
    vi.spyOn(console, "error").mockImplementation(() => {});
    at(TIMEOUT_MS + 1000);
    await runDurableObjectAlarm(serverStub(edge));
    at(GRACE_MS + 60_000);
    await runDurableObjectAlarm(serverStub(edge));
    // The same process is heard from again, and its next encoder publishes the stream: indexed now, after the cutoff,
    // while the stream's decision is still on its way.
    at(GRACE_MS + 120_000);
    expect(await beat(edge)).toEqual(ALLOW);
    const slow = holdMatching(StreamObject.prototype, "publish", (_self, args) => args[0]?.clientId === "enc00002");
    const publishing = hook(publish("live", s, key, { ...edge, client: "enc00002" }));
    await until(() => slow.reached);
    // The end notice lands: the grace ends the first encoder; the index entries it covers go, not the newer one.
    told.failing = false;
    await deliverNotices(edge);
    slow.released = true;
    expect(await publishing).toEqual(ALLOW);
    expect(await streamState(s)).toMatchObject({ live: true, publisher: { clientId: "enc00002" } });
    expect((await serverListed(edge)).sessions).toBe(1);
    // SRS closes the encoder's connection with no on_unpublish (a publish it refused after we allowed it): on_close finds it.
    expect(await hook(close({ ...edge, client: "enc00002" }))).toEqual(ALLOW);
    expect((await streamState(s)).publisher).toBeNull();
  });
});

describe("viewers over the cap after a heal", () => {
  it("while the count stays over the cap, a viewer who leaves frees no slot for a new one, on either edge", async () => {
    expect(await beat(edge)).toEqual(ALLOW);
    expect(await beat(other)).toEqual(ALLOW);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 2 });
    expect(await hook(play("live", s, { ...edge, client: "old00001" }))).toEqual(ALLOW);
    expect(await hook(play("live", s, { ...edge, client: "old00002" }))).toEqual(ALLOW);
    at(TIMEOUT_MS + 1000);
    expect(await beat(other)).toEqual(ALLOW);
    expect(await hook(play("live", s, { ...other, client: "new00001" }))).toEqual(ALLOW);
    expect(await hook(play("live", s, { ...other, client: "new00002" }))).toEqual(ALLOW);
    // The edge is back: 4 connected viewers for a cap of 2.
    at(TIMEOUT_MS + 2000);
    expect(await beat(edge)).toEqual(ALLOW);
    await deliverNotices(edge);
    expect(await streamState(s)).toMatchObject({ viewers: 4, suspendedViewers: 0 });
    // The stream's record of the returned edge's lease covers its viewers again (slots it had given back while they were
    // suspended): the grants add up to every connected viewer, so no slot counts as free while the stream is over its cap.
    expect((await streamState(s)).shards.find((x: any) => x.serverId === edge.server), "the returned edge's lease").toMatchObject({ viewers: 2, leased: 2 });
    // One leaves on each edge: 2 left, at the cap. Nobody new is admitted until fewer than 2 watch.
    expect(await hook(stopPlay("live", s, { ...other, client: "new00001" }))).toEqual(ALLOW);
    expect((await hook(play("live", s, { ...other, client: "new00003" }))).body.code, "3 watching, cap 2 (other edge)").toBe(4005);
    expect((await hook(play("live", s, { ...edge, client: "old00003" }))).body.code, "3 watching, cap 2 (returning edge)").toBe(4005);
    expect(await hook(stopPlay("live", s, { ...edge, client: "old00001" }))).toEqual(ALLOW);
    expect((await hook(play("live", s, { ...other, client: "new00004" }))).body.code, "2 watching, cap 2 (other edge)").toBe(4005);
    expect((await hook(play("live", s, { ...edge, client: "old00004" }))).body.code, "2 watching, cap 2 (returning edge)").toBe(4005);
    expect((await streamState(s)).viewers).toBe(2);
  });
});

describe("SESSION_GRACE_S and a viewer admitted a moment after its edge went silent", () => {
  it("is ended by the grace like the rest; the edge, gone for good, is forgotten a week later", async () => {
    expect(await beat(edge)).toEqual(ALLOW);
    const s = uniqueStream();
    await createStream(s, { playAuth: "token", maxSessionsPerViewer: 2 });
    const token = (await admin("POST", `/streams/live/${s}/tokens`, { sub: "alice", ttl: 7200 })).body.token;
    const watch = (client: string) => hook(streamHook("on_play", "live", s, { ...edge, client }, `token=${token}`));
    expect(await watch("view0001")).toEqual(ALLOW);
    // At 29 s alice's second screen's on_play reaches the edge's shard, which counts her sessions at her
    // seats object: it answers at 31 s (busy), just after the edge's silence began. Then the edge is gone.
    const slow = holdMatching(ViewerSeats.prototype, "take", () => true);
    at(29_000);
    const second = watch("view0002");
    await until(() => slow.reached);
    at(31_000);
    slow.released = true;
    expect(await second).toEqual(ALLOW);

    at(GRACE_MS + 60_000);
    await runDurableObjectAlarm(serverStub(edge));
    await deliverNotices(edge);
    expect(await streamState(s), "the edge's viewers after SESSION_GRACE_S").toMatchObject({ viewers: 0, suspendedViewers: 0 });

    at(GRACE_MS + RETENTION_MS + 120_000);
    await runDurableObjectAlarm(serverStub(edge));
    expect(await serverListed(edge), "the forgotten edge").toBeUndefined();
  });
});

describe("a second SESSION_GRACE_S of the same process", () => {
  it("a process that came back after one grace and fell silent again for a whole grace loses the sessions it held the second time", async () => {
    expect(await beat(edge)).toEqual(ALLOW);
    const first = uniqueStream();
    const firstKey = await createStream(first);
    expect(await hook(publish("live", first, firstKey, { ...edge, client: "enc00001" }))).toEqual(ALLOW);

    // A day of silence ends the first encoder.
    at(TIMEOUT_MS + 1000);
    await runDurableObjectAlarm(serverStub(edge));
    at(GRACE_MS + 60_000);
    await runDurableObjectAlarm(serverStub(edge));
    await deliverNotices(edge);
    expect((await streamState(first)).publisher, "after the first grace").toBeNull();

    // The same process comes back, and its next encoder publishes another stream.
    at(GRACE_MS + 120_000);
    expect(await beat(edge)).toEqual(ALLOW);
    const second = uniqueStream();
    const secondKey = await createStream(second);
    expect(await hook(publish("live", second, secondKey, { ...edge, client: "enc00002" }))).toEqual(ALLOW);

    // Silent again, for another whole day: that encoder is over for good too.
    at(GRACE_MS + 120_000 + TIMEOUT_MS + 1000);
    await runDurableObjectAlarm(serverStub(edge));
    await deliverNotices(edge);
    expect(await streamState(second), "suspended while the edge is silent").toMatchObject({ publisher: { clientId: "enc00002", state: "suspended" } });
    at(2 * GRACE_MS + 180_000);
    await runDurableObjectAlarm(serverStub(edge));
    await deliverNotices(edge);
    await runDurableObjectAlarm(streamStub(second));
    expect((await streamState(second)).publisher, "after the second grace").toBeNull();
    expect((await serverListed(edge))?.sessions ?? 0, "indexed sessions of the edge").toBe(0);

    // The process is heard from once more: nothing of the second silence comes back.
    at(2 * GRACE_MS + 240_000);
    expect(await beat(edge)).toEqual(ALLOW);
    await deliverNotices(edge);
    expect((await streamState(second)).publisher, "after the return").toBeNull();
  });
});

describe("SERVER_RETENTION_S and a server that holds sessions", () => {
  it("a server without heartbeats whose encoder publishes for more than a week is not forgotten: its restart still ends that encoder and admits the new one", async () => {
    // The edge sends no heartbeats (heartbeats off in its SRS config): only its hooks speak for it.
    const s = uniqueStream();
    const key = await createStream(s);
    expect(await hook(publish("live", s, key, { ...edge, client: "enc00001" }))).toEqual(ALLOW);

    // Eight days of one long publish, nothing else heard from the edge.
    at(RETENTION_MS + 86_400_000);
    await runDurableObjectAlarm(serverStub(edge));
    expect(await serverListed(edge), "an edge whose encoder still publishes").toMatchObject({ serviceId: edge.service, sessions: 1 });

    // SRS restarts; its encoder reconnects. The start hook of a new process on a server without heartbeats is its restart.
    const next = restarted(edge);
    expect(await hook(publish("live", s, key, { ...next, client: "enc00002" })), "the restarted edge's encoder").toEqual(ALLOW);
    await deliverNotices(edge);
    expect(await serverListed(edge)).toMatchObject({ serviceId: next.service, sessions: 1 });
    expect(await streamState(s)).toMatchObject({ live: true, publisher: { clientId: "enc00002", state: "live" } });
  });
});

describe("SERVER_TIMEOUT_S to the millisecond", () => {
  it("a server is alive until SERVER_TIMEOUT_S after its last heartbeat and silent from then on: its alarm at that moment suspends its encoder", async () => {
    expect(await beat(edge)).toEqual(ALLOW);
    const s = uniqueStream();
    const key = await createStream(s);
    expect(await hook(publish("live", s, key, { ...edge, client: "enc00001" }))).toEqual(ALLOW);
    at(TIMEOUT_MS - 1);
    expect(await serverListed(edge)).toMatchObject({ alive: true });
    at(TIMEOUT_MS);
    expect(await serverListed(edge)).toMatchObject({ alive: false });
    await runDurableObjectAlarm(serverStub(edge));
    await deliverNotices(edge);
    expect(await streamState(s)).toMatchObject({ live: false, publisher: { clientId: "enc00001", state: "suspended" } });
  });
});

describe("the admin view of a stream whose publishers are all suspended", () => {
  it("shows the publisher that took the stream last as the publisher, the earlier one among the conflicts", async () => {
    expect(await beat(edge)).toEqual(ALLOW);
    expect(await beat(other)).toEqual(ALLOW);
    const s = uniqueStream();
    const key = await createStream(s);
    expect(await hook(publish("live", s, key, { ...edge, client: "enc00001" }))).toEqual(ALLOW);
    // The edge falls silent: its encoder is suspended, and the encoder on the other edge takes the stream.
    at(TIMEOUT_MS + 1000);
    expect(await beat(other)).toEqual(ALLOW);
    await runDurableObjectAlarm(serverStub(edge));
    await deliverNotices(edge);
    expect(await hook(publish("live", s, key, { ...other, client: "enc00002" }))).toEqual(ALLOW);
    // Then the other edge falls silent too.
    at(2 * TIMEOUT_MS + 2000);
    await runDurableObjectAlarm(serverStub(other));
    await deliverNotices(other);
    expect(await streamState(s)).toMatchObject({
      live: false,
      publisher: { clientId: "enc00002", state: "suspended" },
      conflicts: [{ clientId: "enc00001", state: "suspended" }],
    });
  });
});
