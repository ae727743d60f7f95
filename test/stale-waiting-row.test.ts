/**
 * A shard holds its viewers' questions (WAIT_HOLD_MS) only when the stream's answer says `waiting`. The
 * stream's waiting row (lease_waiting) is neither cleared nor renewed by a grant: an answer that was a grant
 * said waiting while an older refusal's row lasted. If the grant no longer gave the shard a slot when it
 * arrived (its server's silent process heard from meanwhile), the shard held 30 s from then, while the
 * stream stopped counting it as waiting at the old row's end (WAITING_KEPT_MS after the older refusal): a
 * viewer refused for long while a slot was free. Only a refusal says waiting now.
 */
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import { ViewerShard } from "../src/viewers/shard";
import { at, beat, deliverNotices, fireDue, restarted, shardStub, streamAtZero, T0, streamStub, viewer, admittedAt, askForSlotsHeld, waitingOf } from "./fleet";
import { ALLOW, hook, newEdge, stopPlay, streamState, type Edge } from "./srs";
import { serverTimeoutMs } from "../src/config";

afterEach(() => {
  vi.restoreAllMocks();
  vi.useRealTimers();
});

async function holdOf(edge: Edge, s: string): Promise<{ granted: number; fullUntil: number; wakes: number } | null> {
  return runInDurableObject(shardStub(edge) as unknown as DurableObjectStub<ViewerShard>, async (sh: ViewerShard) => {
    const l = (sh as any).leases.leases.get(`__defaultVhost__/live/${s}`);
    return l ? { granted: l.granted, fullUntil: l.fullUntil ? l.fullUntil - T0 : 0, wakes: l.wakes } : null;
  });
}

describe("a stale waiting row and a grant's answer", () => {
  it("a shard refused once, later granted a slot that a heal eats on the way: it holds 30 s from the grant, past the end of the stream's old waiting row; a slot freed elsewhere after that row ended never reaches it", async () => {
    const T = serverTimeoutMs(env);
    const s = await streamAtZero({ maxViewers: 4 });
    const [a, o, x, d, d2, e] = [newEdge(), newEdge(), newEdge(), newEdge(), newEdge(), newEdge()];
    const others = [o, x, d, d2, e];
    for (const edge of [a, ...others]) await beat(edge);
    // a leases 2 (a1 and a2 use them), o and x 1 each: full.
    expect(await viewer(s, a, "a0000001")).toEqual(ALLOW);
    expect(await viewer(s, o, "o0000001")).toEqual(ALLOW);
    expect(await viewer(s, x, "x0000001")).toEqual(ALLOW);
    expect(await viewer(s, a, "a0000002")).toEqual(ALLOW);
    // d, d2, then a are refused: they wait, in that order (a's row lasts until 100 + WAITING_KEPT_MS = 40.1 s).
    at(50);
    expect((await viewer(s, d, "d0000001")).body.code).toBe(4005);
    at(60);
    expect((await viewer(s, d2, "d2000001")).body.code).toBe(4005);
    at(100);
    expect((await viewer(s, a, "a0000003")).body.code).toBe(4005);
    expect(await waitingOf(s)).toEqual([d.server, d2.server, a.server]);
    // a2 leaves: the slot is told to d (the longest waiting), whose viewer gave up; e's first viewer takes it.
    at(500);
    expect(await hook(stopPlay("live", s, { ...a, client: "a0000002" }))).toEqual(ALLOW);
    at(600);
    expect(await viewer(s, e, "e0000001")).toEqual(ALLOW);
    // The stream's rounds go on (a's old process beats no more from 0: silent after T).
    for (let t = 1_000; t <= T + 200; t += 500) {
      at(t);
      if (t % 10_000 === 0) for (const edge of others) await beat(edge);
      await fireDue(streamStub(s));
    }
    expect(await waitingOf(s)).toEqual([d2.server, a.server]);
    // A second process on a's server at T + 500: its first viewer c1 finds a1 suspended (a gives a1's slot back,
    // told to d2, the longest waiting; a still waits, its row until 40.1 s), asks, and is granted one slot resting
    // on the suspended a1 (a grant: no refusal, so a's row is not renewed)...
    at(T + 500);
    const candidate = restarted(a);
    const { decided, back } = askForSlotsHeld(a, 1);
    const c1 = viewer(s, candidate, "c0000001");
    await decided;
    // Decided: a grant (a leases 1 slot, resting on a1 suspended), a's old row (since 100 ms) still there.
    expect(await waitingOf(s)).toEqual([a.server]);
    await beat(a);
    await deliverNotices(a);
    back.open();
    // ...but a's old process is heard from while the grant is on its way: a1 counts again, no slot for c1.
    expect((await c1).body.code).toBe(4005);
    // Were the answer to say waiting (a's old row), the shard would hold 30 s from T + 500, until 60.5 s.
    const hold = (await holdOf(a, s))?.fullUntil;
    // The stream stops counting a as waiting at 40.1 s (WAITING_KEPT_MS after the refusal at 100 ms); the shard holds on.
    for (let t = T + 1000; t <= 41_000; t += 500) {
      at(t);
      if (t % 5_000 === 0) for (const edge of [a, ...others]) await beat(edge);
      await fireDue(streamStub(s));
    }
    expect(await waitingOf(s)).toEqual([]);
    // Later the stream's old row for a ends (40.1 s); at 45 s o1 leaves: a slot is free, and the stream counts
    // no shard as waiting. The candidate's viewers keep coming: one should be admitted within the rounds.
    const keepAlive = async (t: number) => {
      if (t % 5_000 === 0) for (const edge of [a, ...others]) await beat(edge);
      if (t === 45_000) expect(await hook(stopPlay("live", s, { ...o, client: "o0000001" }))).toEqual(ALLOW);
    };
    const when = await admittedAt(s, candidate, 41_500, 70_000, "c1", { each: keepAlive });
    expect(when, "never admitted").not.toBeNull();
    expect(when!, `the candidate's viewers were refused long after a slot was free at 45 s: the shard held until ${hold} ms, off a stream that counted it as waiting no more from 40.1 s`).toBeLessThanOrEqual(50_000);
    const st = await streamState(s);
    expect(st.viewers + st.leasedUnused).toBeLessThanOrEqual(4);
  }, 60_000);
});
