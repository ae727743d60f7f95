/**
 * The load a full stream's rounds of recalls put on its own object (src/stream/slot-rounds.ts): each
 * shard a round reaches is a call from the stream's object and a write there, so a full stream whose
 * viewers come and go, watched through many SRS servers, must not cost one of each per server every
 * second (Cloudflare documents 200–500 requests/s for one object that writes). README: "Flash crowds".
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { ROUND_SHARDS_PER_S } from "../src/stream/slot-rounds";
import { at, countRecalls, fireDue, fullOverManyServers, streamStub, viewer, viewerStop } from "./fleet";
import { newEdge } from "./srs";

afterEach(() => {
  vi.restoreAllMocks();
  vi.useRealTimers();
});

describe("a full stream watched through many servers, its viewers coming and going", () => {
  it("its rounds reach at most ROUND_SHARDS_PER_S shards a second on average, not every shard twice a second: 150 servers, a viewer refused on 3 more and one replaced each second, for 20 s", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    const servers = 150;
    const { s, holders, client, watching } = await fullOverManyServers(servers);
    const refused = Array.from({ length: 3 }, () => newEdge());
    const recalls = countRecalls();
    const seconds = 20;
    for (let t = 250; t <= seconds * 1000; t += 250) {
      at(t);
      if (t % 1000 === 0) {
        for (const e of refused) expect((await viewer(s, e, client())).body.code).toBe(4005);
        // One viewer leaves, another joins on a server that has viewers: the stream stays full.
        const [e, c] = watching.shift()!;
        expect((await viewerStop(s, e, c)).body.code).toBe(0);
        const next = holders[(t / 1000) % servers];
        const c2 = client();
        expect((await viewer(s, next, c2)).body.code).toBe(0);
        watching.push([next, c2]);
      }
      await fireDue(streamStub(s));
    }
    expect(recalls.n, `recall calls in ${seconds} s from the stream's object to its ${servers} shards`).toBeLessThanOrEqual(seconds * ROUND_SHARDS_PER_S);
  }, 60_000);
});
