/**
 * Adversarial probes of the stored seat retry (742f1fb): sessions admitted before a viewer's limit take their
 * seats from the shard's background work; a restart of the shard must not drop that work.
 */
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { ViewerSeats } from "../src/viewers/seats";
import { ALLOW, LIMIT, livePerSub, playWith, seatsOf, tokenOf } from "./identity";
import { admin, createStream, type Edge, hook, newEdge, uniqueStream } from "./srs";
import { at, shardStub, until, useFakeClock } from "./fleet";

let a: Edge;
let b: Edge;
useFakeClock();
beforeEach(() => {
  a = newEdge();
  b = newEdge();
});

describe("a limit set while a viewer watches: the shard restarts while that session's seat is being taken", () => {
  it("the seat being taken when the shard restarted (a deploy) is taken after the restart: the second screen is refused (nothing was stored until the take failed, so the restart dropped it)", async () => {
    const s = uniqueStream();
    await createStream(s, { playAuth: "token" });
    const token = await tokenOf(s, "alice");
    expect(await hook(playWith(s, a, "tv000001", token))).toEqual(ALLOW);
    // The seat object is slow (busy, far away): the first take for the session admitted before the limit is on its way.
    const real = ViewerSeats.prototype.take;
    let held = 0;
    vi.spyOn(ViewerSeats.prototype, "take").mockImplementation(async function (this: ViewerSeats, ...args: Parameters<ViewerSeats["take"]>) {
      if (args[0].limit === Number.MAX_SAFE_INTEGER && held++ === 0) return new Promise(() => {});
      return real.apply(this, args);
    });
    vi.spyOn(console, "error").mockImplementation(() => {});
    expect((await admin("PUT", `/streams/live/${s}`, { maxSessionsPerViewer: 1 })).status).toBe(200);
    await until(() => held === 1);
    // The shard restarts meanwhile: nothing in memory survives; its storage and its stored alarm do.
    // (The platform resets the object, as a deploy does: its calls in flight are abandoned.)
    await runInDurableObject(shardStub(a), (_shard, state) => state.abort("deploy")).catch(() => {});
    at(60_000);
    await runDurableObjectAlarm(shardStub(a));
    await until(async () => (await seatsOf(s, "alice")).length === 1);
    expect(await hook(playWith(s, b, "phone001", token))).toEqual(LIMIT);
    expect(await livePerSub(s)).toEqual({ alice: 1 });
  });
});
