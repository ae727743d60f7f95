/**
 * What a usage report costs in calls to viewer shards (each a subrequest of the admin call: Workers
 * Paid allows 10,000 per request, and GET /admin/usage asks up to 200 streams at once): the shards
 * that may hold usage in the range, not every edge that served the stream in USAGE_RETENTION_DAYS;
 * with the totals unchanged. On a fake clock.
 */
import { describe, expect, it, vi } from "vitest";
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { ViewerShard } from "../src/viewers/shard";
import { newEvent } from "../src/events/event";
import type { WebhookEvent } from "../src/events/event";
import { admin, createStream, newEdge, play, publish, hook, stopPlay, unpublish, uniqueStream, type Edge } from "./srs";
import { env } from "cloudflare:workers";
import type { IRequest } from "itty-router";
import { fleetUsage, FLEET_SHARD_CALLS_MAX } from "../src/usage/routes";
import { ALLOW } from "./fake-srs";
import { at, HOUR, iso, MIN, playOn, shardStub, stopOn, streamStub, usage, useFakeClock } from "./fleet";

useFakeClock();

const DAY = 24 * HOUR;
const keyOf = (stream: string) => `__defaultVhost__/live/${stream}`;

/** From now on, the viewer shards asked by `method` about `stream` (the spy sees every stream's; a second spy on one method is the first, cleared). */
function shardCalls(method: "viewerUsage" | "viewersPerMinute" | "peakViewers", stream: string): () => string[] {
  const spy = vi.spyOn(ViewerShard.prototype, method);
  spy.mockClear();
  return () => spy.mock.contexts.filter((_, i) => spy.mock.calls[i][0] === keyOf(stream)).map((shard) => (shard as unknown as { serverId: string }).serverId).sort();
}

/** A viewer of `stream` on `edge` from `from` to `to` (ms since T0); then the shard's alarm leaves the stream, as it does once it holds nothing of it. */
async function watched(stream: string, edge: Edge, client: string, from: number, to: number): Promise<void> {
  at(from);
  expect(await playOn(stream, edge, client)).toEqual(ALLOW);
  at(to);
  expect(await stopOn(stream, edge, client)).toEqual(ALLOW);
  await runDurableObjectAlarm(shardStub(edge));
}

describe("a usage report asks only the viewer shards that may hold usage in its range", () => {
  for (const maxViewers of [null, 5]) {
    it(`${maxViewers === null ? "an unlimited" : "a capped"} stream served by 12 edges that left 3 days ago: a report of the last hour (or day) asks only the edges with viewers since, also one whose viewer has watched for 2 days without a hook; the totals are exact`, async () => {
      const stream = uniqueStream();
      await createStream(stream, { maxViewers });
      // 12 edges of an earlier rollout, each with a viewer for a minute, then gone from the stream.
      const gone = Array.from({ length: 12 }, () => newEdge());
      for (const [i, edge] of gone.entries()) await watched(stream, edge, `old${i}`, i * MIN, (i + 1) * MIN);
      const [watcher, leaver, earlier] = [newEdge(), newEdge(), newEdge()];
      // Today's fleet: a viewer watching since yesterday (its shard has told the stream nothing since it came)…
      at(DAY);
      expect(await playOn(stream, watcher, "w1")).toEqual(ALLOW);
      await runDurableObjectAlarm(shardStub(watcher));
      // …one who watched from 2 h ago until half an hour ago, and one who left 2 h ago (its shard too).
      await watched(stream, earlier, "e1", 3 * DAY - 3 * HOUR, 3 * DAY - 2 * HOUR);
      await watched(stream, leaver, "l1", 3 * DAY - 2 * HOUR, 3 * DAY - 30 * MIN);
      at(3 * DAY);

      // The last hour: the watcher's 3600 s and the leaver's 1800 s; the 12 old edges and the earlier one are not asked.
      const hourly = shardCalls("viewerUsage", stream);
      const lastHour = await usage(stream, `?from=${iso(3 * DAY - HOUR)}&to=${iso(3 * DAY)}`);
      expect(lastHour.buckets).toEqual([{ start: iso(3 * DAY - HOUR), viewerSeconds: 5400, publishSeconds: 0, peakViewers: 2 }]);
      expect(hourly()).toEqual([watcher.server, leaver.server].sort());

      // The default range, the last 24 hours: the earlier edge's hour too; still none of the 12.
      const daily = shardCalls("viewerUsage", stream);
      const lastDay = await usage(stream);
      expect(lastDay.buckets.reduce((s: number, b: any) => s + b.viewerSeconds, 0)).toBe(24 * 3600 + 3600 + 5400);
      expect(lastDay.buckets.find((b: any) => b.start === iso(3 * DAY - 3 * HOUR))).toMatchObject({ viewerSeconds: 3600 + 3600, peakViewers: 2 });
      expect(daily()).toEqual([watcher.server, leaver.server, earlier.server].sort());

      // The console's charts, per minute over the last hour: the stream's, and the fleet's (GET /admin/usage).
      const minutes = shardCalls("viewersPerMinute", stream);
      const perMinute = await usage(stream, "?resolution=minute");
      expect(perMinute.buckets.map((b: any) => b.peakViewers)).toEqual([...Array(31).fill(2), ...Array(29).fill(1)]);
      expect(minutes()).toEqual([watcher.server, leaver.server].sort());
      const fleet = shardCalls("viewersPerMinute", stream);
      expect((await admin("GET", "/usage?resolution=minute")).status).toBe(200);
      expect(fleet()).toEqual([watcher.server, leaver.server].sort());

      // 3 days back, the old edges' hour: each of them is asked, and each viewer's minute counts.
      const old = shardCalls("viewerUsage", stream);
      const then = await usage(stream, `?from=${iso(0)}&to=${iso(HOUR)}`);
      expect(then.buckets).toEqual([{ start: iso(0), viewerSeconds: 12 * 60, publishSeconds: 0, peakViewers: 12 }]);
      expect(old()).toHaveLength(15);
    });
  }

  it("stream.ended's peak viewers asks the edges that had viewers during the publish, not those that left before it started", async () => {
    const stream = uniqueStream();
    const key = await createStream(stream);
    const gone = Array.from({ length: 12 }, () => newEdge());
    for (const [i, edge] of gone.entries()) await watched(stream, edge, `old${i}`, i * MIN, (i + 1) * MIN);
    const [pub, a, b] = [newEdge(), newEdge(), newEdge()];
    at(3 * DAY);
    expect(await hook(publish("live", stream, key, { ...pub, client: "pub1" }))).toEqual(ALLOW);
    await watched(stream, a, "a1", 3 * DAY + MIN, 3 * DAY + 5 * MIN);
    at(3 * DAY + 2 * MIN);
    expect(await playOn(stream, b, "b1")).toEqual(ALLOW);
    at(3 * DAY + 10 * MIN);
    expect(await hook(unpublish("live", stream, { ...pub, client: "pub1" }))).toEqual(ALLOW);
    const asked = shardCalls("peakViewers", stream);
    const ended = newEvent("stream.ended", { vhost: "__defaultVhost__", app: "live", stream, started: new Date(Date.now() - 10 * MIN).toISOString() });
    const sent = await runInDurableObject(streamStub(stream), (object) =>
      (object as unknown as { activity: { withPeakViewers(e: WebhookEvent): Promise<WebhookEvent> } }).activity.withPeakViewers(ended),
    );
    expect(sent.data.peakViewers).toBe(2);
    expect(asked()).toEqual([a.server, b.server].sort());
  });
});

describe("GET /admin/usage keeps within the viewer shards one request may ask", () => {
  it("a page whose streams' shards would not fit ends early, and its cursor resumes with the next stream: every stream reported once, with exact totals, and no page asks more shards than allowed (but for a first stream that alone needs more)", async () => {
    const vhost = `vh-${uniqueStream()}`;
    const streams = [uniqueStream(), uniqueStream(), uniqueStream()];
    at(0);
    for (const s of streams) {
      expect((await admin("PUT", `/streams/live/${s}?vhost=${vhost}`, {})).status).toBe(201);
      for (const [i, edge] of [newEdge(), newEdge()].entries()) {
        const client = `u${String(i).padStart(7, "0")}`;
        at(60_000);
        expect(await hook({ ...play("live", s, { ...edge, client }), vhost })).toEqual(ALLOW);
        at(60_000 + 30 * MIN);
        expect(await hook({ ...stopPlay("live", s, { ...edge, client }), vhost })).toEqual(ALLOW);
      }
    }
    at(HOUR);
    const asked = vi.spyOn(ViewerShard.prototype, "viewerUsage");
    const pageOf = async (shardCalls: number, cursor?: string) => {
      asked.mockClear();
      const query: Record<string, string> = { vhost, ...(cursor ? { cursor } : {}) };
      const request = Object.assign(new Request(`https://gate.test/admin/usage?${new URLSearchParams(query)}`), { query }) as unknown as IRequest;
      const body = await (await fleetUsage(request, env, shardCalls)).json<any>();
      return { body, shards: asked.mock.calls.length };
    };
    // Room for one stream's two shards at a time: three pages, each resuming where the last ended.
    const seen: any[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < 5; page++) {
      const { body, shards } = await pageOf(3, cursor);
      expect(shards, `shards asked by page ${page + 1}`).toBeLessThanOrEqual(3);
      seen.push(...body.streams);
      cursor = body.cursor;
      if (!body.truncated) break;
    }
    expect(seen.map((x) => x.stream).sort()).toEqual([...streams].sort());
    for (const x of seen) expect(x).toMatchObject({ vhost, viewerSeconds: 2 * 30 * 60, publishSeconds: 0, peakViewers: 2 });
    // With room for all: one page, the same figures.
    const all = await pageOf(FLEET_SHARD_CALLS_MAX);
    expect(all.body.truncated).toBeUndefined();
    expect(all.body.streams).toEqual(seen);
    // The route answers the same.
    expect((await admin("GET", `/usage?vhost=${vhost}`)).body.streams).toEqual(seen);
  });
});
