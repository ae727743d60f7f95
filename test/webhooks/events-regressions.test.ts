/**
 * Shrunk examples of the events model (test/webhooks/events-model.test.ts, adversarial pass h6): each one failed
 * before its fix. Project "webhooks" (EVENTS_WEBHOOK_URL set; deliveries as test/receiver.ts gets them).
 */
import { env } from "cloudflare:workers";
import { runDurableObjectAlarm } from "cloudflare:test";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { StreamObject } from "../../src/stream/object";
import { ALLOW, admin, createStream, hook, newEdge, play, publish, uniqueStream } from "../srs";
import { at, beat, deliverNotices, iso, restarted, until, usage, useFakeClock } from "../fleet";
import { Receiver } from "../receiver";

useFakeClock();

let receiver: Receiver;
beforeEach(() => {
  receiver = new Receiver().install();
});

/** A publisher pub1 admitted at 0 on an edge that heartbeats at 0 and 10 s. */
async function publishingTill10s() {
  const edge = newEdge();
  const stream = uniqueStream();
  const key = await createStream(stream);
  await beat(edge);
  expect(await hook(publish("live", stream, key, { ...edge, client: "pub1" }))).toEqual(ALLOW);
  at(10_000);
  await beat(edge);
  return { edge, stream };
}

/**
 * A publisher pub1 on an edge that heartbeats at 0 and 10 s and restarts at 20 s (a heartbeat with a new
 * service_id): its session ended then, at its last heartbeat (10 s). The registry's notice of the restart has
 * not reached the stream yet (its alarm runs the notices right after; a server on many streams, or a stream
 * slow to answer, leaves some waiting for seconds, a stream unreachable for up to a minute between tries).
 */
async function restartedNoticePending() {
  const { edge, stream } = await publishingTill10s();
  at(20_000);
  await beat(restarted(edge));
  at(60_000);
  return { edge, stream };
}

/** What the receiver got about `stream` once the notices are delivered: stream.ended's reason and duration, and the operator events. */
async function outcome(edge: ReturnType<typeof newEdge>, stream: string) {
  await deliverNotices(edge);
  const events = await receiver.received(stream, 2);
  // Anything else (a session.ended_by_operator) comes with them.
  await scheduler.wait(500);
  const ended = receiver.of(stream).filter((d) => d.body.type === "stream.ended").map((d) => ({ reason: d.body.data.reason, duration: d.body.data.duration }));
  const byOperator = receiver.of(stream).filter((d) => d.body.type === "session.ended_by_operator").map((d) => d.body.data.client_id);
  at(60_000);
  const publishSeconds = (await usage(stream, `?from=${iso(0)}&to=${iso(60_001)}`)).buckets.reduce((a: number, b: any) => a + b.publishSeconds, 0);
  return { started: events.filter((d) => d.body.type === "stream.started").length, ended, byOperator, publishSeconds };
}

describe("an operator's end of a publisher whose server restarted before, the restart's notice not delivered yet", () => {
  // README "Events": stream.ended's reason `restart` for a session its server's restart ended (fenced), ending at its
  // last heartbeat; "Usage": a session a restart's fence ended ends at its server's last heartbeat "also when its
  // stream learns of that end late". The operator ended nothing: the session had ended 40 s before the call.
  it("DELETE /admin/streams/{app}/{stream}/sessions: stream.ended says restart, 10 s; no session.ended_by_operator; 10 publish-seconds", async () => {
    const { edge, stream } = await restartedNoticePending();
    const res = await admin("DELETE", `/streams/live/${stream}/sessions`);
    expect(res.status).toBe(200);
    expect(res.body.ended).toEqual([]);
    expect(await outcome(edge, stream)).toEqual({ started: 1, ended: [{ reason: "restart", duration: 10 }], byOperator: [], publishSeconds: 10 });
  });

  it("DELETE /admin/servers/{id}/sessions: the same", async () => {
    const { edge, stream } = await restartedNoticePending();
    const res = await admin("DELETE", `/servers/${edge.server}/sessions`);
    expect(res.status).toBe(200);
    expect(res.body.ended).toEqual([]);
    expect(await outcome(edge, stream)).toEqual({ started: 1, ended: [{ reason: "restart", duration: 10 }], byOperator: [], publishSeconds: 10 });
  });
});

describe("an operator's end of a publisher whose server has been silent for longer than SESSION_GRACE_S, the registry's alarm not run yet", () => {
  // README "Events": reason `timeout` (silent for SESSION_GRACE_S); "Usage": it ends at its server's last heartbeat.
  it("DELETE /admin/streams/{app}/{stream}/sessions: stream.ended says timeout, at the last heartbeat; no session.ended_by_operator", async () => {
    const { edge, stream } = await publishingTill10s();
    // A day and a minute of silence; the registry's alarm (due at the grace's end) has not run.
    at(10_000 + 86_400_000 + 60_000);
    const res = await admin("DELETE", `/streams/live/${stream}/sessions`);
    expect(res.status).toBe(200);
    expect(res.body.ended).toEqual([]);
    await deliverNotices(edge);
    await receiver.received(stream, 2);
    await scheduler.wait(500);
    const ended = receiver.of(stream).filter((d) => d.body.type === "stream.ended").map((d) => ({ reason: d.body.data.reason, duration: d.body.data.duration }));
    expect(ended).toEqual([{ reason: "timeout", duration: 10 }]);
    expect(receiver.of(stream).filter((d) => d.body.type === "session.ended_by_operator")).toEqual([]);
  });
});

describe("stream.viewer_limit_reached once a minute while refusals go on, whichever edges refuse", () => {
  // An edge's shard told the stream of a refusal within the minute of the last event (no event: the stream's minute),
  // then stayed quiet for a minute from its own word: its refusals 70 s after the first event raised none (the next one
  // would have come only at 102 s), though refusals had gone on all along.
  it("must not happen (fixed): a refusal a minute after the last event raises none because its shard spoke within that minute", async () => {
    const [a, b] = [newEdge(), newEdge()];
    const stream = uniqueStream();
    await createStream(stream, { maxViewers: 1 });
    expect(await hook(play("live", stream, { ...a, client: "v1" }))).toEqual(ALLOW);
    expect((await hook(play("live", stream, { ...a, client: "x1" }))).body.code).toBe(4005);
    await receiver.received(stream, 1);
    at(42_000);
    const told = vi.spyOn(StreamObject.prototype, "viewerLimitReached");
    expect((await hook(play("live", stream, { ...b, client: "x2" }))).body.code).toBe(4005);
    // b's shard tells the stream in the background: that word lands at 42 s (the stream's minute: no event).
    await until(() => told.mock.calls.length === 1);
    at(70_000);
    expect((await hook(play("live", stream, { ...b, client: "x3" }))).body.code).toBe(4005);
    const all = await receiver.received(stream, 2);
    expect(all.map((d) => [d.body.type, d.body.data.server_id])).toEqual([
      ["stream.viewer_limit_reached", a.server],
      ["stream.viewer_limit_reached", b.server],
    ]);
    // (The receiver's polling moves the fake clock on a little: the second event is x3's refusal, at 70 s or just after.)
    expect(all[1].body.timestamp >= iso(70_000) && all[1].body.timestamp < iso(71_000)).toBe(true);
  });
});

describe("events a refused queue kept in the stream's outbox", () => {
  // The stream's alarm fires early for its rounds (a shard waiting for slots) and ran its sweep, which sends what waits
  // in the outbox, only when the sweep was due (2 × SERVER_TIMEOUT_S after it was armed): a stream.started the queue
  // refused waited for the sweep while the rounds' alarms came and went.
  it("must not happen (fixed): they wait for the sweep while the stream's rounds run", async () => {
    const [a, b] = [newEdge(), newEdge()];
    const stream = uniqueStream();
    const key = await createStream(stream, { maxViewers: 1 });
    expect(await hook(play("live", stream, { ...a, client: "v1" }))).toEqual(ALLOW);
    expect((await hook(play("live", stream, { ...b, client: "x1" }))).body.code).toBe(4005);
    await receiver.received(stream, 1);
    const refused = vi.spyOn(env.EVENTS, "sendBatch").mockRejectedValue(new Error("queue unavailable (test)"));
    expect(await hook(publish("live", stream, key, { ...a, client: "pub1" }))).toEqual(ALLOW);
    await until(() => refused.mock.calls.length > 0);
    refused.mockRestore();
    // b still waits: the next alarm is a round's, well before the sweep.
    expect(await runDurableObjectAlarm(env.STREAM.get(env.STREAM.idFromName(`__defaultVhost__/live/${stream}`)))).toBe(true);
    const all = await receiver.received(stream, 2);
    expect(all.map((d) => d.body.type)).toEqual(["stream.viewer_limit_reached", "stream.started"]);
  });
});
