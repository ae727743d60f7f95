/**
 * What the prunes of stored usage, decision-log rings and viewer shards must not lose: figures an
 * operator still sees (usage within USAGE_RETENTION_DAYS, the console's per-minute chart), on a fake clock.
 */
import { describe, expect, it } from "vitest";
import { createStream, newEdge, uniqueStream } from "./srs";
import { at, HOUR, MIN, minutePeaks, playOn, stopOn, useFakeClock } from "./fleet";
import { ALLOW } from "./fake-srs";

useFakeClock();

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
