/**
 * Adversarial review of 3b8da69 (src/stream/leases.ts toldTight/mayHoldUnseen, src/stream/object.ts viewerLease,
 * src/stream/slot-rounds.ts "unseen" recalls) and 182527d (src/viewers/shard.ts endSeatHandingOff "kept" for a
 * screen still being admitted). README: "Flash crowds" ("No stranded slots", "Slots handed over", "Load of the
 * rounds") and "One ticket, one screen".
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { StreamObject } from "../src/stream/object";
import type { LeaseReport } from "../src/viewers/lease";
import { aNotTight, until, viewer, viewerStop } from "./fleet";
import { ALLOW, admin, streamState } from "./srs";

afterEach(() => {
  vi.restoreAllMocks();
  vi.useRealTimers();
});

/** The stream's answer to the first message of `server` matching `which` is computed, then held until released. */
function answerHeld(which: (r: LeaseReport) => boolean) {
  const held = { reached: false, released: false };
  const real = StreamObject.prototype.viewerLease;
  vi.spyOn(StreamObject.prototype, "viewerLease").mockImplementation(async function (this: StreamObject, report: LeaseReport) {
    const answer = await real.call(this, report);
    if (!held.reached && which(report)) {
      held.reached = true;
      while (!held.released) await scheduler.wait(5);
    }
    return answer;
  });
  return held;
}

/** aNotTight, and b's viewer takes the stream's free slot: the stream is full (3 of 3). */
async function aNotTightBFull() {
  const { s, a, b } = await aNotTight();
  expect(await viewer(s, b, "b0000001")).toEqual(ALLOW);
  return { s, a, b };
}

describe("3b8da69: the stream's memory of which shards are tight", () => {
  it("must not happen: a push of revocations crosses the answer that told a (not tight) the stream is tight, voiding it at a; the stream counts a as tight, a keeps the slots its viewers free unseen, and b's viewer is refused 4005 at 1 of 3 viewers", async () => {
    const { s, a, b } = await aNotTightBFull();
    // a's next viewer asks at the full stream: refused, the answer says tight; it is on its way back to a.
    const held = answerHeld((r) => r.serverId === a.server && r.want > 0);
    const a5 = viewer(s, a, "a0000005");
    await until(() => held.reached);
    // A revocation (of nobody watching) is pushed to every shard, leaving their slots: a's lease moves on, the answer is void there.
    expect((await admin("POST", `/streams/live/${s}/revocations`, { sub: "mallory" })).status).toBeLessThan(300);
    held.released = true;
    expect((await a5).body.code).toBe(4005);
    // a's viewers leave: a, still not tight as far as it knows, keeps their slots for its next viewers.
    expect(await viewerStop(s, a, "a0000001")).toEqual(ALLOW);
    expect(await viewerStop(s, a, "a0000003")).toEqual(ALLOW);
    expect(await streamState(s)).toMatchObject({ viewers: 1 });
    // b's next viewers: two slots are unused at a.
    for (const c of ["b0000002", "b0000003"]) expect(await viewer(s, b, c), c).toEqual(ALLOW);
    expect((await viewer(s, b, "b0000004")).body.code).toBe(4005);
  });
});
