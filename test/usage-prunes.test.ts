/**
 * What the prunes of stored usage, decision-log rings and viewer shards must not lose: figures an
 * operator still sees (usage within USAGE_RETENTION_DAYS, the console's per-minute chart), on a fake clock.
 */
import { describe, expect, it } from "vitest";
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { createStream, newEdge, uniqueStream } from "./srs";
import { at, HOUR, iso, MIN, minutePeaks, playOn, shardStub, stopOn, streamStub, usage, useFakeClock } from "./fleet";
import { ALLOW } from "./fake-srs";

useFakeClock();

const DAY = 24 * HOUR;

describe("the per-minute chart after the usage prune", () => {
  it("a viewer watching for 50 hours still counts in every minute of the last hour once another viewer came and went (the minute row that says 1 since 50 h ago is what carries the count)", async () => {
    const edge = newEdge();
    const stream = uniqueStream();
    await createStream(stream);
    at(-50 * HOUR);
    expect(await playOn(stream, edge, "v1")).toEqual(ALLOW);
    // A second viewer for a minute, half an hour ago: a change, so a newer minute row; its end prunes.
    at(-30 * MIN);
    expect(await playOn(stream, edge, "v2")).toEqual(ALLOW);
    at(-29 * MIN);
    expect(await stopOn(stream, edge, "v2")).toEqual(ALLOW);
    at(0);
    const peaks = await minutePeaks(stream, -60 * MIN, 0);
    // v1 has watched throughout: 1 before v2 came, 2 while both watched, 1 since.
    expect(peaks.slice(0, 30)).toEqual(Array(30).fill(1));
    expect(peaks.slice(30, 32)).toEqual([2, 2]);
    expect(peaks.slice(32)).toEqual(Array(28).fill(1));
  });
});

describe("the per-minute chart after a stream's last minute row (saying none) is pruned", () => {
  it("a stream watched again 3 days later shows each minute's viewers from then on, and 0 before", async () => {
    const edge = newEdge();
    const stream = uniqueStream();
    const other = uniqueStream();
    await Promise.all([createStream(stream), createStream(other)]);
    expect(await playOn(stream, edge, "v1")).toEqual(ALLOW);
    at(MIN);
    expect(await stopOn(stream, edge, "v1")).toEqual(ALLOW);
    // Three days later a session of another stream ends here: the shard's usage prune runs (the row saying 0 goes).
    at(72 * HOUR);
    expect(await playOn(other, edge, "o1")).toEqual(ALLOW);
    at(72 * HOUR + MIN);
    expect(await stopOn(other, edge, "o1")).toEqual(ALLOW);
    const rows = await runInDurableObject(shardStub(edge), (_s, state) =>
      state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM usage_minutes WHERE stream_key LIKE ?", `%/${stream}`).one().n,
    );
    expect(rows).toBe(0);
    at(72 * HOUR + 10 * MIN);
    expect(await playOn(stream, edge, "v2")).toEqual(ALLOW);
    expect(await playOn(stream, edge, "v3")).toEqual(ALLOW);
    at(72 * HOUR + 20 * MIN);
    expect(await stopOn(stream, edge, "v3")).toEqual(ALLOW);
    at(72 * HOUR + 30 * MIN);
    const peaks = await minutePeaks(stream, 72 * HOUR, 72 * HOUR + 30 * MIN);
    expect(peaks).toEqual([...Array(10).fill(0), ...Array(10).fill(2), 2, ...Array(9).fill(1)]);
    const hours = await usage(stream, `?from=${iso(72 * HOUR)}&to=${iso(73 * HOUR)}`);
    expect(hours.buckets[0]).toMatchObject({ viewerSeconds: 10 * 60 + 20 * 60, peakViewers: 2 });
  });
});

describe("a stream's viewer shards are not forgotten while they may hold usage within USAGE_RETENTION_DAYS", () => {
  it("a viewer watching an unlimited stream for 100 days on an edge that tells the stream nothing since: the last day counts in full", async () => {
    const edge = newEdge();
    const stream = uniqueStream();
    await createStream(stream);
    at(0);
    expect(await playOn(stream, edge, "v1")).toEqual(ALLOW);
    // Alarms and reports meanwhile (each can forget shards): the stream's, the shard's, and a report now and then.
    for (let day = 1; day <= 100; day += 9) {
      at(day * DAY);
      await runDurableObjectAlarm(streamStub(stream));
      await runDurableObjectAlarm(shardStub(edge));
      await usage(stream);
    }
    at(100 * DAY);
    const body = await usage(stream, `?from=${iso(99 * DAY)}&to=${iso(100 * DAY)}`);
    expect(body.buckets.reduce((s: number, b: any) => s + b.viewerSeconds, 0)).toBe(24 * 3600);
  });

  it("an edge that left a capped stream and came back a month later: its viewers of both visits count", async () => {
    const edge = newEdge();
    const stream = uniqueStream();
    await createStream(stream, { maxViewers: 5 });
    at(0);
    expect(await playOn(stream, edge, "v1")).toEqual(ALLOW);
    at(MIN);
    expect(await stopOn(stream, edge, "v1")).toEqual(ALLOW);
    await runDurableObjectAlarm(shardStub(edge));
    at(40 * DAY);
    expect(await playOn(stream, edge, "v2")).toEqual(ALLOW);
    at(40 * DAY + MIN);
    expect(await stopOn(stream, edge, "v2")).toEqual(ALLOW);
    await runDurableObjectAlarm(shardStub(edge));
    for (let day = 41; day <= 89; day += 8) {
      at(day * DAY);
      await runDurableObjectAlarm(streamStub(stream));
      await usage(stream);
    }
    at(89 * DAY);
    const first = await usage(stream, `?from=${iso(0)}&to=${iso(HOUR)}`);
    expect(first.buckets[0].viewerSeconds).toBe(60);
    const second = await usage(stream, `?from=${iso(40 * DAY)}&to=${iso(40 * DAY + HOUR)}`);
    expect(second.buckets[0].viewerSeconds).toBe(60);
  });

  it("the oldest hour a report still shows keeps the viewer-seconds of an edge that left within it (USAGE_RETENTION_DAYS is counted from that hour's start)", async () => {
    const edge = newEdge();
    const stream = uniqueStream();
    await createStream(stream);
    // The edge's first lease message (when the stream records it as seen), then, 23 h 40 min later, its last:
    // within a day of the first, so the stream's record of when it was seen stays at the first.
    at(30 * MIN);
    expect(await playOn(stream, edge, "v1")).toEqual(ALLOW);
    at(31 * MIN);
    expect(await stopOn(stream, edge, "v1")).toEqual(ALLOW);
    await runDurableObjectAlarm(shardStub(edge));
    at(24 * HOUR + 10 * MIN);
    expect(await playOn(stream, edge, "v2")).toEqual(ALLOW);
    at(24 * HOUR + 20 * MIN);
    expect(await stopOn(stream, edge, "v2")).toEqual(ALLOW);
    await runDurableObjectAlarm(shardStub(edge));
    // 90 days (USAGE_RETENTION_DAYS) after 24:40: hours from 24:00 on are still reported, v2's 10 minutes among them.
    at(90 * DAY + 24 * HOUR + 40 * MIN);
    const body = await usage(stream, `?from=${iso(24 * HOUR)}&to=${iso(25 * HOUR)}`);
    expect(body.buckets).toEqual([{ start: iso(24 * HOUR), viewerSeconds: 600, publishSeconds: 0, peakViewers: 1 }]);
  });
});
