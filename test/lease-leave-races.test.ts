/**
 * Adversarial review of viewer admission in viewer shards with leases (issue 12).
 * "must not happen: …" tests failed on the code reviewed; "holds: …" pinned behaviour that held.
 */
import { evictDurableObject, runDurableObjectAlarm } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import { StreamObject } from "../src/stream/object";
import { ViewerShard } from "../src/viewers/shard";
import { at, beat, deliverNotices, restarted, serverStub, shardStub, streamStub, gate, until, countCalls, viewer, viewerStop } from "./fleet";
import { ALLOW, admin, createStream, newEdge, streamState, uniqueStream, type Edge } from "./srs";


afterEach(() => {
  vi.restoreAllMocks();
  vi.useRealTimers();
});


/** Holds edge `e`'s message leaving the stream (it holds nothing) at the stream until `release` opens; `reached` opens when it arrives. */
function holdLeave(e: Edge) {
  const real = StreamObject.prototype.viewerLease;
  const reached = gate();
  const release = gate();
  vi.spyOn(StreamObject.prototype, "viewerLease").mockImplementation(async function (this: StreamObject, report) {
    if (report.serverId === e.server && report.want === 0 && report.live === 0 && report.granted === 0) {
      reached.open();
      await release.wait;
    }
    return real.call(this, report);
  });
  return { reached, release };
}

/** 20 s from `from` (the stream's alarm runs its rounds every 5 s), then three viewers come to edge `t`: their answers. */
async function after20sOfRounds(s: string, from: number, t: Edge) {
  for (let k = 1; k <= 4; k++) {
    at(from + k * 5_000);
    await runDurableObjectAlarm(streamStub(s));
  }
  const answers = [];
  for (let i = 0; i < 3; i++) answers.push(await viewer(s, t, `t000000${i}`));
  return answers;
}

describe("a shard leaving an unlimited stream while one of its viewers is admitted", () => {
  it("must not happen: a viewer admitted while its shard's 'leave' message is on its way is invisible to the stream: the admin API does not count it, and a cap set later ignores it (and the shard keeps admitting without a lease)", async () => {
    const s = uniqueStream();
    await createStream(s); // unlimited
    const [e, t] = [newEdge(), newEdge()];
    expect(await viewer(s, e, "e0000001")).toEqual(ALLOW);
    expect(await viewerStop(s, e, "e0000001")).toEqual(ALLOW);
    // The shard's alarm finds neither viewers nor slots of the stream: it leaves it (a message to the stream).
    const { reached, release } = holdLeave(e);
    const alarm = runDurableObjectAlarm(shardStub(e));
    await reached.wait;
    // Meanwhile a viewer joins on that edge (the shard's cached policy says unlimited).
    const plays = countCalls(ViewerShard.prototype, "play", (_self, [req]) => req.session.clientId === "e0000002");
    const joined = viewer(s, e, "e0000002");
    // It has reached e's shard (and run to its first wait there: behind the leave, or admitted) before the leave is read.
    await until(() => plays.n > 0);
    release.open();
    await alarm;
    expect(await joined).toEqual(ALLOW);
    vi.restoreAllMocks();
    const state = await streamState(s);
    expect.soft(state.viewers, "viewers the admin API shows (one watches on e)").toBe(1);
    // The operator caps the stream at 2: one more viewer fits, anywhere.
    expect((await admin("PUT", `/streams/live/${s}`, { maxViewers: 2 })).status).toBe(200);
    const answers = [];
    for (let i = 0; i < 2; i++) answers.push(await viewer(s, t, `t000000${i}`));
    for (let i = 0; i < 2; i++) answers.push(await viewer(s, e, `e100000${i}`));
    expect(answers.filter((a) => a.status === 200).length, "viewers admitted after the cap of 2, with one already watching").toBe(1);
  });
});

/**
 * On the fake clock from 0: a stream capped at `cap` whose viewers "e0000000", "e0000001", … (`viewers`
 * of them) watch on edge `e`, then 30 policy changes (cap `capOf(i)`), each a message of e's lease
 * (its sequence number grows). `t` is another edge.
 */
async function watchedThroughPushes(cap: number, viewers: number, capOf: (i: number) => number) {
  vi.useFakeTimers({ toFake: ["Date"] });
  at(0);
  const s = uniqueStream();
  await createStream(s, { maxViewers: cap });
  const [e, t] = [newEdge(), newEdge()];
  for (let i = 0; i < viewers; i++) expect(await viewer(s, e, `e000000${i}`)).toEqual(ALLOW);
  for (let i = 0; i < 30; i++) expect((await admin("PUT", `/streams/live/${s}`, { maxViewers: capOf(i) })).status).toBe(200);
  return { s, e, t };
}

describe("a stream deleted and created again", () => {
  it("must not happen: a shard that left the deleted stream starts its sequence numbers again from 0, the stream ignores its answers to the new policy's push, and every edge is refused at the new cap, for far longer than the README's 8 s, while nobody watches", async () => {
    const { s, e, t } = await watchedThroughPushes(10, 1, (i) => 20 + i);
    expect((await admin("DELETE", `/streams/live/${s}`)).status).toBe(200);
    // e's viewer leaves: e holds nothing of the stream any more and gives its slot back (it leaves the stream).
    const leaves = countCalls(StreamObject.prototype, "viewerLease", (_self, [r]) => r.serverId === e.server && r.want === 0 && r.live === 0 && r.granted === 0);
    expect(await viewerStop(s, e, "e0000000")).toEqual(ALLOW);
    // The leave (in the background) has reached the stream and been answered.
    await until(() => leaves.done > 0);
    // The operator creates the stream again, capped at 5; nobody watches. 20 s pass (the stream's alarm runs its rounds).
    await createStream(s, { maxViewers: 5 });
    const answers = await after20sOfRounds(s, 0, t);
    expect(answers.map((a) => a.body.code), "viewers of a new stream capped at 5 that nobody watches, 20 s after it was created").toEqual([0, 0, 0]);
  });
});

describe("a shard's leave crossing a policy push", () => {
  it("must not happen: a push that reaches a shard while its message leaving the stream is on its way leaves the stream a record the shard forgot; after the next policy change every edge is refused while the stream is empty", async () => {
    const { s, e, t } = await watchedThroughPushes(4, 2, (i) => 4 + (i % 2));
    for (let i = 0; i < 2; i++) expect(await viewerStop(s, e, `e000000${i}`)).toEqual(ALLOW);
    // 30 s later e's alarm gives back its idle slots: holding nothing, it leaves the stream.
    const { reached, release } = holdLeave(e);
    at(31_000);
    const alarm = runDurableObjectAlarm(shardStub(e));
    await reached.wait;
    // Meanwhile the operator raises the cap: the push reaches e before the stream reads e's message.
    expect((await admin("PUT", `/streams/live/${s}`, { maxViewers: 7 })).status).toBe(200);
    release.open();
    await alarm;
    vi.restoreAllMocks();
    // Another change later; then 20 s pass (the stream's alarm runs its rounds) and viewers come to t.
    expect((await admin("PUT", `/streams/live/${s}`, { maxViewers: 6 })).status).toBe(200);
    const answers = await after20sOfRounds(s, 31_000, t);
    expect(answers.map((a) => a.body.code), "viewers of a stream capped at 6 that nobody watches").toEqual([0, 0, 0]);
  });
});

describe("flash crowd with evictions and a lowered cap", () => {
  it("holds: 60 concurrent on_play over 6 edges while two shards and the stream's object are evicted, then the cap lowered and more joins: never more than the cap, totals equal the shards' sum", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 25 });
    const edges = Array.from({ length: 6 }, () => newEdge());
    const joins = Array.from({ length: 60 }, (_, i) => viewer(s, edges[i % 6], `c${String(i).padStart(7, "0")}`));
    await new Promise((r) => setTimeout(r, 20));
    await evictDurableObject(shardStub(edges[1]));
    await evictDurableObject(streamStub(s));
    await evictDurableObject(shardStub(edges[4]));
    const answers = await Promise.all(joins);
    const admitted = answers.filter((a) => a.status === 200 && a.body.code === 0).length;
    const errors = answers.filter((a) => a.status !== 200).length;
    let state = await streamState(s);
    expect(state.viewers + state.leasedUnused).toBeLessThanOrEqual(25);
    expect(state.viewers).toBe(admitted);
    expect(admitted + errors).toBeLessThanOrEqual(25 + errors);
    // The cap drops to 10 while some leave and others join.
    const stops = answers.map((a, i) => (a.body.code === 0 && i % 3 === 0 ? viewerStop(s, edges[i % 6], `c${String(i).padStart(7, "0")}`) : null)).filter(Boolean);
    const put = admin("PUT", `/streams/live/${s}`, { maxViewers: 10 });
    const more = Array.from({ length: 30 }, (_, i) => viewer(s, edges[i % 6], `d${String(i).padStart(7, "0")}`));
    const moreAnswers = await Promise.all(more);
    await Promise.all([...stops, put]);
    state = await streamState(s);
    const perShard = await Promise.all(edges.map((e) => shardStub(e).audience(`__defaultVhost__/live/${s}`)));
    expect(state.viewers).toBe(perShard.reduce((n, a) => n + a.viewers, 0));
    expect(state.leasedUnused).toBe(perShard.reduce((n, a) => n + Math.max(0, a.leased - a.viewers - a.suspendedViewers), 0));
    const admittedMore = moreAnswers.filter((a) => a.status === 200 && a.body.code === 0).length;
    expect(state.viewers).toBe(admitted - stops.length + admittedMore);
    expect(state.viewers).toBeLessThanOrEqual(25);
    // Once the cap of 10 holds: refused until under it, then exact again.
    const fill = [];
    for (let i = 0; i < 12; i++) fill.push(await viewer(s, edges[i % 6], `f${String(i).padStart(7, "0")}`));
    const admittedFill = fill.filter((a) => a.body.code === 0).length;
    state = await streamState(s);
    expect(admittedFill).toBe(Math.max(0, 10 - (admitted - stops.length + admittedMore)));
    expect(state.viewers + state.leasedUnused).toBeLessThanOrEqual(Math.max(10, state.viewers));
  });
});

describe("silence, heal and restart with leases", () => {
  it("holds: a silent edge's viewers stop counting and other edges fill their slots; the same process back counts them all (over the cap, new ones refused); a restart ends them; the admin totals follow each step", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    at(0);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 4 });
    const [a, b] = [newEdge(), newEdge()];
    await beat(a);
    await beat(b);
    for (let i = 0; i < 3; i++) expect(await viewer(s, a, `a000000${i}`)).toEqual(ALLOW);
    expect(await viewer(s, b, "b0000000")).toEqual(ALLOW);
    expect((await viewer(s, b, "b0000001")).body.code).toBe(4005);
    // a goes silent; b keeps beating.
    at(31_000);
    await beat(b);
    await runDurableObjectAlarm(serverStub(a));
    await deliverNotices(a);
    let state = await streamState(s);
    expect(state).toMatchObject({ viewers: 1, suspendedViewers: 3 });
    const fills = [];
    for (let i = 1; i < 6; i++) fills.push((await viewer(s, b, `b000000${i}`)).body.code);
    state = await streamState(s);
    expect(fills.filter((c) => c === 0).length, "b fills the slots a's silent viewers held, and no more").toBe(3);
    expect(state).toMatchObject({ viewers: 4, suspendedViewers: 3 });
    // a's same process comes back: all 7 count, nobody more is admitted.
    expect((await beat(a)).status).toBe(200);
    await deliverNotices(a);
    await runDurableObjectAlarm(shardStub(a));
    state = await streamState(s);
    expect(state).toMatchObject({ viewers: 7, suspendedViewers: 0, leasedUnused: 0 });
    expect((await viewer(s, b, "b0000009")).body.code).toBe(4005);
    expect((await viewer(s, a, "a0000009")).body.code).toBe(4005);
    // a restarts: its old viewers end; 4 watch on b, still at the cap.
    expect((await beat(restarted(a))).status).toBe(200);
    await deliverNotices(a);
    state = await streamState(s);
    expect(state).toMatchObject({ viewers: 4, suspendedViewers: 0 });
    expect(state.viewers + state.leasedUnused).toBeLessThanOrEqual(4);
    expect((await viewer(s, restarted(a), "n0000001")).body.code).toBe(4005);
  });
});
