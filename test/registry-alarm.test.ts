/**
 * Attacks on the liveness rules (issue 10) from a review: late, forged and
 * racing hooks, lost notices, settings typos. Each held after its fix.
 */
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { beforeEach, describe, expect, it } from "vitest";
import { ServerRegistry, shardOf } from "../src/server/registry";
import { type Edge, newEdge } from "./srs";
import { at, beat, serverStub, T0, useFakeClock } from "./fleet";

const TIMEOUT_MS = 30_000;

let edge: Edge;
useFakeClock();
beforeEach(() => {
  edge = newEdge();
});

describe("a far-off registry alarm does not delay a new server's heartbeat deadline", () => {
  it("after a heartbeat, the shard's alarm is due within SERVER_TIMEOUT_S", async () => {
    // Another server of the same shard went silent: the shard's alarm is now set for its grace period (1 day).
    let dead = newEdge();
    while (shardOf(dead.server) !== shardOf(edge.server)) dead = newEdge();
    await beat(dead);
    at(TIMEOUT_MS + 1000);
    await runDurableObjectAlarm(serverStub(dead)); // dead is silent; next wake: its grace period
    at(TIMEOUT_MS + 2000);
    await beat(edge); // a new server starts beating
    const due = await runInDurableObject(serverStub(edge), async (_: ServerRegistry, state: DurableObjectState) => state.storage.getAlarm());
    expect(due).not.toBeNull();
    // Actual: due at the other server's grace deadline, a day later; this server's silence is noticed
    // only by the sweeps of streams it holds sessions on.
    expect(due! - (T0 + TIMEOUT_MS + 2000)).toBeLessThanOrEqual(TIMEOUT_MS);
  });
});

