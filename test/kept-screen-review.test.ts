/**
 * Adversarial review of 182527d (src/viewers/shard-seats.ts endHandingOff: a screen still being admitted is "kept",
 * the newer screen refused for the cap). README: "One ticket, one screen", "Slots handed over".
 */
import { describe, expect, it } from "vitest";
import { ViewerSeats } from "../src/viewers/seats";
import { ViewerShard } from "../src/viewers/shard";
import { ALLOW, c, livePerSub, playWith, screensOnTheFakeClock, seatsOf } from "./identity";
import { hook, newEdge } from "./srs";
import { holdMatching, until } from "./fleet";
import { FULL, holdAfter, leased, phoneAndBob, replaced } from "./hand-off";

screensOnTheFakeClock();

describe("182527d: a screen being admitted is kept", () => {
  it("holds: the laptop refused while the TV was being admitted leaves no trace: its retry replaces the admitted TV (one screen of alice's, the stream at its cap, no slot too many)", async () => {
    const { s, alice, carol } = await phoneAndBob();
    const held = holdAfter(ViewerSeats.prototype, "take", (_self, [req]) => req.session.clientId === "tv000001");
    const tv = hook(playWith(s, c, "tv000001", alice));
    await until(() => held.reached);
    expect(await replaced(s, "phone001")).toBe(true);
    const laptopEdge = newEdge();
    expect(await hook(playWith(s, laptopEdge, "laptop01", alice))).toEqual(FULL(2));
    held.released = true;
    expect(await tv).toEqual(ALLOW);
    // The TV's seat is not left leaving, nor marked ended: the laptop's retry takes its slot as a newer screen.
    expect(await hook(playWith(s, laptopEdge, "laptop01", alice))).toEqual(ALLOW);
    expect(await replaced(s, "tv000001")).toBe(true);
    expect(await livePerSub(s)).toEqual({ alice: 1, bob: 1 });
    expect(await seatsOf(s, "alice")).toHaveLength(1);
    expect(await leased(s)).toBeLessThanOrEqual(2);
    expect(await hook(playWith(s, newEdge(), "carol001", carol))).toEqual(FULL(2));
  });

  it("must not happen: a repeat of the TV's on_play (SRS repeating the hook) while the laptop's hand-off asks c, which keeps the TV (still being admitted), was refused 4016 \"this session was ended for a newer one\": nobody ended it, the TV plays", async () => {
    const { s, alice } = await phoneAndBob();
    const held = holdAfter(ViewerSeats.prototype, "take", (_self, [req]) => req.session.clientId === "tv000001");
    const tv = hook(playWith(s, c, "tv000001", alice));
    await until(() => held.reached);
    const asking = holdMatching(ViewerShard.prototype, "endSeat", (_self, args) => args[4] !== undefined && args[1].clientId === "tv000001");
    const laptop = hook(playWith(s, newEdge(), "laptop01", alice));
    await until(() => asking.reached);
    const again = hook(playWith(s, c, "tv000001", alice));
    // The repeat has reached the seat object (its take waits there for the laptop's hand-off) before c answers.
    await until(() => held.calls === 2);
    // In this order: c answers the hand-off while the TV is still being admitted (released together, whichever
    // poll woke first decided, and a TV admitted before c is asked is rightly replaced).
    asking.released = true;
    await until(() => asking.done);
    held.released = true;
    const out = { tv: await tv, repeat: await again, laptop: await laptop, live: await livePerSub(s), seats: (await seatsOf(s, "alice")).length };
    expect(out).toEqual({ tv: ALLOW, repeat: ALLOW, laptop: FULL(2), live: { alice: 1, bob: 1 }, seats: 1 });
  });
});
