/**
 * Hooks that gate nothing (on_hls, on_dvr, on_connect, …) are proof that their process is alive, told to the
 * registry at most once per 5 s per process and Worker isolate (README, "POST /hooks/srs/{HOOK_SECRET}"): on_hls
 * comes with every segment of every stream, and each would otherwise be a registry call. A tell that failed is
 * not counted: the process's next such hook tells again.
 */
import { describe, expect, it, vi } from "vitest";
import { ServerRegistry } from "../src/server/registry";
import { ALLOW, hook, newEdge, streamHook, type Edge } from "./srs";
import { at, beat, overloaded, useFakeClock } from "./fleet";

const segment = (edge: Edge, n: number) => hook({ ...streamHook("on_publish", "live", "cam1", { ...edge, client: "hls00001" }), action: "on_hls", duration: 2, seq_no: n });

useFakeClock();

/** The registry's `heard` calls for `edge`'s server; while `failing`, each throws as an overloaded object. */
function heardCalls(edge: Edge) {
  const state = { calls: 0, failing: false };
  const real = ServerRegistry.prototype.heard;
  vi.spyOn(ServerRegistry.prototype, "heard").mockImplementation(async function (this: ServerRegistry, ...args: Parameters<ServerRegistry["heard"]>) {
    if (args[0] !== edge.server) return real.apply(this, args);
    state.calls++;
    if (state.failing) throw overloaded();
    return real.apply(this, args);
  });
  return state;
}

describe("hooks that gate nothing tell the registry at most once per 5 s per process", () => {
  it("segments within 5 s cost one registry call; the first one 5 s later tells again", async () => {
    const edge = newEdge();
    at(0);
    expect(await beat(edge)).toEqual(ALLOW);
    const heard = heardCalls(edge);
    for (let n = 0; n < 5; n++) {
      at(n * 1000);
      expect(await segment(edge, n)).toEqual(ALLOW);
    }
    expect(heard.calls).toBe(1);
    at(5000);
    expect(await segment(edge, 5)).toEqual(ALLOW);
    expect(heard.calls).toBe(2);
    // Another process is told apart.
    const other = newEdge();
    expect(await segment(other, 0)).toEqual(ALLOW);
    vi.restoreAllMocks();
  });

  it("a tell that failed is tried again by the process's next hook, which is allowed either way", async () => {
    const edge = newEdge();
    at(100_000);
    expect(await beat(edge)).toEqual(ALLOW);
    const heard = heardCalls(edge);
    vi.spyOn(console, "error").mockImplementation(() => {});
    heard.failing = true;
    expect(await segment(edge, 0)).toEqual(ALLOW);
    const failedCalls = heard.calls;
    expect(failedCalls).toBeGreaterThanOrEqual(1);
    heard.failing = false;
    at(101_000);
    expect(await segment(edge, 1)).toEqual(ALLOW);
    expect(heard.calls).toBe(failedCalls + 1);
    at(102_000);
    expect(await segment(edge, 2)).toEqual(ALLOW);
    expect(heard.calls).toBe(failedCalls + 1);
    vi.restoreAllMocks();
  });
});
