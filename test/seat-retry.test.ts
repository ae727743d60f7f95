/**
 * Adversarial probes of the stored seat retry (742f1fb): sessions admitted before a viewer's limit take their
 * seats from the shard's background work; a restart of the shard must not drop that work.
 */
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import { ViewerSeats } from "../src/viewers/seats";
import { ALLOW, LIMIT, livePerSub, playWith, seatsOf, tokenOf, screensOnTheFakeClock, a, b } from "./identity";
import { admin, createStream, hook, stopPlay, uniqueStream } from "./srs";
import { at, holdMatching, shardStub, until } from "./fleet";

screensOnTheFakeClock();

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

describe("a seat retry made moot by a later policy message", () => {
  it("leaves no stored retry once that message took the seats (the row stayed until the shard restarted, which then asked the stream for nothing)", async () => {
    const s = uniqueStream();
    await createStream(s, { playAuth: "token" });
    const token = await tokenOf(s, "alice");
    expect(await hook(playWith(s, a, "tv000001", token))).toEqual(ALLOW);
    const real = ViewerSeats.prototype.take;
    let refused = 0;
    vi.spyOn(ViewerSeats.prototype, "take").mockImplementation(async function (this: ViewerSeats, ...args: Parameters<ViewerSeats["take"]>) {
      if (args[0].limit === Number.MAX_SAFE_INTEGER && refused++ === 0) throw new Error("seat object unavailable (test)");
      return real.apply(this, args);
    });
    vi.spyOn(console, "error").mockImplementation(() => {});
    expect((await admin("PUT", `/streams/live/${s}`, { maxSessionsPerViewer: 1 })).status).toBe(200);
    await until(() => refused === 1);
    // The next policy message (another change of the limit) takes the seat before the shard's alarm would.
    expect((await admin("PUT", `/streams/live/${s}`, { maxSessionsPerViewer: 2 })).status).toBe(200);
    await until(async () => (await seatsOf(s, "alice")).length === 1);
    const stored = async () =>
      runInDurableObject(shardStub(a), (_shard, state) => state.storage.sql.exec<{ key: string }>("SELECT key FROM meta WHERE key LIKE 'seat_retry%'").toArray().length);
    await until(async () => (await stored()) === 0);
  });
});

describe("a limit set while a viewer watches: the session ends while its seat is being taken", () => {
  it("the seat taken for it afterwards goes back: the viewer's next screen plays (the seat stayed, and the viewer was refused on a screen it no longer had)", async () => {
    const s = uniqueStream();
    await createStream(s, { playAuth: "token" });
    const token = await tokenOf(s, "alice");
    expect(await hook(playWith(s, a, "tv000001", token))).toEqual(ALLOW);
    const take = holdMatching(ViewerSeats.prototype, "take", (_self, args) => args[0].limit === Number.MAX_SAFE_INTEGER);
    expect((await admin("PUT", `/streams/live/${s}`, { maxSessionsPerViewer: 1 })).status).toBe(200);
    await until(() => take.reached);
    // The TV stops while the seat for it is on its way (it had no seat to give back then).
    expect(await hook(stopPlay("live", s, { ...a, client: "tv000001" }))).toEqual(ALLOW);
    take.released = true;
    await until(() => take.done);
    await until(async () => (await seatsOf(s, "alice")).length === 0);
    expect(await hook(playWith(s, b, "phone001", token))).toEqual(ALLOW);
    expect(await livePerSub(s)).toEqual({ alice: 1 });
  });
});
