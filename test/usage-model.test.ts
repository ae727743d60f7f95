/**
 * Property: whatever the interleaving of on_play, on_stop, on_close, on_publish and on_unpublish
 * across servers, and however the time between them falls across hours, the usage API's
 * viewer-seconds and publish-seconds equal the sums of the modelled sessions' lengths (sessions
 * still open counted up to now), and every hour's bucket holds exactly its share.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { admin, close, createStream, hook, newEdge, play, publish, stopPlay, uniqueStream, unpublish, type Edge } from "./srs";
import { at, T0, useFakeClock } from "./fleet";

const HOUR = 3_600_000;
const SERVERS = 2;
const CLIENTS = 3;

type Op =
  | { t: "play" | "stop" | "close" | "publish" | "unpublish"; server: number; client: number }
  | { t: "wait"; ms: number };

const server = fc.integer({ min: 0, max: SERVERS - 1 });
const client = fc.integer({ min: 0, max: CLIENTS - 1 });
const op: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ t: fc.constant("play" as const), server, client }), weight: 4 },
  { arbitrary: fc.record({ t: fc.constant("stop" as const), server, client }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant("close" as const), server, client }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant("publish" as const), server, client }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant("unpublish" as const), server, client }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant("wait" as const), ms: fc.oneof(fc.integer({ min: 1, max: 90_000 }), fc.integer({ min: HOUR / 2, max: 3 * HOUR })) }), weight: 3 },
);

useFakeClock();

/** [from, to) split by hour: hour start → milliseconds. */
function addByHour(into: Map<number, number>, from: number, to: number) {
  for (let h = Math.floor(from / HOUR) * HOUR; h < to; h += HOUR) {
    const ms = Math.min(to, h + HOUR) - Math.max(from, h);
    if (ms > 0) into.set(h, (into.get(h) ?? 0) + ms);
  }
}

async function run(ops: Op[]) {
  at(0); // each run starts at T0 (useFakeClock sets it once per test, not per run)
  const stream = uniqueStream("usage");
  const key = await createStream(stream);
  const edges: Edge[] = Array.from({ length: SERVERS }, () => newEdge());
  const who = (s: number, c: number) => ({ ...edges[s], client: `c${s}${c}` });
  let now = 0;
  const viewers = new Map<string, number>();
  let publisher: { id: string; since: number } | null = null;
  const viewerMs = new Map<number, number>();
  const publishMs = new Map<number, number>();
  for (const o of ops) {
    if (o.t === "wait") {
      now += o.ms;
      at(now);
      continue;
    }
    const id = `${o.server}/${o.client}`;
    const t = T0 + now;
    if (o.t === "play") {
      expect((await hook(play("live", stream, who(o.server, o.client)))).status).toBe(200);
      if (!viewers.has(id)) viewers.set(id, t);
    } else if (o.t === "stop" || o.t === "close") {
      await hook(o.t === "stop" ? stopPlay("live", stream, who(o.server, o.client)) : close(who(o.server, o.client)));
      if (viewers.has(id)) addByHour(viewerMs, viewers.get(id)!, t);
      viewers.delete(id);
      if (o.t === "close" && publisher?.id === id) {
        addByHour(publishMs, publisher.since, t);
        publisher = null;
      }
    } else if (o.t === "publish") {
      const res = await hook(publish("live", stream, key, who(o.server, o.client)));
      // One publisher per stream: another one is refused.
      expect(res.status).toBe(publisher === null || publisher.id === id ? 200 : 403);
      if (publisher === null) publisher = { id, since: t };
    } else {
      await hook(unpublish("live", stream, who(o.server, o.client)));
      if (publisher?.id === id) {
        addByHour(publishMs, publisher.since, t);
        publisher = null;
      }
    }
  }
  // Sessions still open count up to now.
  const end = T0 + now;
  for (const since of viewers.values()) addByHour(viewerMs, since, end);
  if (publisher) addByHour(publishMs, publisher.since, end);
  const res = await admin("GET", `/streams/live/${stream}/usage?from=${new Date(T0).toISOString()}&to=${new Date(end + 1).toISOString()}`);
  expect(res.status).toBe(200);
  for (const b of res.body.buckets) {
    const hour = Date.parse(b.start);
    expect(b.viewerSeconds, `viewer-seconds of ${b.start}`).toBeCloseTo((viewerMs.get(hour) ?? 0) / 1000, 3);
    expect(b.publishSeconds, `publish-seconds of ${b.start}`).toBeCloseTo((publishMs.get(hour) ?? 0) / 1000, 3);
  }
  const sum = (m: Map<number, number>) => [...m.values()].reduce((a, b) => a + b, 0) / 1000;
  const total = (field: string) => res.body.buckets.reduce((a: number, b: any) => a + b[field], 0);
  expect(total("viewerSeconds")).toBeCloseTo(sum(viewerMs), 3);
  expect(total("publishSeconds")).toBeCloseTo(sum(publishMs), 3);
}

describe("usage adds up", () => {
  it("accounted viewer-seconds and publish-seconds equal the modelled sessions' lengths, hour by hour", async () => {
    await fc.assert(fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 30 }), run), { numRuns: 50 });
  });
});
