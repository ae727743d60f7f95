/**
 * Ends by hand whose answers the platform loses after the object acted (a retryable error: README,
 * "Platform errors"). The call is retried, and what the first attempt ended must still be in the
 * answer: the admin API reports it, kicks it and sends its events from that answer, and a retry that
 * found nothing left to end reported nothing. (Found by an adversarial pass: each test failed before
 * src/platform/kept-answers.ts.)
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { StreamObject } from "../src/stream/object";
import { ViewerShard } from "../src/viewers/shard";
import { admin, createStream, hook, newEdge, play, publish, streamState, uniqueStream } from "./srs";
import { retryable } from "./fleet";
import { ALLOW, limited, playWith, tokenOf } from "./identity";

afterEach(() => void vi.restoreAllMocks());

/** The first call of `method` runs to its end, and its answer is lost on the way back. Returns the count of calls. */
function firstAnswerLost<T extends object>(proto: T, method: keyof T & string): () => number {
  const real = proto[method] as (...args: unknown[]) => unknown;
  let calls = 0;
  vi.spyOn(proto, method as never).mockImplementation(function (this: T, ...args: unknown[]) {
    const answer = real.apply(this, args);
    if (calls++ === 0) throw retryable();
    return answer;
  } as never);
  return () => calls;
}
const clients = (ended: { clientId: string }[]) => ended.map((e) => e.clientId).sort();

describe("an operator's end whose answer was lost", () => {
  it("DELETE …/sessions still answers the publisher and the viewer it ended (the stream's and the shard's answers each lost once)", async () => {
    const edge = newEdge();
    const s = uniqueStream();
    const key = await createStream(s);
    expect(await hook(publish("live", s, key, { ...edge, client: "enc00001" }))).toEqual(ALLOW);
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    const stream = firstAnswerLost(StreamObject.prototype, "endSessions");
    const shard = firstAnswerLost(ViewerShard.prototype, "endSessions");
    const res = await admin("DELETE", `/streams/live/${s}/sessions`);
    expect(res.status).toBe(200);
    expect([stream(), shard()]).toEqual([2, 2]);
    expect(clients(res.body.ended)).toEqual(["enc00001", "view0001"]);
    expect(res.body.failed).toBeUndefined();
    expect(await streamState(s)).toMatchObject({ live: false, viewers: 0 });
  });

  it("DELETE /admin/servers/{id}/sessions answers the viewer its shard ended (it answered 500)", async () => {
    const edge = newEdge();
    const s = uniqueStream();
    await createStream(s);
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    firstAnswerLost(ViewerShard.prototype, "endAll");
    const res = await admin("DELETE", `/servers/${edge.server}/sessions`);
    expect(res.status).toBe(200);
    expect(clients(res.body.ended)).toEqual(["view0001"]);
    expect(res.body.remaining).toBe(0);
    expect((await streamState(s)).viewers).toBe(0);
  });

  it("a revocation of a viewer still answers the session it ended", async () => {
    const edge = newEdge();
    const s = await limited({ maxSessionsPerViewer: null });
    expect(await hook(playWith(s, edge, "tv000001", await tokenOf(s, "alice", Math.floor(Date.now() / 1000) - 5)))).toEqual(ALLOW);
    firstAnswerLost(ViewerShard.prototype, "endRevoked");
    const res = await admin("POST", `/streams/live/${s}/revocations`, { sub: "alice" });
    expect(res.status).toBe(201);
    expect(clients(res.body.ended)).toEqual(["tv000001"]);
    expect((await streamState(s)).viewers).toBe(0);
  });
});
