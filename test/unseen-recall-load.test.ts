/**
 * Review of 3b8da69 ("unseen" recalls at a shortage within RECALL_GAP_MS): the load they add to a full stream's
 * object in a flash crowd at the cap with many edges, viewers coming and going. README: "Load of the rounds".
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { ViewerShard } from "../src/viewers/shard";
import { at, streamAtZero, streamStub, viewer, viewerStop, fireDue } from "./fleet";
import { newEdge, type Edge } from "./srs";

afterEach(() => {
  vi.restoreAllMocks();
  vi.useRealTimers();
});

describe("unseen recalls in a flash crowd at the cap", () => {
  it("holds: 100 servers at the cap, a viewer leaving and one joining elsewhere every 250 ms, 5 new edges refused each time: the unseen recalls cost at most about one call per slot freed (plus one per shard once), not one per shard per shortage", async () => {
    const servers = 100;
    const s = await streamAtZero({ maxViewers: servers });
    const holders = Array.from({ length: servers }, () => newEdge());
    let n = 0;
    const client = () => `v${String(n++).padStart(7, "0")}`;
    const watching: [Edge, string][] = [];
    // The flash crowd: every holder is answered while the stream has slots free (told it is not tight).
    for (const e of holders) {
      const c = client();
      expect((await viewer(s, e, c)).body.code).toBe(0);
      watching.push([e, c]);
    }
    let recalls = 0;
    const real = ViewerShard.prototype.recall;
    vi.spyOn(ViewerShard.prototype, "recall").mockImplementation(async function (this: ViewerShard, ...args: Parameters<ViewerShard["recall"]>) {
      recalls++;
      return real.apply(this, args);
    });
    let leaves = 0;
    const seconds = 10;
    for (let t = 250; t <= seconds * 1000; t += 250) {
      at(t);
      for (let i = 0; i < 5; i++) expect((await viewer(s, newEdge(), client())).body.code).toBe(4005);
      const [e, c] = watching.shift()!;
      expect((await viewerStop(s, e, c)).body.code).toBe(0);
      leaves++;
      const next = holders[(t / 250) % servers];
      const c2 = client();
      expect((await viewer(s, next, c2)).body.code).toBe(0);
      watching.push([next, c2]);
      await fireDue(streamStub(s));
    }
    console.log(JSON.stringify({ recalls, leaves, servers, seconds }));
    // The rounds with checks (at most one a second, each reaching every shard) and, within their gap, at most one
    // unseen recall per shard told it was not tight (a slot freed) and once per shard after the crowd.
    expect(recalls).toBeLessThanOrEqual(seconds * servers + 2 * leaves + servers);
  }, 120_000);
});
