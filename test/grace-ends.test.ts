/**
 * Sessions that SESSION_GRACE_S ended end at their server's last heartbeat before the silence (README,
 * "Usage"; issue 15: "a session ended by a fence or a timeout ends at the last moment the server was known
 * alive"), also when the stream or viewer shard learns of that end late: from the registry's answer after
 * the server came back (which moves its last heartbeat on), or from a notice merged with a later
 * restart's while the first was still undelivered (project "webhooks": the stream.ended events too).
 */
import { runDurableObjectAlarm } from "cloudflare:test";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { createStream, hook, newEdge, play, publish, uniqueStream } from "./srs";
import { at, beat, deliverNotices, restarted, serverStub, shardStub, streamStub, iso, usage, useFakeClock } from "./fleet";
import { Receiver } from "./receiver";
import { StreamObject } from "../src/stream/object";

const ALLOW = { status: 200, body: { code: 0 } };
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
useFakeClock();

let receiver: Receiver;
beforeEach(() => {
  receiver = new Receiver().install();
});

const total = (body: any, field: string) => body.buckets.reduce((s: number, b: any) => s + b[field], 0);

describe("SESSION_GRACE_S, learnt by asking the registry after the server came back", () => {
  it("a publisher ended by the grace ends at its server's last heartbeat, also when its stream learns of it from the registry's answer after the server returned", async () => {
    const edge = newEdge();
    const stream = uniqueStream();
    const key = await createStream(stream);
    await beat(edge);
    expect(await hook(publish("live", stream, key, { ...edge, client: "pub1" }))).toEqual(ALLOW);
    at(20_000);
    await beat(edge);
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
    const edge = newEdge();
    const stream = uniqueStream();
    const key = await createStream(stream);
    await beat(edge);
    expect(await hook(publish("live", stream, key, { ...edge, client: "pub1" }))).toEqual(ALLOW);
    at(20_000);
    await beat(edge);
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
    const edge = newEdge();
    const stream = uniqueStream();
    const key = await createStream(stream);
    await beat(edge);
    expect(await hook(publish("live", stream, key, { ...edge, client: "pub1" }))).toEqual(ALLOW);
    expect(await hook(play("live", stream, { ...edge, client: "v1" }))).toEqual(ALLOW);
    at(20_000);
    await beat(edge);
    // Silent for more than a day; the process is heard from again (the grace ends pub1 and v1 at 20 s)...
    at(DAY + 60_000);
    await beat(edge);
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
