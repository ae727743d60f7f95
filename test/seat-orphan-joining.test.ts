/**
 * A JOINING seat left by a take that a reset of the seat object cut short (src/viewers/seats.ts: the phone's seat
 * inserted, not granted; the TV it was replacing marked leaving, never ended) is never granted by anyone else: only
 * a take of its own session, made anew, may grant it. (Found by an adversarial pass: the test failed before its fix.)
 */
import { env } from "cloudflare:workers";
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import { viewerSeats } from "../src/object-access";
import { ViewerShard } from "../src/viewers/shard";
import { aliceReplacingOn, ALLOW, keyOf, LIMIT, livePerSub, playWith, seatsOf, screensOnTheFakeClock, a, c, settle } from "./identity";
import { type Edge, hook } from "./srs";
import { events } from "./fleet";

screensOnTheFakeClock();

/**
 * What a reset of the seat object (a code update) in the middle of the phone's take leaves in its storage: the
 * phone's seat JOINING (leaving = 2, never granted), the TV's marked leaving (1), no take running any more.
 */
async function phoneTakeCutShortByAReset(s: string, edge: Edge) {
  const stub = viewerSeats(env, keyOf(s), "alice");
  await runInDurableObject(stub, (_o, state: DurableObjectState) => {
    state.storage.sql.exec("UPDATE seats SET leaving = 1 WHERE stream_key = ? AND sub = 'alice' AND client_id = 'tv000001'", keyOf(s));
    state.storage.sql.exec(
      "INSERT INTO seats (stream_key, sub, server_id, service_id, client_id, since, grant_id, leaving) VALUES (?, 'alice', ?, ?, 'phone001', ?, 'cut-short', 2)",
      keyOf(s), edge.server, edge.service, Date.now(),
    );
  });
  await evictDurableObject(stub);
}

describe("replace, limit 1: the phone's take was cut short by a reset; then the laptop plays while the edge of the TV and the phone cannot be reached", () => {
  it("must not happen: the laptop, refused, gave the phone's never-granted seat back as granted, and the phone's next on_play was admitted on it beside the TV (two screens on limit 1)", async () => {
    const { s, token } = await aliceReplacingOn(a);
    await phoneTakeCutShortByAReset(s, a);
    // The seat object cannot reach edge a's shard for a moment (a platform failure): neither to ask about its
    // sessions nor to end them.
    vi.spyOn(console, "error").mockImplementation(() => {});
    const down = { on: true };
    const realState = ViewerShard.prototype.seatState;
    const realEnd = ViewerShard.prototype.endSeat;
    vi.spyOn(ViewerShard.prototype, "seatState").mockImplementation(async function (this: ViewerShard, ...args: Parameters<ViewerShard["seatState"]>) {
      if (down.on && (this as any).serverId === a.server) throw new Error("viewer shard unreachable");
      return realState.apply(this, args);
    } as any);
    vi.spyOn(ViewerShard.prototype, "endSeat").mockImplementation(function (this: ViewerShard, ...args: Parameters<ViewerShard["endSeat"]>) {
      if (down.on && (this as any).serverId === a.server) throw new Error("viewer shard unreachable");
      return realEnd.apply(this, args);
    } as any);
    // The laptop: the TV cannot be ended, so it is refused (README: "rather than admitted beside it").
    expect(await hook(playWith(s, c, "laptop01", token))).toEqual(LIMIT);
    down.on = false;
    // SRS sends the phone's on_play again: it replaces the TV like any newer screen, never plays beside it.
    expect(await hook(playWith(s, a, "phone001", token))).toEqual(ALLOW);
    await settle();
    expect(await livePerSub(s)).toEqual({ alice: 1 });
    expect(await seatsOf(s, "alice")).toEqual(["phone001"]);
    expect((await events(s)).some((e: any) => e.client === "tv000001" && e.decision === "end" && /replaced by a newer session/.test(e.reason))).toBe(true);
  });
});
