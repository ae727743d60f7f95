/**
 * Adversarial tests of the stream's rounds for shards waiting for slots (src/stream/slot-rounds.ts) after
 * 3874d68 (recall rounds spaced by roundGap(), word-only rounds that call only the shards they tell):
 * the README's bound on refusals while a slot is unused ("Flash crowds: viewer shards and leases"), its
 * "Load of the rounds", and the cap, under lost words, restarts, pushes, silent servers and many shards.
 */
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import { ROUND_SHARDS_PER_S as PER_S } from "../src/stream/slot-rounds";
import { StreamObject } from "../src/stream/object";
import { ViewerShard } from "../src/viewers/shard";
import { at, beat, deliverNotices, overloaded, serverStub, shardStub as shardStubOf, streamAtZero, streamStub, T0, viewer, viewerStop, fireDue, admittedAt, waitingOf } from "./fleet";
import { ALLOW, admin, newEdge, streamState, type Edge } from "./srs";

afterEach(() => {
  vi.restoreAllMocks();
  vi.useRealTimers();
});

/**
 * A stream capped at `cap`, each slot held by a viewer on edge `a`. A first edge refused at 10 ms (its
 * viewers then give up) starts the stream's rounds, which run until 39 s (their gap grown to 8 s, the last
 * at 31.25 s); then `n` edges are refused one after another at 39 s (the first refusal's round: the next
 * round of recalls is due at 47 s): they wait, holding their viewers' questions until told (or until about 69 s).
 */
async function fullWithWaiting(cap: number, n: number): Promise<{ s: string; a: Edge; starter: Edge; waiting: Edge[] }> {
  const s = await streamAtZero({ maxViewers: cap });
  const a = newEdge();
  for (let i = 0; i < cap; i++) expect(await viewer(s, a, `a${String(i).padStart(7, "0")}`)).toEqual(ALLOW);
  const starter = newEdge();
  at(10);
  expect((await viewer(s, starter, "s0000000")).body.code).toBe(4005);
  for (let t = 250; t <= 39_000; t += 250) {
    at(t);
    await fireDue(streamStub(s));
  }
  // The starter's hold is over: its next viewer asks again and is refused (it stays the longest waiting).
  at(39_000);
  expect((await viewer(s, starter, "s0000001")).body.code).toBe(4005);
  const waiting = Array.from({ length: n }, () => newEdge());
  for (const [i, e] of waiting.entries()) {
    at(39_010 + i * 10);
    expect((await viewer(s, e, `w${i}000000`)).body.code).toBe(4005);
  }
  for (let t = 39_250; t <= 40_000; t += 250) {
    at(t);
    await fireDue(streamStub(s));
  }
  expect(await waitingOf(s)).toEqual([starter, ...waiting].map((e) => e.server));
  return { s, a, starter, waiting };
}

describe("findings", () => {
  it("must not happen: a silent server's suspended viewers keep a waiting shard's viewers refused for WAIT_HOLD_MS (30 s), though they neither count nor block and the stream admits on their slots the viewer of an edge that was not waiting", async () => {
    const s = await streamAtZero({ maxViewers: 2 });
    const [a, c, d] = [newEdge(), newEdge(), newEdge()];
    for (const e of [a, c, d]) await beat(e);
    expect(await viewer(s, a, "a0000001")).toEqual(ALLOW);
    expect(await viewer(s, a, "a0000002")).toEqual(ALLOW);
    at(25_000);
    await beat(c);
    await beat(d);
    // c's viewer finds the stream full: c waits (and holds its viewers' questions until told, or 30 s).
    expect((await viewer(s, c, "c0000001")).body.code).toBe(4005);
    expect(await waitingOf(s)).toEqual([c.server]);
    // a falls silent: its viewers are suspended (they no longer count), their slots given back.
    at(31_000);
    await runDurableObjectAlarm(serverStub(a));
    await deliverNotices(a);
    await vi.waitFor(async () => expect((await streamStub(s).state())!.shards.find((x) => x.serverId === a.server)).toMatchObject({ leased: 0, suspendedViewers: 2 }));
    expect((await streamState(s)).viewers).toBe(0);
    // A viewer of d, which never waited, is admitted at once, on one of the suspended viewers' slots.
    at(31_100);
    expect(await viewer(s, d, "d0000001")).toEqual(ALLOW);
    // c's viewers keep coming (c and d beat every 5 s), the stream's rounds run: one slot is free but for a suspended viewer.
    const when = await admittedAt(s, c, 31_250, 60_000, "c1", {
      step: 250,
      each: async (t) => {
        if (t % 5_000 === 0) for (const e of [c, d]) await beat(e);
      },
    });
    expect(when, "c's viewers refused from 31 s (a silent) until c's hold ran out").not.toBeNull();
    expect(when! - 31_000, `c admitted at ${when} ms: refused ${(when! - 31_000) / 1000} s after a fell silent`).toBeLessThanOrEqual(9_000);
    const st = await streamState(s);
    expect(st.viewers + st.leasedUnused).toBeLessThanOrEqual(2);
  }, 60_000);

  it("must not happen: a full stream whose slots rest on suspended viewers of 25 silent servers sends a round of recalls to all 25 shards for every lease ask, one slot granted each: 577 recalls in one second, past ROUND_SHARDS_PER_S", async () => {
    const n = 25;
    const s = await streamAtZero({ maxViewers: n });
    const silent = Array.from({ length: n }, () => newEdge());
    const live = newEdge();
    for (const e of [...silent, live]) await beat(e);
    for (const [i, e] of silent.entries()) expect((await viewer(s, e, `s${String(i).padStart(7, "0")}`)).body.code).toBe(0);
    expect((await streamState(s)).viewers).toBe(n);
    // Every silent edge falls silent (a region cut off), the live one keeps beating.
    at(25_000);
    await beat(live);
    at(31_000);
    for (const e of silent) await runDurableObjectAlarm(serverStub(e));
    for (const e of silent) await deliverNotices(e);
    await vi.waitFor(async () => expect((await streamState(s)).suspendedViewers).toBe(n));
    let recalls = 0;
    const real = ViewerShard.prototype.recall;
    vi.spyOn(ViewerShard.prototype, "recall").mockImplementation(async function (this: ViewerShard, ...args: Parameters<ViewerShard["recall"]>) {
      recalls++;
      return real.apply(this, args);
    });
    // Viewers come to the live edge, 25 in one second (the audience of the silent region reconnecting there).
    let admitted = 0;
    for (let i = 0; i < n; i++) {
      at(32_000 + i * 40);
      if ((await viewer(s, live, `l${String(i).padStart(7, "0")}`)).body.code === 0) admitted++;
      await fireDue(streamStub(s));
    }
    expect(admitted).toBeGreaterThan(0);
    expect({ recalls, admitted }, "recall calls from the stream's object in 1 s").toEqual({ recalls: expect.toSatisfy((r: number) => r <= PER_S), admitted });
  }, 120_000);
});

/** A probe's bound, with what it measured in the message. */
function report(what: Record<string, unknown>, ok: boolean): void {
  expect(ok, JSON.stringify(what)).toBe(true);
}

describe("findings: the rounds of the word alone (README: \"these rounds of the word alone come 1 s apart\")", () => {
  it("must not happen: a viewer leaves a full stream where three edges wait, the edge told first has no viewer: the others hear only at the next round of recalls, 7 s later, not at a round of the word 1 s later", async () => {
    const { s, a, starter, waiting } = await fullWithWaiting(1, 2);
    const told: Record<string, number[]> = {};
    const real = ViewerShard.prototype.slotsFree;
    vi.spyOn(ViewerShard.prototype, "slotsFree").mockImplementation(function (this: ViewerShard, k: string) {
      (told[(this as any).serverId] ??= []).push(Date.now() - T0);
      return real.call(this, k);
    });
    at(40_100);
    expect((await viewerStop(s, a, "a0000000")).body.code).toBe(0);
    // The slot goes back at once (a is tight): the stream tells the longest waiting edge, whose viewers gave up.
    await vi.waitFor(() => expect(told[starter.server]).toHaveLength(1));
    const when = await admittedAt(s, waiting[1], 40_250, 68_000, "t", { step: 250 });
    expect(when, "the last edge to wait was refused until its hold ran out").not.toBeNull();
    // README: the word spreads at rounds 1 s apart (each telling twice as many): 2 s at most for 3 waiting edges.
    expect(when! - 40_100, `told at ${JSON.stringify(told)}, admitted at ${when}`).toBeLessThanOrEqual(2_500);
  }, 60_000);
});

describe("probes: the word that slots are free, while rounds of the word alone run", () => {
  it("holds: the told shard whose slotsFree fails during the rounds of the word alone is told again at the next round", async () => {
    const { s, a, waiting } = await fullWithWaiting(1, 4);
    const target = waiting[3];
    const real = ViewerShard.prototype.slotsFree;
    let failed = 0;
    const told: number[] = [];
    vi.spyOn(ViewerShard.prototype, "slotsFree").mockImplementation(function (this: ViewerShard, k: string) {
      if ((this as any).serverId === target.server) {
        told.push(Date.now() - T0);
        if (failed++ === 0) throw new Error("connection reset");
      }
      return real.call(this, k);
    });
    at(40_100);
    expect((await viewerStop(s, a, "a0000000")).body.code).toBe(0);
    const when = await admittedAt(s, target, 40_250, 68_000, "t", { step: 250 });
    report({ when, told }, when !== null && when - 40_100 <= 12_000);
  }, 60_000);

  it("holds: the stream object evicted while the word spreads (its gap, last round and told-some in memory only): the last waiting shard still hears within the bound", async () => {
    const { s, a, waiting } = await fullWithWaiting(1, 6);
    const target = waiting[5];
    at(40_100);
    expect((await viewerStop(s, a, "a0000000")).body.code).toBe(0);
    let evictions = 0;
    const when = await admittedAt(s, target, 40_250, 68_000, "t", {
      step: 250,
      each: async (t) => {
        // Evicted every 1.5 s while the word spreads.
        if (t % 1_500 === 0 && t <= 52_000) {
          evictions++;
          await evictDurableObject(streamStub(s));
        }
      },
    });
    report({ when, evictions }, when !== null && when - 40_100 <= 8_000 + 4_000);
  }, 60_000);

  it("holds: a push that cannot reach one waiting shard while the word spreads: once reached, the last waiting shard hears within the bound", async () => {
    const { s, a, waiting } = await fullWithWaiting(1, 6);
    const target = waiting[5];
    const down = waiting[1];
    const real = ViewerShard.prototype.recall;
    let downUntil = 0;
    vi.spyOn(ViewerShard.prototype, "recall").mockImplementation(async function (this: ViewerShard, ...args: Parameters<ViewerShard["recall"]>) {
      if ((this as any).serverId === down.server && Date.now() - T0 < downUntil) throw overloaded();
      return real.apply(this, args);
    });
    at(40_100);
    expect((await viewerStop(s, a, "a0000000")).body.code).toBe(0);
    at(40_600);
    downUntil = 47_000;
    // A change of policy that keeps the cap (a new session limit): pushed to every shard, down's push fails.
    expect((await admin("PUT", `/streams/live/${s}`, { maxSessionsPerViewer: 5 })).status).toBe(200);
    const when = await admittedAt(s, target, 40_750, 68_000, "t", { step: 250 });
    report({ when, downUntil }, when !== null && when - downUntil <= 8_000 + 4_000);
  }, 60_000);

  it("holds: a slot freed on a shard that is not tight (granted while slots were free) while another shard waits: the waiting shard's viewer is admitted within about 8 s", async () => {
    const s = await streamAtZero({ maxViewers: 1 });
    const a = newEdge();
    expect(await viewer(s, a, "a0000001")).toEqual(ALLOW);
    const [t1, t2, w] = [newEdge(), newEdge(), newEdge()];
    at(10);
    expect((await viewer(s, t1, "x0000000")).body.code).toBe(4005);
    for (let t = 250; t <= 39_000; t += 250) {
      at(t);
      await fireDue(streamStub(s));
    }
    // t1's hold is over: its next viewer asks again and is refused (t1 stays the longest waiting).
    at(39_005);
    expect((await viewer(s, t1, "x0000001")).body.code).toBe(4005);
    at(39_010);
    expect((await viewer(s, t2, "x1000000")).body.code).toBe(4005);
    at(39_020);
    expect((await viewer(s, w, "x2000000")).body.code).toBe(4005);
    for (let t = 39_250; t <= 40_000; t += 250) {
      at(t);
      await fireDue(streamStub(s));
    }
    // The cap raised by 2: the push tells t1 and t2 (the longest waiting), not w.
    at(40_050);
    expect((await admin("PUT", `/streams/live/${s}`, { maxViewers: 3 })).status).toBe(200);
    expect(await waitingOf(s)).toEqual([w.server]);
    at(40_100);
    expect(await viewer(s, t1, "t1000001")).toEqual(ALLOW);
    expect(await viewer(s, t2, "t2000001")).toEqual(ALLOW);
    // t1 was granted its slot while one more was free: not tight, it keeps the slot its viewer leaves.
    at(40_200);
    expect((await viewerStop(s, t1, "t1000001")).body.code).toBe(0);
    const st = await streamState(s);
    const when = await admittedAt(s, w, 40_250, 68_000, "w", { step: 250 });
    report({ when, leasedUnused: st.leasedUnused, viewers: st.viewers }, when !== null && when - 40_200 <= 8_500);
  }, 60_000);

  it("holds: a server falls silent while the word spreads and its silence's notice never arrives: its viewer's slot reaches a waiting shard within about 8 s of the silence", async () => {
    const s = await streamAtZero({ maxViewers: 2 });
    const [a, g] = [newEdge(), newEdge()];
    const idle = Array.from({ length: 3 }, () => newEdge());
    const [w1, w2] = [newEdge(), newEdge()];
    const beating = [a, ...idle, w1, w2];
    for (const e of [...beating, g]) await beat(e);
    expect(await viewer(s, a, "a0000001")).toEqual(ALLOW);
    expect(await viewer(s, g, "g0000001")).toEqual(ALLOW);
    // Waiting: three edges whose viewers give up, then (later, their holds fresh) w1 and w2.
    for (const [i, e] of idle.entries()) {
      at(10 + i);
      expect((await viewer(s, e, `x${i}000000`)).body.code).toBe(4005);
    }
    const tick = async (t: number) => {
      at(t);
      if (t % 5_000 === 0) for (const e of beating) await beat(e);
      await fireDue(streamStub(s));
    };
    for (let t = 250; t <= 29_000; t += 250) await tick(t);
    at(29_010);
    expect((await viewer(s, w1, "w1000000")).body.code).toBe(4005);
    at(29_020);
    expect((await viewer(s, w2, "w2000000")).body.code).toBe(4005);
    // a's viewer leaves: one slot free, the word spreads (the idle edges first). g is silent from 30 s (no heartbeat since 0).
    at(29_500);
    expect((await viewerStop(s, a, "a0000001")).body.code).toBe(0);
    const admitted: Record<string, number | null> = { w1: null, w2: null };
    for (let t = 29_750, i = 0; t <= 58_000 && (admitted.w1 === null || admitted.w2 === null); t += 250, i++) {
      await tick(t);
      for (const [name, e] of [["w1", w1], ["w2", w2]] as const) {
        if (admitted[name] === null && (await viewer(s, e, `${name}${String(i).padStart(5, "0")}`)).body.code === 0) admitted[name] = t;
      }
    }
    const last = Math.max(admitted.w1 ?? Infinity, admitted.w2 ?? Infinity);
    report({ admitted }, last - 30_000 <= 8_000 + 3_000);
  }, 60_000);
});

describe("probes: a stream watched through more than ROUND_SHARDS_PER_S servers", () => {
  it("holds: 150 servers hold the stream's viewers (rounds every 2 s at the least), a give-back is lost: the waiting edge's viewer is admitted within about 8 s, and the rounds reach at most ROUND_SHARDS_PER_S shards a second meanwhile", async () => {
    const n = 150;
    const s = await streamAtZero({ maxViewers: n });
    const holders = Array.from({ length: n }, () => newEdge());
    for (const [i, e] of holders.entries()) expect((await viewer(s, e, `h${String(i).padStart(7, "0")}`)).body.code).toBe(0);
    const w = newEdge();
    at(10);
    expect((await viewer(s, w, "w0000000")).body.code).toBe(4005);
    for (let t = 250; t <= 20_000; t += 250) {
      at(t);
      await fireDue(streamStub(s));
    }
    at(20_010);
    expect((await viewer(s, w, "w1000000")).body.code).toBe(4005);
    // A holder's viewer leaves; its give-back to the stream is lost: only a round of recalls finds the slot.
    const realLease = StreamObject.prototype.viewerLease;
    let lost = 0;
    vi.spyOn(StreamObject.prototype, "viewerLease").mockImplementation(async function (this: StreamObject, report) {
      if (report.serverId === holders[7].server && report.want === 0) {
        lost++;
        throw new Error("connection reset");
      }
      return realLease.call(this, report);
    });
    let recalls = 0;
    const realRecall = ViewerShard.prototype.recall;
    vi.spyOn(ViewerShard.prototype, "recall").mockImplementation(async function (this: ViewerShard, ...args: Parameters<ViewerShard["recall"]>) {
      recalls++;
      return realRecall.apply(this, args);
    });
    at(20_100);
    expect((await viewerStop(s, holders[7], "h0000007")).body.code).toBe(0);
    await vi.waitFor(() => expect(lost).toBeGreaterThan(0));
    const when = await admittedAt(s, w, 20_250, 45_000, "w2", { step: 250 });
    report({ when, recalls }, when !== null && when - 20_100 <= 8_500 && recalls <= ((when ?? 45_000) - 20_100) / 1000 * PER_S + n);
    const st = await streamState(s);
    expect(st.viewers + st.leasedUnused).toBeLessThanOrEqual(n);
  }, 120_000);
});

describe("probes: the cap, while the word spreads in rounds of its own", () => {
  it("holds: a seeded run on 8 edges at a cap of 3 (most edges waiting): plays, stops, lost lease answers, failed words, stream restarts, a silent edge, alarms every 250 ms: the viewers that count and the slots leased unused never exceed the cap", async () => {
    let seed = 4242;
    const rnd = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
    const cap = 3;
    const s = await streamAtZero({ maxViewers: cap });
    const edges = Array.from({ length: 8 }, () => newEdge());
    const silentEdge = edges[7];
    for (const e of edges) await beat(e);
    const realLease = StreamObject.prototype.viewerLease;
    vi.spyOn(StreamObject.prototype, "viewerLease").mockImplementation(async function (this: StreamObject, report) {
      const answer = await realLease.call(this, report);
      if (rnd() < 0.1) throw Object.assign(new Error("Network connection lost."), { retryable: true });
      return answer;
    });
    const realFree = ViewerShard.prototype.slotsFree;
    vi.spyOn(ViewerShard.prototype, "slotsFree").mockImplementation(function (this: ViewerShard, k: string) {
      if (rnd() < 0.3) throw new Error("connection reset");
      return realFree.call(this, k);
    });
    const watching = new Map<string, Edge>();
    let n = 0;
    let t = 0;
    let admitted = 0;
    for (let step = 0; step < 240; step++) {
      t += 250;
      at(t);
      if (t % 10_000 === 0) for (const e of edges) if (e !== silentEdge || t < 20_000) await beat(e);
      if (t === 52_000) {
        await runDurableObjectAlarm(serverStub(silentEdge));
        await deliverNotices(silentEdge);
      }
      const r = rnd();
      if (r < 0.45) {
        const e = edges[Math.floor(rnd() * edges.length)];
        const client = `v${String(n++).padStart(7, "0")}`;
        const res = await viewer(s, e, client).catch(() => null);
        if (res?.body.code === 0) {
          watching.set(client, e);
          admitted++;
        }
      } else if (r < 0.75 && watching.size > 0) {
        const [client, e] = [...watching][Math.floor(rnd() * watching.size)];
        watching.delete(client);
        await viewerStop(s, e, client).catch(() => null);
      } else if (r < 0.8) {
        await evictDurableObject(streamStub(s));
      }
      await fireDue(streamStub(s)).catch(() => {});
      await new Promise((res) => setTimeout(res, 5));
      let held = 0;
      for (const e of edges) {
        const au = await runInDurableObject(shardStubOf(e), async (o: ViewerShard) => o.audience(`__defaultVhost__/live/${s}`));
        held += Math.max(au.leased, au.viewers);
      }
      expect(held, `step ${step} at ${t} ms`).toBeLessThanOrEqual(cap);
    }
    expect(admitted).toBeGreaterThan(cap);
  }, 120_000);
});
