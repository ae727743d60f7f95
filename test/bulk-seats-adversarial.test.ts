/**
 * Adversarial probes of seats given back in bulk (one releaseAll per seat object: a restart fence, an
 * operator's end, a revocation): the limit per viewer id holds, and a viewer whose session ended can play again.
 */
import { describe, expect, it, vi } from "vitest";
import { ALLOW, LIMIT, limited, playWith, seatsOf, tokenOf, screensOnTheFakeClock, a, b, c, settle, livePerSub } from "./identity";
import { ViewerSeats } from "../src/viewers/seats";
import { admin, hook } from "./srs";
import { beat, deliverNotices, restarted, until } from "./fleet";

screensOnTheFakeClock();

describe("seats given back in bulk, adversarially", () => {
  it("holds: the bulk release lost (seat object unreachable for every try) after a restart fence: the seat object's own check frees the seat at the next contested play", async () => {
    const s = await limited();
    await beat(a);
    const token = await tokenOf(s, "alice");
    expect(await hook(playWith(s, a, "tv000001", token))).toEqual(ALLOW);
    const lost = vi.spyOn(ViewerSeats.prototype, "releaseAll").mockImplementation(() => {
      throw new Error("Network connection lost.");
    });
    vi.spyOn(console, "error").mockImplementation(() => {});
    expect((await beat(restarted(a))).status).toBe(200);
    await deliverNotices(a);
    // The fence's bulk release (in the background) has been tried; then a while for any retry of it to be lost too.
    await until(() => lost.mock.calls.length > 0);
    await settle();
    expect(lost).toHaveBeenCalled();
    expect(await seatsOf(s, "alice")).toEqual(["tv000001"]);
    lost.mockRestore();
    expect(await hook(playWith(s, b, "phone001", token))).toEqual(ALLOW);
    expect(await hook(playWith(s, c, "pc000001", token))).toEqual(LIMIT);
    await settle();
    expect(await seatsOf(s, "alice")).toEqual(["phone001"]);
  });

  it("holds: an operator's end of the stream's sessions races a new screen of the same viewer on another edge: never two live sessions, and the new one keeps its seat", async () => {
    const s = await limited();
    await beat(a);
    const token = await tokenOf(s, "alice");
    expect(await hook(playWith(s, a, "tv000001", token))).toEqual(ALLOW);
    const [ended, phone] = await Promise.all([admin("DELETE", `/streams/live/${s}/sessions`), hook(playWith(s, b, "phone001", token))]);
    expect(ended.status).toBe(200);
    // The operator's end gives the seats back in the background: until they match the live sessions; then a while for
    // anything else to happen (never two live sessions).
    await until(async () => (await seatsOf(s, "alice")).length === ((await livePerSub(s)).alice ?? 0));
    await settle();
    const live = await livePerSub(s);
    expect(live.alice ?? 0).toBeLessThanOrEqual(1);
    // If the phone was admitted and its session not ended by the operator, its seat is there.
    const seats = await seatsOf(s, "alice");
    expect(seats.length).toBe(live.alice ?? 0);
    expect(await hook(playWith(s, c, "pc000001", token))).toEqual((live.alice ?? 0) === 1 ? LIMIT : ALLOW);
    void phone;
  });

  it("holds: replace mode racing a restart fence of the replaced screen's edge: one live session, its seat the only one", async () => {
    const s = await limited({ onExtraViewerSession: "replace" });
    await beat(a);
    const token = await tokenOf(s, "alice");
    expect(await hook(playWith(s, a, "tv000001", token))).toEqual(ALLOW);
    const [, phone] = await Promise.all([
      (async () => {
        await beat(restarted(a));
        await deliverNotices(a);
      })(),
      hook(playWith(s, b, "phone001", token)),
    ]);
    expect(phone).toEqual(ALLOW);
    await settle();
    expect(await livePerSub(s)).toEqual({ alice: 1 });
    expect(await seatsOf(s, "alice")).toEqual(["phone001"]);
  });
});
