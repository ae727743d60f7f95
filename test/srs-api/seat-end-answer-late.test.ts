/**
 * Replace, limit 1, with SRS's HTTP API: the seat object asks the TV's shard to end the TV for the phone; the shard
 * ends it (and gives its seat back at once, in the background), but its answer comes after the seat object stopped
 * waiting (SHARD_TIMEOUT_MS, 2 s: a slow or congested link). The TV must still be kicked from its SRS: its session
 * no longer counts in the gate, so a TV still connected to SRS is a second screen nobody counts.
 * (Found by an adversarial pass: the test failed before its fix.)
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { hook } from "../srs";
import { ALLOW, installFakeSrs, kickedOn } from "../fake-srs";
import { events, until } from "../fleet";
import { aliceTvAndAnotherEdge, livePerSub, playWith, seatsOf } from "../identity";
import { ViewerShard } from "../../src/viewers/shard";

installFakeSrs();
afterEach(() => void vi.useRealTimers());

describe("replace: the TV's shard ends the TV for the phone, but its answer arrives after the seat object gave up waiting", () => {
  it("must not happen: the TV's seat was already given back by its shard, so the late answer was not awaited and the TV was never kicked: it played on at SRS beside the phone", async () => {
    const { a, b, s, token } = await aliceTvAndAnotherEdge(["phone001"]);
    vi.spyOn(console, "error").mockImplementation(() => {});
    const real = ViewerShard.prototype.endSeat;
    let answered = false;
    vi.spyOn(ViewerShard.prototype, "endSeat").mockImplementation(async function (this: ViewerShard, ...args: Parameters<ViewerShard["endSeat"]>) {
      const ended = real.apply(this, args);
      if (args[1].clientId === "tv000001") {
        // The TV ended here (its seat goes back at once); the answer is on its way for longer than the seat object waits.
        await scheduler.wait(2_600);
        answered = true;
      }
      return ended;
    } as any);
    expect(await hook(playWith(s, b.edge, "phone001", token))).toEqual(ALLOW);
    // The late answer arrives, and the kick it brings is sent in the background.
    await until(() => answered);
    await until(() => kickedOn(a.fake, "tv000001"));
    expect((await livePerSub(s)).alice).toBe(1);
    expect(await seatsOf(s, "alice")).toEqual(["phone001"]);
    // The TV's session ended in the gate: SRS is told to drop it, else the TV and the phone both play on limit 1.
    expect((await events(s)).some((e: any) => e.client === "tv000001" && e.decision === "end")).toBe(true);
    expect(kickedOn(a.fake, "tv000001")).toBe(true);
    expect(a.fake.clients.has("tv000001") && b.fake.clients.has("phone001")).toBe(false);
  });
});
