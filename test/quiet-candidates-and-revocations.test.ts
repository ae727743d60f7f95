/**
 * Adversarial review of cbb6771..d4ad866: notice answers (kept), passive hooks
 * that heal, retired ids kept by count, quiet candidates, outbox, tokens and
 * revocations. Each test states what should hold; the four findings (this file and
 * test/srs-api/admitted-play-asks-no-api.test.ts) failed on d4ad866 and were fixed by 6a23c63, e02f24b, 52fcffb.
 */
import { env } from "cloudflare:workers";
import { evictDurableObject, runDurableObjectAlarm } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { serverTimeoutMs } from "../src/config";
import { ALLOW, admin, createStream, hook, newEdge, play, publish, streamState, uniqueStream } from "./srs";
import { at, beat, deliverNotices, HOUR, iso, recallsFailOn, usage, restarted, serverStub, shardStub, useFakeClock } from "./fleet";
import { playWith, tokenOf } from "./identity";

const T = serverTimeoutMs(env);

useFakeClock();
/** The edge under test and another one, fresh for each test. */
const twoEdges = () => [newEdge(), newEdge()];

describe("a quiet candidate that speaks by hooks that gate nothing", () => {
  it("an on_hls of the candidate's publisher keeps it counting: no second publisher elsewhere", async () => {
    const [edge, other] = twoEdges();
    await beat(edge);
    const s = uniqueStream();
    const key = await createStream(s);
    at(T + 1000); // the edge's old process is silent
    await beat(other);
    await runDurableObjectAlarm(serverStub(edge));
    const next = restarted(edge); // its restart: heartbeats lost on the way, hooks come through
    expect(await hook(publish("live", s, key, { ...next, client: "enc00001" }))).toEqual(ALLOW);
    // The encoder streams on; SRS sends on_hls every few seconds, all through the next SERVER_TIMEOUT_S.
    for (let t = T + 1000; t <= 2 * T + 3000; t += 6000) {
      at(t);
      expect(await hook({ ...publish("live", s, key, { ...next, client: "enc00001" }), action: "on_hls" })).toEqual(ALLOW);
    }
    at(2 * T + 3500);
    await beat(other);
    await runDurableObjectAlarm(serverStub(edge));
    await deliverNotices(edge);
    // The candidate spoke within SERVER_TIMEOUT_S: it is not quiet, its publisher blocks.
    expect(await streamState(s), "the candidate's publisher").toMatchObject({ publisher: { clientId: "enc00001", state: "live" } });
    expect((await hook(publish("live", s, key, { ...other, client: "enc00002" }))).body.code, "a second publisher elsewhere").toBe(4004);
  });
});

describe("a revocation on an open stream, at a shard the push did not reach", () => {
  it("ends no session there either (the shard, just restarted, has no policy cached)", async () => {
    const edge = newEdge();
    const s = uniqueStream();
    await createStream(s, {});
    const token = await tokenOf(s, "alice");
    expect(await hook(playWith(s, edge, "tv000001", token))).toEqual(ALLOW);
    // The edge's shard is evicted (a deploy, memory): its cached policy is gone, its viewer stays stored.
    await evictDurableObject(shardStub(edge));
    // The stream's push of the revocation does not reach it (overloaded for a moment); the admin call's own
    // calls to end covered sessions do.
    recallsFailOn(edge);
    const r = await admin("POST", `/streams/live/${s}/revocations`, { sub: "alice" });
    expect(r.status).toBe(201);
    expect(r.body.ended, "open stream: a revocation ends nothing").toEqual([]);
    expect((await streamState(s)).viewers).toBe(1);
  });
});

describe("usage of a candidate that went quiet", () => {
  it("its viewers stop counting seconds and peaks once it is quiet, not when it is finally refused hours later", async () => {
    const [edge, other] = twoEdges();
    await beat(edge);
    const s = uniqueStream();
    await createStream(s);
    at(T + 1000); // the edge's process is silent
    await beat(other);
    await runDurableObjectAlarm(serverStub(edge));
    const next = restarted(edge); // a restart that crashes right after its first viewer, before any heartbeat
    expect(await hook(play("live", s, { ...next, client: "view0001" }))).toEqual(ALLOW);
    at(2 * T + 2000);
    await runDurableObjectAlarm(serverStub(edge)); // quiet: suspended
    await deliverNotices(edge);
    expect(await streamState(s)).toMatchObject({ viewers: 0, suspendedViewers: 1 });
    // Six hours later the old process's partition heals: the candidate is refused, its viewer ends.
    at(6 * HOUR);
    await beat(edge);
    at(6 * HOUR + T + 1000);
    await beat(edge);
    await runDurableObjectAlarm(serverStub(edge));
    await deliverNotices(edge);
    expect(await streamState(s)).toMatchObject({ viewers: 0, suspendedViewers: 0 });
    const body = await usage(s, `?from=${iso(0)}&to=${iso(7 * HOUR)}`);
    const seconds = body.buckets.reduce((sum: number, b: any) => sum + b.viewerSeconds, 0);
    // Known alive at most until its last hook + SERVER_TIMEOUT_S: not six hours of viewing.
    expect(seconds, "viewer-seconds of the quiet candidate's viewer").toBeLessThanOrEqual((2 * T + 2000) / 1000);
    expect(body.buckets.filter((b: any) => b.peakViewers > 0).map((b: any) => b.start), "hours with a peak").toEqual([iso(0)]);
  });
});
