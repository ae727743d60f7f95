/**
 * Sessions ended for newer ones (src/viewers/seats.ts: the `ended` table, markEnded / endedAt / unmarkEnded)
 * when two takes end the same session (found by the adversarial pass of the stored marks).
 */
import { describe, expect, it, vi } from "vitest";
import { aliceReplacingOn, ALLOW, playWith, screensOnTheFakeClock, a, b, c } from "./identity";
import { ViewerShard } from "../src/viewers/shard";
import { ViewerSeats } from "../src/viewers/seats";
import { countCalls } from "./fleet";
import { admin, hook } from "./srs";

screensOnTheFakeClock();

/** The client ids GET …/viewers lists, per viewer id. */
const listed = async (s: string) => (await admin("GET", `/streams/live/${s}/viewers`)).body.viewers.map((v: any) => v.sessions.map((x: any) => x.clientId).sort());

/** Waits (polling: a promise of the test cannot be awaited inside an object) until `ok`. */
async function until(ok: () => boolean): Promise<void> {
  for (let i = 0; i < 1_000 && !ok(); i++) await scheduler.wait(5);
  expect(ok()).toBe(true);
}

describe("two takes ending the same session", () => {
  // The phone's take marks the TV ended and asks edge a's shard to end it; the tablet's take, racing it, counts the TV
  // (leaving) and marks it ended too. The phone's call fails (the shard unreachable for it), so the phone's take
  // unmarks the TV, while the tablet's call ends it: the TV is kicked, its mark gone. A late repeat of its on_play
  // then finds neither seat nor mark, and replaces the tablet: of the viewer's screens, the one it left wins.
  it("one take's failure to end it does not unmark it while the other ends it: a late repeat of its on_play is refused, the tablet stays", async () => {
    const { s, token } = await aliceReplacingOn(a);
    const calls = { n: 0, first: false, second: false, failFirst: false, releaseSecond: false };
    const real = ViewerShard.prototype.endSeat;
    vi.spyOn(ViewerShard.prototype, "endSeat").mockImplementation(async function (this: ViewerShard, ...args: Parameters<ViewerShard["endSeat"]>) {
      if (args[1].clientId !== "tv000001") return real.apply(this, args);
      const n = ++calls.n;
      if (n === 1) {
        calls.first = true;
        while (!calls.failFirst) await scheduler.wait(5);
        throw new Error("viewer shard failed");
      }
      if (n === 2) {
        calls.second = true;
        while (!calls.releaseSecond) await scheduler.wait(5);
      }
      return real.apply(this, args);
    } as any);
    // The TV's seat, given back by its shard in the background once it ended the TV.
    const tvReleased = countCalls(ViewerSeats.prototype, "release", (_seats, [, , sessions]) => sessions.some((x: { clientId: string }) => x.clientId === "tv000001"));
    const phone = hook(playWith(s, b, "phone001", token));
    await until(() => calls.first);
    const tablet = hook(playWith(s, c, "tablet01", token));
    await until(() => calls.second);
    // The phone's call fails while the tablet's is on its way.
    calls.failFirst = true;
    expect((await phone).body.code).toBe(4016);
    calls.releaseSecond = true;
    expect(await tablet).toEqual(ALLOW);
    await until(() => tvReleased.done > 0);
    vi.restoreAllMocks();
    expect(await listed(s)).toEqual([["tablet01"]]);
    // The TV's on_play again, late (SRS or the Worker retrying it): the TV was ended for the tablet.
    const late = await hook(playWith(s, a, "tv000001", token));
    expect(late.body.code).toBe(4016);
    expect(await listed(s)).toEqual([["tablet01"]]);
  });
});
