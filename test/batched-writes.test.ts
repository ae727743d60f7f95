/**
 * A viewer shard writes one row per hook (the session) with the decision; its decision-log lines
 * and usage minutes wait in memory at most a second and are written in batches
 * (FLUSH_AFTER_MS in src/viewers/shard.ts). What that may lose, and what it never loses.
 */
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import { createStream, newEdge, streamState, uniqueStream, type Edge } from "./srs";
import { at, CAP, events, fullStream, HOUR, hourPeaks, iso, MIN, minutePeaks, playOn, shardStub, stopOn, usage, useFakeClock } from "./fleet";
import { ALLOW } from "./identity";
import { insertRows } from "../src/usage/book";


/** The shard's stored decision-log lines of every stream (not through the admin API, which writes them first). */
const storedLines = (edge: Edge) =>
  runInDurableObject(shardStub(edge), (_shard, state: DurableObjectState) =>
    state.storage.sql.exec("SELECT 1 FROM sqlite_master WHERE name = 'events'").toArray().length === 0
      ? 0
      : (state.storage.sql.exec("SELECT COUNT(*) AS n FROM events").one().n as number),
  );

describe("a viewer shard's batched writes", () => {
  useFakeClock();

  it("a shard that stops within a second of its last changes (a crash, a deploy) loses none of its sessions or viewer-seconds (only the peaks of that second), and its chart shows what it holds from its next hook on", async () => {
    const edge = newEdge();
    const s = uniqueStream();
    await createStream(s, { maxViewers: 3 });
    for (const c of ["v1", "v2", "v3"]) expect(await playOn(s, edge, c)).toEqual(ALLOW);
    at(MIN);
    await stopOn(s, edge, "v3");
    // Stopped before anything was flushed: the memory, with the minutes and log lines waiting in it, is gone.
    await evictDurableObject(shardStub(edge));
    at(5 * MIN);
    // The sessions were written with their decisions: the cap still holds with two live, and a repeat is no second session.
    expect(await playOn(s, edge, "v2")).toEqual(ALLOW);
    expect(await playOn(s, edge, "v4")).toEqual(ALLOW);
    expect((await playOn(s, edge, "v5")).body.code).toBe(CAP);
    expect((await streamState(s)).viewers).toBe(3);
    at(10 * MIN);
    for (const c of ["v1", "v2", "v4"]) await stopOn(s, edge, c);
    at(15 * MIN);
    expect(await hourPeaks(s, 0, HOUR)).toEqual({ 0: 3 });
    expect((await usage(s, `?from=${iso(0)}&to=${iso(HOUR)}`)).buckets[0].viewerSeconds).toBe(600 + 600 + 60 + 300);
    // Minutes 0 and 1 were lost with the memory; from the shard's next hook (minute 5) on, the chart is exact.
    expect((await minutePeaks(s, 0, 15 * MIN)).slice(5)).toEqual([3, 3, 3, 3, 3, 3, 0, 0, 0, 0]);
  });

  it("a shard whose memory went with viewers' stops unwritten: its chart says nothing is held from the stop on (its time was written with its viewer-seconds), not from when the shard starts again", async () => {
    const edge = newEdge();
    const s = uniqueStream();
    await createStream(s);
    expect(await playOn(s, edge, "v1")).toEqual(ALLOW);
    at(MIN);
    await runInDurableObject(shardStub(edge), (shard) => (shard as unknown as { log: { flush(): void } }).log.flush());
    at(2 * MIN);
    await stopOn(s, edge, "v1");
    await evictDurableObject(shardStub(edge));
    at(3 * MIN);
    expect((await playOn(uniqueStream(), edge, "w1")).body.code).toBe(4001); // any hook starts the shard again
    at(5 * MIN);
    // The stop's minute row was lost; its time (2:00) was not: nobody is held after it.
    expect(await minutePeaks(s, 0, 5 * MIN)).toEqual([1, 1, 1, 0, 0]);
  });

  it("lines are written within about a second without anybody reading them", async () => {
    vi.useRealTimers();
    const edge = newEdge();
    const s = uniqueStream();
    await createStream(s);
    expect(await playOn(s, edge, "v1")).toEqual(ALLOW);
    await vi.waitFor(async () => expect(await storedLines(edge)).toBe(1), { timeout: 5_000, interval: 100 });
  });

  it("reads see every line and minute at once, in order", async () => {
    const edge = newEdge();
    const s = await fullStream(edge);
    await stopOn(s, edge, "v1");
    const lines = (await events(s)).filter((e) => e.server === edge.server).map((e) => `${e.action} ${e.client} ${e.decision}`);
    expect(lines).toEqual(["on_stop v1 end", "on_play v2 deny", "on_play v1 allow"]);
    expect(await minutePeaks(s, 0, MIN)).toEqual([1]);
  });
});

describe("insertRows", () => {
  it("never binds more than 100 parameters in one statement (the Durable Object limit), and writes every row once, in order", () => {
    const statements: { query: string; args: unknown[] }[] = [];
    const sql = { exec: (query: string, ...args: unknown[]) => void statements.push({ query, args }) } as unknown as SqlStorage;
    const rows = Array.from({ length: 25 }, (_, i) => [`s${i}`, i, i * 2, i * 3, "a", "b", "c", "d", "e"]);
    insertRows(sql, "INSERT INTO t (a, b, c, d, e, f, g, h, i) VALUES", "", rows);
    expect(statements.map((s) => s.args.length)).toEqual([99, 99, 27]);
    expect(statements.flatMap((s) => s.args)).toEqual(rows.flat());
    expect(statements[2].query).toBe("INSERT INTO t (a, b, c, d, e, f, g, h, i) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?, ?, ?)");
    insertRows(sql, "INSERT INTO t (a) VALUES", "", []);
    expect(statements).toHaveLength(3);
  });
});
