/**
 * The server index must not depend on the Worker's and the registry's clocks
 * agreeing (two machines): here the registry's clock runs a little ahead.
 */
import { beforeEach, describe, expect, it, vi } from "vitest";
import { ServerRegistry } from "../src/server/registry";
import { ALLOW, admin, createStream, type Edge, hook, newEdge, play, stopPlay, streamState, uniqueStream } from "./srs";
import { at, beat, useFakeClock } from "./fleet";

/** How far the registry's clock is behind the Worker's. */
const SKEW_MS = 50;

let edge: Edge;
useFakeClock();
beforeEach(() => {
  edge = newEdge();
});

/** The registry writes tracked_at with its own clock, SKEW_MS behind the Worker's. */

describe("index entries and the clocks of the Worker and the registry", () => {
  it("an on_play and on_stop of one short session leave no index entry behind (registry clock ahead)", async () => {
    await beat(edge);
    const s = uniqueStream();
    await createStream(s);
    const track = ServerRegistry.prototype.track;
    vi.spyOn(ServerRegistry.prototype, "track").mockImplementation(function (this: ServerRegistry, ...args: Parameters<ServerRegistry["track"]>) {
      const now = Date.now();
      vi.setSystemTime(now + SKEW_MS);
      try {
        return track.apply(this, args);
      } finally {
        vi.setSystemTime(now);
      }
    });
    expect(await hook(play("live", s, { ...edge, client: "probe001" }))).toEqual(ALLOW);
    at(10);
    expect(await hook(stopPlay("live", s, { ...edge, client: "probe001" }))).toEqual(ALLOW);
    const listed = (await admin("GET", "/servers")).body.servers.find((x: any) => x.serverId === edge.server);
    expect((await streamState(s)).viewers).toBe(0);
    expect(listed.sessions, "sessions its clients hold").toBe(0);
  });
});
