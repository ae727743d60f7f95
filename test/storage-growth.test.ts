/**
 * Storage and memory that must not only grow in a fleet that runs for months: what an object keeps
 * per edge, per stream or per session goes again once nothing can need it, on a fake clock.
 */
import { describe, expect, it, vi } from "vitest";
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { ViewerShard } from "../src/viewers/shard";
import { ALLOW, createStream, hook, newEdge, play, stopPlay, uniqueStream } from "./srs";
import { at, beat, deliverNotices, iso, restarted, shardStub, streamStub, usage, useFakeClock } from "./fleet";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

useFakeClock();

describe("a stream's viewer shards (usage, stream.ended's peak viewers)", () => {
  it("edges replaced long ago are forgotten once their usage is past USAGE_RETENTION_DAYS: a usage report asks only the edges that may hold some", async () => {
    const stream = uniqueStream();
    await createStream(stream);
    // A fleet whose edges are replaced (pods named anew at each rollout): 30 edges served a viewer each, then went away.
    const gone = Array.from({ length: 30 }, () => newEdge());
    for (const [i, edge] of gone.entries()) {
      at(i * 60_000);
      expect(await hook(play("live", stream, { ...edge, client: "v1" }))).toEqual(ALLOW);
      expect(await hook(stopPlay("live", stream, { ...edge, client: "v1" }))).toEqual(ALLOW);
      // Its shard's next alarm leaves the stream: it holds neither viewers nor slots of it.
      await runDurableObjectAlarm(shardStub(edge));
    }
    // 92 days later (USAGE_RETENTION_DAYS is 90, and a day of grace) the stream is watched on one edge of today's fleet.
    at(92 * DAY);
    const edge = newEdge();
    expect(await hook(play("live", stream, { ...edge, client: "v1" }))).toEqual(ALLOW);
    at(92 * DAY + 60_000);
    expect(await hook(stopPlay("live", stream, { ...edge, client: "v1" }))).toEqual(ALLOW);

    const asked = vi.spyOn(ViewerShard.prototype, "viewerUsage");
    const body = await usage(stream, `?from=${iso(92 * DAY)}&to=${iso(92 * DAY + HOUR)}`);
    expect(body.buckets).toEqual([{ start: iso(92 * DAY), viewerSeconds: 60, publishSeconds: 0, peakViewers: 1 }]);
    // One object call per edge ever seen, for every report and every stream.ended, for good: only today's edge now.
    expect(asked).toHaveBeenCalledTimes(1);
    const kept = await runInDurableObject(streamStub(stream), (_o, state) =>
      state.storage.sql.exec<{ server_id: string }>("SELECT server_id FROM usage_shards").toArray().map((r) => r.server_id),
    );
    expect(kept).toEqual([edge.server]);
  });
});

describe("a viewer shard's storage per stream", () => {
  it("an edge that played 40 short-lived streams keeps nothing of them 31 days later: no decision-log ring, no usage minute, no entry in memory", async () => {
    const edge = newEdge();
    const streams = Array.from({ length: 40 }, () => uniqueStream("event"));
    for (const [i, stream] of streams.entries()) {
      await createStream(stream);
      at(i * 60_000);
      expect(await hook(play("live", stream, { ...edge, client: `v${i}` }))).toEqual(ALLOW);
      expect(await hook(stopPlay("live", stream, { ...edge, client: `v${i}` }))).toEqual(ALLOW);
    }
    // A month later the edge plays today's stream; its alarm runs (as it does every minute or so while it has viewers).
    at(31 * DAY);
    const today = uniqueStream("event");
    await createStream(today);
    expect(await hook(play("live", today, { ...edge, client: "now" }))).toEqual(ALLOW);
    await runDurableObjectAlarm(shardStub(edge));
    const kept = await runInDurableObject(shardStub(edge), (shard, state) => {
      const sql = state.storage.sql;
      (shard as unknown as { log: { flush(): void } }).log.flush();
      const keys = (table: string) => sql.exec<{ k: string }>(`SELECT DISTINCT stream_key AS k FROM ${table}`).toArray().map((r) => r.k.split("/").pop());
      return { log: keys("events"), minutes: keys("usage_minutes"), inMemory: (shard as unknown as { log: { next: Map<string, unknown> } }).log.next.size };
    });
    expect(kept).toEqual({ log: [today], minutes: [today], inMemory: 1 });
  });
});

describe("a viewer shard's memory per process", () => {
  it("an edge that restarted 30 times (a crash loop) keeps in memory only what its live processes need", async () => {
    const stream = uniqueStream();
    await createStream(stream);
    let edge = newEdge();
    for (let i = 0; i < 30; i++) {
      at(i * 60_000);
      expect(await beat(edge)).toEqual(ALLOW);
      expect(await hook(play("live", stream, { ...edge, client: "v1" }))).toEqual(ALLOW);
      edge = restarted(edge);
    }
    at(30 * 60_000);
    expect(await beat(edge)).toEqual(ALLOW);
    await deliverNotices(edge);
    // A day later the replaced processes are forgotten (their late hooks can no longer arrive).
    at(DAY + 31 * 60_000);
    expect(await beat(edge)).toEqual(ALLOW);
    await runDurableObjectAlarm(shardStub(edge));
    const held = await runInDurableObject(shardStub(edge), (shard) => {
      const p = (shard as unknown as { processes: { known: Map<string, unknown>; replaced: Set<string>; heard: Map<string, unknown> } }).processes;
      return { known: p.known.size, replaced: p.replaced.size, heard: p.heard.size };
    });
    expect(held).toEqual({ known: 0, replaced: 0, heard: 0 });
  });
});
