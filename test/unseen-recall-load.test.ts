/**
 * Review of 3b8da69 ("unseen" recalls at a shortage within RECALL_GAP_MS): the load they add to a full stream's
 * object in a flash crowd at the cap with many edges, viewers coming and going. README: "Load of the rounds".
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { at, countRecalls, fireDue, fullOverManyServers, streamStub, viewer, viewerStop } from "./fleet";
import { newEdge } from "./srs";

afterEach(() => {
  vi.restoreAllMocks();
  vi.useRealTimers();
});

describe("unseen recalls in a flash crowd at the cap", () => {
  it("holds: 100 servers at the cap, a viewer leaving and one joining elsewhere every 250 ms, 5 new edges refused each time: the unseen recalls cost at most about one call per slot freed (plus one per shard once), not one per shard per shortage", async () => {
    const servers = 100;
    // The flash crowd: every holder is answered while the stream has slots free (told it is not tight).
    const { s, holders, client, watching } = await fullOverManyServers(servers);
    const recalls = countRecalls();
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
    console.log(JSON.stringify({ recalls: recalls.n, leaves, servers, seconds }));
    // The rounds with checks (at most one a second, each reaching every shard) and, within their gap, at most one
    // unseen recall per shard told it was not tight (a slot freed) and once per shard after the crowd.
    expect(recalls.n).toBeLessThanOrEqual(seconds * servers + 2 * leaves + servers);
  }, 120_000);
});
