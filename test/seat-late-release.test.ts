/**
 * A seat given back late (src/viewers/admission.ts endAttempt, decide's finally → src/viewers/seats.ts release): an on_play that took
 * a seat and was then not admitted gives it back in the background; a repeat of that on_play (an HLS player asking
 * for its playlist again with the same hls_ctx, SRS re-sending the hook) may be admitted on that same seat before the
 * release lands. The release must not take the seat from the session now playing on it. Failed before its fix.
 */
import { describe, expect, it, vi } from "vitest";
import { ALLOW, LIMIT, limited, livePerSub, playWith, seatsOf, tokenOf, screensOnTheFakeClock, a, b, settle } from "./identity";
import { ViewerSeats } from "../src/viewers/seats";
import { hook } from "./srs";
import { holdMatching, until, withDeadline } from "./fleet";

screensOnTheFakeClock();

describe("deny, limit 1: the seat of an on_play the Worker undid is given back late, after a repeat of it was admitted on that seat", () => {
  // README: "A repeated on_play of a live session is not a second session"; "the first screen keeps playing, the new one is refused".
  it("must not happen: the late release took the seat of the live TV, and a second screen was admitted beside it", async () => {
    const s = await limited();
    const token = await tokenOf(s, "alice");
    // The TV's first on_play: its seat is slow to be granted, the Worker gives up (503) and undoes the hook.
    const take = holdMatching(ViewerSeats.prototype, "take", (_self, args) => args[0].session.clientId === "tv000001");
    // The seat that attempt then gives back is on its way (a retry over a flaky network).
    const release = holdMatching(ViewerSeats.prototype, "release", (_self, args) => args[2].some((x: any) => x.clientId === "tv000001"));
    vi.spyOn(console, "error").mockImplementation(() => {});
    expect((await withDeadline(100, () => hook(playWith(s, a, "tv000001", token)))).status).toBe(503);
    take.released = true;
    await until(() => release.reached);
    // The player asks again (an HLS playlist request with the same hls_ctx): admitted on the seat still there.
    expect(await hook(playWith(s, a, "tv000001", token))).toEqual(ALLOW);
    release.released = true;
    await until(() => release.done);
    await settle();
    // The TV plays: the laptop is refused, and the TV still holds its seat.
    expect(await hook(playWith(s, b, "laptop01", token))).toEqual(LIMIT);
    expect(await livePerSub(s)).toEqual({ alice: 1 });
    expect(await seatsOf(s, "alice")).toEqual(["tv000001"]);
  });
});
