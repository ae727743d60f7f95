/**
 * Events end to end (project "webhooks": EVENTS_WEBHOOK_URL is set): hooks and admin calls, then
 * what a receiver gets through the real queue and its consumer, signatures checked by the
 * receiver on its own (test/receiver.ts). Deliveries are awaited with vi.waitFor (the queue
 * delivers its batches within a second or so): nothing asserts how long they take.
 */
import { env } from "cloudflare:workers";
import { evictDurableObject, runDurableObjectAlarm } from "cloudflare:test";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { ALLOW, admin, createStream, hook, newEdge, play, publish, stopPlay, uniqueStream, unpublish } from "../srs";
import { at, beat, deliverNotices, restarted, streamStub, useFakeClock } from "../fleet";
import { Receiver } from "../receiver";
import { ViewerShard } from "../../src/viewers/shard";

useFakeClock();

let receiver: Receiver;
beforeEach(() => {
  receiver = new Receiver().install();
});

describe("stream events", () => {
  it("a publish of a few seconds delivers stream.started then stream.ended, signed, with duration and peak viewers", async () => {
    const edge = newEdge();
    const stream = uniqueStream();
    const key = await createStream(stream);
    expect(await hook(publish("live", stream, key, { ...edge, client: "pub1" }))).toEqual(ALLOW);
    at(1_000);
    expect(await hook(play("live", stream, { ...edge, client: "v1" }))).toEqual(ALLOW);
    expect(await hook(play("live", stream, { ...edge, client: "v2" }))).toEqual(ALLOW);
    at(3_000);
    await hook(stopPlay("live", stream, { ...edge, client: "v1" }));
    at(5_500);
    expect(await hook(unpublish("live", stream, { ...edge, client: "pub1" }))).toEqual(ALLOW);
    const [started, ended] = await receiver.received(stream, 2);
    expect(started.body).toMatchObject({ type: "stream.started", data: { vhost: "__defaultVhost__", app: "live", stream, server_id: edge.server, client_id: "pub1" } });
    expect(ended.body).toMatchObject({ type: "stream.ended", data: { stream, server_id: edge.server, client_id: "pub1", reason: "stop", duration: 5.5, peakViewers: 2 } });
    expect(started.signatureValid && ended.signatureValid).toBe(true);
    expect(new Set([started.id, ended.id]).size).toBe(2);
  });

  it("a publisher ended by its server's restart: stream.ended with reason restart, ending at the last heartbeat", async () => {
    const edge = newEdge();
    const stream = uniqueStream();
    const key = await createStream(stream);
    await beat(edge);
    await hook(publish("live", stream, key, { ...edge, client: "pub1" }));
    at(10_000);
    await beat(edge);
    at(600_000);
    await beat(restarted(edge));
    await deliverNotices(edge);
    const [, ended] = await receiver.received(stream, 2);
    expect(ended.body).toMatchObject({ type: "stream.ended", data: { reason: "restart", duration: 10 } });
  });

  it("refusals for the cap: stream.viewer_limit_reached at most once a minute while they go on", async () => {
    const [a, b] = [newEdge(), newEdge()];
    const stream = uniqueStream();
    await createStream(stream, { maxViewers: 1 });
    expect(await hook(play("live", stream, { ...a, client: "v1" }))).toEqual(ALLOW);
    for (const [edge, client] of [[a, "x1"], [b, "x2"], [a, "x3"], [b, "x4"]] as const) {
      expect((await hook(play("live", stream, { ...edge, client }))).status).toBe(403);
    }
    const [first] = await receiver.received(stream, 1);
    expect(first.body).toMatchObject({ type: "stream.viewer_limit_reached", data: { stream, maxViewers: 1 } });
    at(61_000);
    expect((await hook(play("live", stream, { ...a, client: "x5" }))).status).toBe(403);
    const all = await receiver.received(stream, 2);
    expect(all.map((d) => d.body.type)).toEqual(["stream.viewer_limit_reached", "stream.viewer_limit_reached"]);
  });

  it("stream.viewer_limit_reached stays once a minute when the stream's object restarts meanwhile", async () => {
    const [a, b, c] = [newEdge(), newEdge(), newEdge()];
    const stream = uniqueStream();
    await createStream(stream, { maxViewers: 1 });
    expect(await hook(play("live", stream, { ...a, client: "v1" }))).toEqual(ALLOW);
    expect((await hook(play("live", stream, { ...a, client: "x1" }))).status).toBe(403);
    await receiver.received(stream, 1);
    // The platform evicts the stream's object (its memory goes, its storage stays); another shard reports a refusal
    // within the minute (called here directly, as a shard does in the background, so that it lands before the clock moves).
    const stub = env.STREAM.get(env.STREAM.idFromName(`__defaultVhost__/live/${stream}`));
    await evictDurableObject(stub);
    await stub.viewerLimitReached(b.server, 1);
    at(61_000);
    expect((await hook(play("live", stream, { ...c, client: "x3" }))).status).toBe(403);
    const all = await receiver.received(stream, 2);
    expect(all.map((d) => [d.body.type, d.body.data.server_id])).toEqual([
      ["stream.viewer_limit_reached", a.server],
      ["stream.viewer_limit_reached", c.server],
    ]);
  });

  it("an operator ending sessions: session.ended_by_operator for each, and stream.ended for the publisher", async () => {
    const edge = newEdge();
    const stream = uniqueStream();
    const key = await createStream(stream);
    await hook(publish("live", stream, key, { ...edge, client: "pub1" }));
    await hook(play("live", stream, { ...edge, client: "v1" }));
    at(2_000);
    expect((await admin("DELETE", `/streams/live/${stream}/sessions`)).status).toBe(200);
    const events = await receiver.received(stream, 4);
    const byType = (t: string) => events.filter((d) => d.body.type === t).map((d) => d.body.data);
    expect(byType("session.ended_by_operator").map((d) => [d.role, d.client_id, d.reason]).sort()).toEqual([
      ["publisher", "pub1", "ended by operator"],
      ["viewer", "v1", "ended by operator"],
    ]);
    expect(byType("stream.ended")).toMatchObject([{ reason: "operator", duration: 2 }]);
  });

  it("session.ended_by_operator the queue refused is not lost: it waits in the stream's outbox, the admin call answers at once, the same webhook-id goes out", async () => {
    const edge = newEdge();
    const stream = uniqueStream();
    await createStream(stream);
    await hook(play("live", stream, { ...edge, client: "v1" }));
    const send = vi.spyOn(env.EVENTS, "sendBatch").mockRejectedValueOnce(new Error("queue unavailable"));
    const res = await admin("DELETE", `/streams/live/${stream}/sessions`);
    expect(res).toMatchObject({ status: 200, body: { ended: [{ role: "viewer", clientId: "v1" }] } });
    await vi.waitFor(() => expect(send).toHaveBeenCalled());
    const offered = (send.mock.calls[0][0] as MessageSendRequest<{ id: string }>[]).map((m) => m.body.id);
    send.mockRestore();
    await runDurableObjectAlarm(streamStub(stream));
    const [ended] = await receiver.received(stream, 1);
    expect(ended.body).toMatchObject({ type: "session.ended_by_operator", data: { stream, role: "viewer", client_id: "v1", reason: "ended by operator" } });
    expect(offered).toEqual([ended.id]);
  });

  it("one webhook-id, one body: a stream.ended whose queue send arrived but counted as failed goes again with the peakViewers first sent", async () => {
    const edge = newEdge();
    const stream = uniqueStream();
    const key = await createStream(stream);
    await hook(publish("live", stream, key, { ...edge, client: "pub1" }));
    await hook(play("live", stream, { ...edge, client: "v1" }));
    await receiver.received(stream, 1);
    // The shard answers differently when asked again (as one that timed out the first time would).
    const real = ViewerShard.prototype.peakViewers;
    let asked = 0;
    vi.spyOn(ViewerShard.prototype, "peakViewers").mockImplementation(function (this: ViewerShard, ...args) {
      return ++asked > 1 ? 99 : real.apply(this, args);
    });
    const sendReal = env.EVENTS.sendBatch.bind(env.EVENTS);
    const send = vi.spyOn(env.EVENTS, "sendBatch").mockImplementationOnce(async (messages) => {
      await sendReal(messages);
      throw new Error("queue send timed out");
    });
    at(5_000);
    await hook(unpublish("live", stream, { ...edge, client: "pub1" }));
    await vi.waitFor(() => expect(send).toHaveBeenCalled());
    send.mockRestore();
    await runDurableObjectAlarm(streamStub(stream));
    const ended = (await receiver.received(stream, 2)).find((d) => d.body.type === "stream.ended")!;
    await vi.waitFor(() => expect(receiver.attempts.filter((a) => a.id === ended.id)).toHaveLength(2), { timeout: 20_000, interval: 50 });
    const bodies = receiver.attempts.filter((a) => a.id === ended.id).map((a) => a.body);
    expect(bodies[0].data.peakViewers).toBe(1);
    expect(bodies[1]).toEqual(bodies[0]);
  });

  it("an event the queue refused stays in the stream's outbox and goes out with its alarm", async () => {
    const edge = newEdge();
    const stream = uniqueStream();
    const key = await createStream(stream);
    const send = vi.spyOn(env.EVENTS, "sendBatch").mockRejectedValueOnce(new Error("queue unavailable"));
    await hook(publish("live", stream, key, { ...edge, client: "pub1" }));
    await vi.waitFor(() => expect(send).toHaveBeenCalled());
    send.mockRestore();
    await runDurableObjectAlarm(streamStub(stream));
    const [started] = await receiver.received(stream, 1);
    expect(started.body.type).toBe("stream.started");
  });
});

describe("POST /admin/events/test", () => {
  it("queues a webhook.test event the receiver gets, and answers its id", async () => {
    const res = await admin("POST", "/events/test");
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({ configured: true, type: "webhook.test" });
    await vi.waitFor(() => expect(receiver.events.map((d) => d.id)).toContain(res.body.id), { timeout: 20_000, interval: 50 });
    const delivery = receiver.events.find((d) => d.id === res.body.id)!;
    expect(delivery.body.type).toBe("webhook.test");
    expect(delivery.signatureValid).toBe(true);
  });
});
