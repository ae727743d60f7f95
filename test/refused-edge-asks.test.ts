/**
 * A shard refused at a full stream holds its viewers' questions (WAIT_HOLD_MS) only when the answer says
 * `waiting` (src/viewers/lease.ts LeaseAnswer). These count the asks (viewerLease with want > 0) a
 * refused edge sends while its viewers keep coming to a stream that stays full, through lost answers
 * (withRetry re-sends the same seq), restarts of the stream's object and policy changes: about one ask
 * per WAIT_HOLD_MS, never one per viewer.
 */
import { evictDurableObject } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import { StreamObject } from "../src/stream/object";
import { at, T0, fireDue, retryable, shardStub, streamAtZero, streamStub, viewer, waitingOf } from "./fleet";
import { ALLOW, admin, newEdge, type Edge } from "./srs";
import type { LeaseReport } from "../src/viewers/lease";

afterEach(() => {
  vi.restoreAllMocks();
  vi.useRealTimers();
});

/** Counts c's asks; `around` may wrap the real call. */
function countAsks(c: Edge, around?: (report: LeaseReport, real: () => Promise<any>) => Promise<any>) {
  const real = StreamObject.prototype.viewerLease;
  const asks: { t: number; seq: number; waiting?: boolean }[] = [];
  vi.spyOn(StreamObject.prototype, "viewerLease").mockImplementation(async function (this: StreamObject, report) {
    const call = () => real.call(this, report);
    if (report.serverId !== c.server || report.want === 0) return call();
    const answer = around ? await around(report, call) : await call();
    asks.push({ t: Date.now() - T0, seq: report.seq, waiting: answer.waiting });
    return answer;
  });
  return asks;
}

/** Stream capped at 1: a's viewer holds it; c's viewers come every `step` ms from 1 s to `to`, all refused. */
async function refusedFor(to: number, { step = 250, each }: { step?: number; each?: (t: number) => Promise<void> } = {}) {
  const s = await streamAtZero({ maxViewers: 1 });
  const [a, c] = [newEdge(), newEdge()];
  expect(await viewer(s, a, "a0000001")).toEqual(ALLOW);
  return { s, a, c, run: async () => {
    let refused = 0;
    for (let t = 1_000, i = 0; t <= to; t += step, i++) {
      at(t);
      if (each) await each(t);
      await fireDue(streamStub(s));
      await fireDue(shardStub(c));
      const r = await viewer(s, c, `c${String(i).padStart(7, "0")}`);
      expect(r.body.code).toBe(4005);
      refused++;
    }
    return refused;
  } };
}

describe("a full stream's refused edge asks about once per hold, not once per viewer", () => {
  it("holds?: baseline, 95 s of viewers every 250 ms with the stream's rounds", async () => {
    const { c, run } = await refusedFor(95_000);
    const asks = countAsks(c);
    const refused = await run();
    expect(refused).toBeGreaterThan(350);
    expect(asks.length, JSON.stringify(asks)).toBeLessThanOrEqual(8);
  }, 60_000);

  it("holds?: every answer to c's asks is lost once (the call fails after the stream applied it: withRetry sends the same seq again, the stream answers with its stored record)", async () => {
    const { c, run } = await refusedFor(95_000);
    const seen = new Set<number>();
    const asks = countAsks(c, async (report, real) => {
      const answer = await real();
      if (!seen.has(report.seq)) {
        seen.add(report.seq);
        throw retryable();
      }
      return answer;
    });
    await run();
    expect(asks.every((x) => x.waiting === true), JSON.stringify(asks)).toBe(true);
    expect(asks.length, JSON.stringify(asks)).toBeLessThanOrEqual(8);
  }, 60_000);

  it("holds?: the stream's object restarts every 3 s", async () => {
    const { s, c, run } = await refusedFor(95_000, { each: async (t) => { if (t % 3_000 === 0) await evictDurableObject(streamStub(s)); } });
    const asks = countAsks(c);
    await run();
    expect(asks.length, JSON.stringify(asks)).toBeLessThanOrEqual(8);
  }, 60_000);

  it("holds?: the waiting row expires (WAITING_KEPT_MS) between c's viewers, which come every 12 s", async () => {
    const { s, c, run } = await refusedFor(180_000, { step: 12_000 });
    const asks = countAsks(c);
    await run();
    // Each viewer after the hold is over asks once (refused, waits again): no more than one per viewer, with the hold.
    expect(asks.length, JSON.stringify(asks)).toBeLessThanOrEqual(Math.ceil(180_000 / 30_000) + 2);
    expect(await waitingOf(s)).toEqual([c.server]);
  }, 60_000);

  it("holds?: the operator switches the cap off and on every 10 s (unlimited → capped): at most an ask per switch", async () => {
    const { s, c, run } = await refusedFor(95_000, {
      each: async (t) => {
        if (t % 10_000 === 0) expect((await admin("PUT", `/streams/live/${s}`, { maxViewers: null })).status).toBe(200);
        if (t % 10_000 === 0) expect((await admin("PUT", `/streams/live/${s}`, { maxViewers: 1 })).status).toBe(200);
      },
    });
    const asks = countAsks(c);
    await run();
    expect(asks.length, JSON.stringify(asks)).toBeLessThanOrEqual(2 * 10 + 4);
  }, 60_000);
});
