/**
 * Adversarial probes of usage reports that skip viewer shards which left the stream before the range:
 * viewerSeconds stay exact sums of session lengths. On a fake clock.
 */
import { describe, expect, it } from "vitest";
import { runDurableObjectAlarm } from "cloudflare:test";
import { createStream, newEdge, uniqueStream } from "./srs";
import { ALLOW } from "./fake-srs";
import { at, HOUR, iso, MIN, playOn, shardStub, stopOn, usage, useFakeClock } from "./fleet";

useFakeClock();

describe("a shard that left, adversarially", () => {
  for (const maxViewers of [null, 5]) {
    it(`holds: ${maxViewers === null ? "an unlimited" : "a capped"} stream, a shard that leaves and rejoins within the same millisecond, its new viewer silent for hours: a later hour still counts the viewer`, async () => {
      const stream = uniqueStream();
      await createStream(stream, { maxViewers });
      const x = newEdge();
      at(0);
      expect(await playOn(stream, x, "v1")).toEqual(ALLOW);
      at(MIN);
      expect(await stopOn(stream, x, "v1")).toEqual(ALLOW);
      await runDurableObjectAlarm(shardStub(x));
      expect(await playOn(stream, x, "v2")).toEqual(ALLOW);
      at(3 * HOUR);
      await runDurableObjectAlarm(shardStub(x));
      const last = await usage(stream, `?from=${iso(2 * HOUR)}&to=${iso(3 * HOUR)}`);
      expect(last.buckets).toEqual([{ start: iso(2 * HOUR), viewerSeconds: 3600, publishSeconds: 0, peakViewers: 1 }]);
    });
  }
});
