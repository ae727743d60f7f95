/**
 * What GET /admin/streams costs in calls to viewer shards (each a subrequest of the listing: Workers
 * Paid allows 10,000 per request, and the console asks for its page every 3 s): at most 1,000
 * (LIST_SHARD_CALLS_MAX, src/viewers/audience.ts) however many edges the page's streams are watched on. Streams past that are
 * listed from their objects' records (the shards' last reports), and say so; a single stream's GET
 * still asks every shard.
 */
import { describe, expect, it, vi } from "vitest";
import { runInDurableObject } from "cloudflare:test";
import { StreamObject } from "../src/stream/object";
import { ViewerShard } from "../src/viewers/shard";
import type { LeaseReport } from "../src/viewers/lease";
import { admin, createStream, newEdge, uniqueStream } from "./srs";
import { ALLOW } from "./fake-srs";
import { playOn, streamStub } from "./fleet";

/** `n` viewer shards report one live viewer each to the stream (lease messages, as edges send them). */
async function reportedBy(stream: string, n: number): Promise<void> {
  await runInDurableObject(streamStub(stream), async (object: StreamObject) => {
    for (let i = 0; i < n; i++) {
      const report: LeaseReport = { streamKey: `__defaultVhost__/live/${stream}`, serverId: `${stream}-edge-${i}`, seq: 1, granted: 0, live: 1, suspended: 0, want: 0, place: { colo: "", country: "" } };
      await object.viewerLease(report);
    }
  });
}

describe("GET /admin/streams asks at most 1,000 viewer shards", () => {
  it("a page whose streams are watched on 1,021 edges: streams without a cap are asked first, a capped one that no longer fits is listed as its edges last reported it (and says so), a small one still fits; GET of that stream asks them all", async () => {
    const prefix = uniqueStream("budget");
    // In name order: a capped stream on 520 edges, an unlimited one on 500, and a capped one on one real edge.
    const [capped, open, small] = [`${prefix}-a`, `${prefix}-b`, `${prefix}-c`];
    await createStream(capped, { maxViewers: 10_000 });
    await createStream(open);
    await createStream(small, { maxViewers: 5 });
    // The shards behind these reports hold no viewer when asked: asked figures are 0, reported ones 1 per edge.
    await reportedBy(capped, 520);
    await reportedBy(open, 500);
    const edge = newEdge();
    expect(await playOn(small, edge, "v1")).toEqual(ALLOW);

    const asked = vi.spyOn(ViewerShard.prototype, "audience");
    const res = await admin("GET", `/streams?prefix=live/${prefix}`);
    expect(res.status).toBe(200);
    // The unlimited stream's 500 and the small one's 1 (1,021 before: one per edge of every stream).
    expect(asked.mock.calls.length).toBeLessThanOrEqual(1_000);
    expect(asked.mock.calls.length).toBe(501);
    const [a, b, c] = res.body.streams;
    expect(a).toMatchObject({ stream: capped, viewers: 520, distinctViewerIds: 0, audienceAsReported: true });
    expect(a.shards).toHaveLength(520);
    expect(Object.keys(a).slice(-3)).toEqual(["createdAt", "updatedAt", "audienceAsReported"]);
    expect(b).toMatchObject({ stream: open, viewers: 0, shards: [] });
    expect(c).toMatchObject({ stream: small, viewers: 1, shards: [{ serverId: edge.server, viewers: 1 }] });
    for (const s of [b, c]) expect(s).not.toHaveProperty("audienceAsReported");

    // The stream alone (the console's Details): every shard is asked, the figures are now's.
    asked.mockClear();
    const one = await admin("GET", `/streams/live/${capped}`);
    expect(asked.mock.calls.length).toBe(520);
    expect(one.body).toMatchObject({ viewers: 0, shards: [] });
    expect(one.body).not.toHaveProperty("audienceAsReported");
    vi.restoreAllMocks();
  });
});
