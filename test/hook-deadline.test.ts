/**
 * A hook's deadline (src/platform/retry.ts Deadline, README "Platform
 * errors"): an object that neither answers nor fails must not hold a hook
 * until SRS gives up on it (30 s, then SRS refuses with no reason anyone can
 * read). Every object call of one hook shares HOOK_DEADLINE_MS; past it the
 * hook fails closed with a reason naming the object, and an admission the
 * stuck attempt may still make is voided. The deadline is shortened to 50 ms
 * for the stuck hook (a spy on Deadline.left); the object is held until the
 * test lets it go, so the deadline always passes first.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { callObject, ObjectCallFailed } from "../src/platform/retry";
import { StreamObject } from "../src/stream/object";
import { ViewerShard } from "../src/viewers/shard";
import { ALLOW, createStream, hook, newEdge, play, publish, stopPlay, streamState, uniqueStream } from "./srs";
import { events, holdFirst, withDeadline } from "./fleet";


afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

/** Sends a hook whose deadline is 50 ms (HOOK_DEADLINE_MS shortened, for this hook only) and returns SRS's answer. */
async function pastTheDeadline(body: Parameters<typeof hook>[0], stuck: { reached: () => boolean }) {
  const reply = await withDeadline(50, () => hook(body));
  await vi.waitFor(() => expect(stuck.reached()).toBe(true)); // the object was reached, and held
  return reply;
}

describe("callObject's deadline", () => {
  it("a call that never answers fails as the object's, 503, no answer in time", async () => {
    const err = await callObject("viewer shard", () => ({}), () => new Promise<never>(() => {}), "refused", {}, 20).catch((e) => e);
    expect(err).toBeInstanceOf(ObjectCallFailed);
    expect(err.status).toBe(503);
    expect(err.errorClass).toBe("timeout");
    expect(err.message).toBe("viewer shard unavailable (no answer in time): refused");
  });

  it("with no time left the object is not called at all", async () => {
    let calls = 0;
    const err = await callObject("registry", () => ({}), async () => void calls++, "refused", {}, 0).catch((e) => e);
    expect(err).toMatchObject({ status: 503, errorClass: "timeout" });
    expect(calls).toBe(0);
  });
});

describe("a viewer shard stuck on an on_play", () => {
  it("answers SRS 503 with the reason at the deadline, and the stuck attempt admits nobody when it goes on", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    const edge = newEdge();
    const stuck = holdFirst(ViewerShard.prototype, "play");
    expect(await pastTheDeadline(play("live", s, { ...edge, client: "stuck001" }), stuck)).toEqual({ status: 503, body: { code: 503, reason: "viewer shard unavailable (no answer in time): refused" } });
    // The attempt goes on now: the undo voided it, so the one slot stays free.
    stuck.release();
    await vi.waitFor(async () => expect((await events(s)).some((e) => e.client === "stuck001" && /admission undone/.test(e.reason))).toBe(true));
    expect((await streamState(s)).viewers).toBe(0);
    expect(await hook(play("live", s, { ...edge, client: "next0001" }))).toEqual(ALLOW);
    expect((await streamState(s)).viewers).toBe(1);
  });

  it("an on_stop stuck the same way fails with the reason, and the stop lands when the shard goes on", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 5 });
    const edge = newEdge();
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    const stuck = holdFirst(ViewerShard.prototype, "stop");
    expect(await pastTheDeadline(stopPlay("live", s, { ...edge, client: "view0001" }), stuck)).toEqual({ status: 503, body: { code: 503, reason: "viewer shard unavailable (no answer in time): stop not recorded" } });
    stuck.release();
    await vi.waitFor(async () => expect((await streamState(s)).viewers).toBe(0));
  });
});

describe("a stream object stuck on an on_publish", () => {
  it("answers 503 at the deadline; the stuck attempt does not admit, and the encoder's retry is admitted", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    const edge = newEdge();
    const stuck = holdFirst(StreamObject.prototype, "publish");
    expect(await pastTheDeadline(publish("live", s, key, { ...edge, client: "enc00001" }), stuck)).toEqual({ status: 503, body: { code: 503, reason: "stream object unavailable (no answer in time): refused" } });
    stuck.release();
    await vi.waitFor(async () => expect((await events(s)).some((e) => e.client === "enc00001" && e.reason === "admission undone: an earlier answer of this hook was lost and the hook failed")).toBe(true));
    expect((await streamState(s)).live).toBe(false);
    expect(await hook(publish("live", s, key, { ...edge, client: "enc00002" }))).toEqual(ALLOW);
    expect((await streamState(s)).publisher).toMatchObject({ clientId: "enc00002" });
  });
});
