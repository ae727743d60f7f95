/**
 * Each path reads, and fails on, only the settings it uses: a malformed
 * setting that only publishes and plays need must not stop heartbeats (the
 * fleet would be declared dead SERVER_TIMEOUT_S later) or stop events.
 */
import { describe, expect, it } from "vitest";
import { createStream, heartbeat, hookWith, newEdge, publish, streamState, stopPlay, uniqueStream } from "./srs";

const ALLOW = { status: 200, body: { code: 0 } };

describe("a malformed AUTH_FAILURES_PER_MINUTE", () => {
  const bad = { AUTH_FAILURES_PER_MINUTE: "ten" };

  it("does not stop heartbeats or stop events", async () => {
    const s = uniqueStream();
    await createStream(s);
    const edge = newEdge();
    expect(await hookWith(bad, heartbeat(edge), "/heartbeat")).toEqual(ALLOW);
    expect(await hookWith(bad, stopPlay("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
  });

  it("fails on_publish closed with a 500 naming it, and admits nothing", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    const r = await hookWith(bad, publish("live", s, key, { ...newEdge(), client: "pub00001" }));
    expect(r).toEqual({ status: 500, body: { code: 500, reason: 'AUTH_FAILURES_PER_MINUTE must be a positive integer, not "ten"' } });
    expect((await streamState(s)).live).toBe(false);
  });
});
