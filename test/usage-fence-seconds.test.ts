/**
 * Adversarial pass on b2833bf: UsageBook.retract() with per-second memory (src/usage/book.ts), fenceViewers groups
 * (src/viewers/shard.ts). "must not happen (fixed):" failed on b2833bf (fixed by keeping the heartbeat second's
 * changes one by one, and 4 minutes of seconds); "holds:" passed.
 * Causes: (1, 2) secondsAround() counts the whole second holding `start` as "up to start" (upTo), so a viewer admitted
 * after the heartbeat in that same second (the restarted SRS's, or the old process's own, grouped with the rest in
 * fenceViewers) keeps the fenced n in the minute's (and, via the recompute, the hour's) peak. (3) the memory is cut by
 * dropOldSeconds() relative to the latest change, and secondsAround() needs the whole minute holding the heartbeat: a
 * change in that minute before the heartbeat is dropped 3 min after it, so a fence 2-3 min after the heartbeat (the
 * README: "a fence later than that [3 minutes]") already finds no memory and keeps the recorded peak.
 */
import { describe, expect, it } from "vitest";
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { ALLOW, createStream, newEdge, uniqueStream } from "./srs";
import { at, beat, bucket, deliverNotices, flushShard, HOUR, iso, MIN, minutePeaks, playOn, restarted, shardStub, stopOn, usage, useFakeClock, viewerSecondsIn, watchedBy, restartDone } from "./fleet";

useFakeClock();

/** Streams with seconds kept in the edge's shard, and the seconds kept in all. */
type Streams = Map<string, { seconds: Map<number, unknown> }>;
const recentOf = (e: { server: string; service: string }) =>
  runInDurableObject(shardStub(e), (shard) => (shard as unknown as { activity: { usage: { recent: { streams: Streams } } } }).activity.usage.recent.streams);
async function kept(e: { server: string; service: string }): Promise<number[]> {
  const streams = await recentOf(e);
  return [streams.size, [...streams.values()].reduce((n, r) => n + r.seconds.size, 0)];
}

describe("changes in the second holding the last heartbeat", () => {
  it("must not happen (fixed): the restarted SRS's viewer in the same second as the old process's last heartbeat: minute and hour peak 3 for at most 2 held", async () => {
    const { edge, s } = await watchedBy(["v1", "v2"]);
    at(40_200);
    await beat(edge); // last heartbeat of the old process
    const fresh = restarted(edge);
    at(40_700);
    expect(await playOn(s, fresh, "n1")).toEqual(ALLOW);
    at(50_000);
    await restartDone(edge, fresh);
    at(2 * MIN);
    const body = await usage(s, `?from=${iso(0)}&to=${iso(HOUR)}`);
    expect(viewerSecondsIn(body)).toBeCloseTo(2 * 40.2 + 79.3, 3);
    // v1, v2 until 40.200; n1 from 40.700: never more than 2 at once.
    expect.soft(await minutePeaks(s, 0, 2 * MIN)).toEqual([2, 1]);
    expect.soft(bucket(body, 0).peakViewers).toBe(2);
  });

  it("must not happen (fixed): the old process admits a viewer in its last heartbeat's second (grouped with the others): it is held 0 s, yet minute peak 3", async () => {
    const { edge, s } = await watchedBy(["v1", "v2"]);
    at(40_200);
    await beat(edge);
    at(40_600);
    expect(await playOn(s, edge, "v3")).toEqual(ALLOW); // after the heartbeat: ends at its admission
    at(50_000);
    await beat(restarted(edge));
    await deliverNotices(edge);
    at(2 * MIN);
    const body = await usage(s, `?from=${iso(0)}&to=${iso(HOUR)}`);
    expect(viewerSecondsIn(body)).toBeCloseTo(2 * 40.2, 3);
    expect.soft(await minutePeaks(s, 0, 2 * MIN)).toEqual([2, 0]);
    expect.soft(bucket(body, 0).peakViewers).toBe(2);
  });

  it("holds: a change before the heartbeat in its second (v3 stops at 40.1, heartbeat 40.5, new viewer at 45)", async () => {
    const { edge, s } = await watchedBy(["v1", "v2"]);
    at(30_000);
    await playOn(s, edge, "v3");
    at(40_100);
    await stopOn(s, edge, "v3");
    at(40_500);
    await beat(edge);
    const fresh = restarted(edge);
    at(45_000);
    await playOn(s, fresh, "n1");
    await playOn(s, fresh, "n2");
    at(50_000);
    await restartDone(edge, fresh);
    at(2 * MIN);
    expect(await minutePeaks(s, 0, 2 * MIN)).toEqual([3, 2]);
    const body = await usage(s, `?from=${iso(0)}&to=${iso(HOUR)}`);
    expect(bucket(body, 0).peakViewers).toBe(3);
    expect(viewerSecondsIn(body)).toBeCloseTo(2 * 40.5 + 10.1 + 2 * 75, 3);
  });
});

describe("several fenced groups in one minute", () => {
  it("holds: heartbeat at 10 s, the old process admits v3 at 20.5 and v4 at 30.5 (each its own group), the new one n1, n2 at 35/36", async () => {
    const edge = newEdge();
    const s = uniqueStream();
    await createStream(s);
    await beat(edge);
    // client ids chosen so that the fenced rows come back in an order other than their admission (z* first admitted)
    await playOn(s, edge, "z1");
    await playOn(s, edge, "z2");
    at(10_000);
    await beat(edge);
    at(20_500);
    await playOn(s, edge, "b3");
    at(30_500);
    await playOn(s, edge, "a4");
    const fresh = restarted(edge);
    at(35_000);
    await playOn(s, fresh, "n1");
    at(36_000);
    await playOn(s, fresh, "n2");
    at(40_000);
    await restartDone(edge, fresh);
    at(2 * MIN);
    const body = await usage(s, `?from=${iso(0)}&to=${iso(HOUR)}`);
    expect(viewerSecondsIn(body)).toBe(20 + 85 + 84);
    expect(await minutePeaks(s, 0, 2 * MIN)).toEqual([2, 2]);
    expect(bucket(body, 0).peakViewers).toBe(2);
  });

  it("holds: late sessions over an hour boundary (heartbeat 0:59:50, late b1 0:59:55 and a1 1:00:10, within SERVER_TIMEOUT_S; new viewers 1:00:15)", async () => {
    const { edge, s } = await watchedBy(["z1", "z2"]);
    for (let t = 10 * MIN; t < HOUR; t += 10 * MIN) {
      at(t);
      await beat(edge);
    }
    at(HOUR - 10_000);
    await beat(edge);
    at(HOUR - 5_000);
    await playOn(s, edge, "b1");
    at(HOUR + 10_000);
    await playOn(s, edge, "a1");
    const fresh = restarted(edge);
    at(HOUR + 15_000);
    await playOn(s, fresh, "n1");
    await playOn(s, fresh, "n2");
    at(HOUR + 18_000);
    await restartDone(edge, fresh);
    at(HOUR + 2 * MIN);
    const body = await usage(s, `?from=${iso(0)}&to=${iso(2 * HOUR)}`);
    expect(bucket(body, 0)).toMatchObject({ viewerSeconds: 2 * 3590, peakViewers: 2 });
    expect(bucket(body, HOUR)).toMatchObject({ viewerSeconds: 2 * 105, peakViewers: 2 });
    expect(await minutePeaks(s, HOUR - MIN, HOUR + 2 * MIN)).toEqual([2, 2, 2]);
  });
});

describe("the 3-minute memory", () => {
  it("must not happen (fixed): a fence 2 min 20 s after the heartbeat (within the 3 minutes README promises) leaves the heartbeat minute's peak at 4 for 3 held", async () => {
    const { edge, s } = await watchedBy(["v1", "v2", "v3"]);
    at(10 * MIN + 5_000);
    await stopOn(s, edge, "v3"); // 3 -> 2 in minute 10, before the heartbeat
    at(10 * MIN + 50_000);
    await beat(edge); // last heartbeat
    const fresh = restarted(edge);
    at(10 * MIN + 55_000);
    await playOn(s, fresh, "n1");
    await playOn(s, fresh, "n2");
    at(13 * MIN + 6_000);
    await playOn(s, fresh, "n3"); // a change 3 min after minute 10's first: its seconds are dropped
    at(13 * MIN + 10_000);
    await beat(fresh); // the restarted SRS's first heartbeat came late (2 min 20 s after the old one's last)
    await deliverNotices(edge);
    at(15 * MIN);
    // minute 10: 3 until 10:05, then 2 until 10:50, then n1, n2 from 10:55: 3 at most.
    expect.soft(await minutePeaks(s, 9 * MIN, 14 * MIN)).toEqual([3, 3, 2, 2, 3]);
    const body = await usage(s, `?from=${iso(0)}&to=${iso(HOUR)}`);
    expect.soft(bucket(body, 0).peakViewers).toBe(3);
  });

  it("holds: a fence 4 minutes after: the minute keeps its peak as recorded (documented upper bound); later minutes exact", async () => {
    const { edge, s } = await watchedBy(["v1", "v2"]);
    at(10 * MIN + 30_000);
    await beat(edge);
    const fresh = restarted(edge);
    at(10 * MIN + 40_000);
    await playOn(s, fresh, "n1");
    at(14 * MIN + 30_000);
    await restartDone(edge, fresh);
    at(15 * MIN);
    const m = await minutePeaks(s, 9 * MIN, 15 * MIN);
    expect(m.slice(1)).toEqual([expect.any(Number), 1, 1, 1, 1]);
    expect(m[0]).toBe(2);
    expect(m[1]).toBeGreaterThanOrEqual(2);
    const body = await usage(s, `?from=${iso(0)}&to=${iso(HOUR)}`);
    expect(viewerSecondsIn(body)).toBe(2 * 630 + 260);
  });
});

describe("busy minute", () => {
  it("holds: 300 plays and stops of the restarted SRS in the heartbeat's minute (at most 2 of its own at once), fence: minute peak 2", async () => {
    const { edge, s } = await watchedBy(["v1", "v2"]);
    at(10 * MIN + 5_000);
    await beat(edge);
    const fresh = restarted(edge);
    let t = 10 * MIN + 6_000;
    for (let i = 0; i < 150; i++) {
      at(t);
      await playOn(s, fresh, `c${i}`);
      t += 150;
      at(t);
      if (i > 0) await stopOn(s, fresh, `c${i - 1}`);
      t += 150;
    }
    at(10 * MIN + 55_000);
    await restartDone(edge, fresh);
    at(12 * MIN);
    expect(await minutePeaks(s, 9 * MIN, 12 * MIN)).toEqual([2, 2, 1]);
    const body = await usage(s, `?from=${iso(0)}&to=${iso(HOUR)}`);
    expect(bucket(body, 0).peakViewers).toBe(2);
  });
});

describe("evictions, two streams, memory", () => {
  it("holds: shard evicted (flushed) long before the heartbeat minute, restarted by a play at 1:30; v3 stops at 1:40:10, heartbeat 1:40:30, new viewers 1:40:40", async () => {
    const { edge, s } = await watchedBy(["v1", "v2"]);
    await flushShard(edge);
    await evictDurableObject(shardStub(edge));
    for (let t = 10 * MIN; t <= HOUR + 30 * MIN; t += 10 * MIN) {
      at(t);
      await beat(edge);
    }
    await playOn(s, edge, "v3"); // restarts the shard at 1:30
    at(HOUR + 40 * MIN);
    await beat(edge);
    at(HOUR + 40 * MIN + 10_000);
    await stopOn(s, edge, "v3");
    at(HOUR + 40 * MIN + 30_000);
    await beat(edge);
    const fresh = restarted(edge);
    at(HOUR + 40 * MIN + 40_000);
    await playOn(s, fresh, "n1");
    await playOn(s, fresh, "n2");
    at(HOUR + 40 * MIN + 50_000);
    await restartDone(edge, fresh);
    // evicted between the fence and the next change (no flush of what the fence's held() wrote)
    await evictDurableObject(shardStub(edge));
    at(HOUR + 42 * MIN);
    await stopOn(s, fresh, "n2");
    at(HOUR + 45 * MIN);
    expect(await minutePeaks(s, HOUR + 39 * MIN, HOUR + 44 * MIN)).toEqual([3, 3, 2, 2, 1]);
    const body = await usage(s, `?from=${iso(0)}&to=${iso(2 * HOUR)}`);
    expect(bucket(body, HOUR)).toMatchObject({ peakViewers: 3, viewerSeconds: 2 * 2430 + 610 + 4 * 60 + 20 + 80 });
    expect(bucket(body, 0)).toMatchObject({ peakViewers: 2, viewerSeconds: 7200 });
  });

  it("holds: two streams on one shard fenced together; the other's changes sweep the first's seconds only when old", async () => {
    const edge = newEdge();
    const [s1, s2] = [uniqueStream(), uniqueStream()];
    await createStream(s1);
    await createStream(s2);
    await beat(edge);
    await playOn(s1, edge, "a1");
    await playOn(s1, edge, "a2");
    await playOn(s2, edge, "b1");
    at(5 * MIN + 10_000);
    await stopOn(s1, edge, "a2"); // s1: 2 -> 1 in minute 5
    at(5 * MIN + 20_000);
    await beat(edge);
    const fresh = restarted(edge);
    at(5 * MIN + 30_000);
    await playOn(s1, fresh, "n1");
    await playOn(s1, fresh, "n2");
    await playOn(s2, fresh, "m1");
    at(5 * MIN + 40_000);
    await playOn(s2, fresh, "m2"); // s2 changes, a sweep is due
    at(5 * MIN + 50_000);
    await restartDone(edge, fresh);
    at(7 * MIN);
    expect(await minutePeaks(s1, 4 * MIN, 7 * MIN)).toEqual([2, 2, 2]);
    expect(await minutePeaks(s2, 4 * MIN, 7 * MIN)).toEqual([1, 2, 2]);
  });

  it("holds: memory: 200 streams each changed once, then 4.5 minutes later one change: the per-second record keeps only live seconds", async () => {
    const edge = newEdge();
    const streams: string[] = [];
    await beat(edge);
    for (let i = 0; i < 200; i++) {
      const s = uniqueStream();
      streams.push(s);
      await createStream(s);
      at(i * 100);
      await playOn(s, edge, `c${i}`);
    }
    const b1 = await kept(edge);
    expect(b1[0]).toBe(200);
    at(4 * MIN + 30_000);
    await beat(edge);
    await stopOn(streams[0], edge, "c0");
    const b2 = await kept(edge);
    expect(b2).toEqual([1, 1]);
    // a busy stream: one change every 0.5 s for 10 minutes keeps at most 241 seconds (SECONDS_KEPT_MS, 4 minutes)
    const s = streams[1];
    for (let i = 0; i < 1200; i++) {
      at(5 * MIN + i * 500);
      if (i % 10 === 0) await beat(edge);
      await (i % 2 === 0 ? playOn(s, edge, "x") : stopOn(s, edge, "x"));
    }
    const b3 = Math.max(...[...(await recentOf(edge)).values()].map((r) => r.seconds.size));
    expect(b3).toBeLessThanOrEqual(241);
  }, 120_000);
});

describe("grace, heal, restarts", () => {
  it("holds: grace fence told a day later, the same process back with a new viewer, then a restart", async () => {
    const { runDurableObjectAlarm } = await import("cloudflare:test");
    const { serverStub } = await import("./fleet");
    const DAY = 24 * HOUR;
    const { edge, s } = await watchedBy(["v1", "v2"]);
    at(20 * MIN);
    await beat(edge);
    at(21 * MIN);
    await runDurableObjectAlarm(serverStub(edge));
    await deliverNotices(edge);
    at(DAY + 30 * MIN);
    await runDurableObjectAlarm(serverStub(edge)); // SESSION_GRACE_S
    await deliverNotices(edge);
    at(DAY + HOUR);
    await beat(edge); // back
    at(DAY + HOUR + 5 * MIN);
    expect(await playOn(s, edge, "n1")).toEqual(ALLOW);
    for (let t = DAY + HOUR + 10 * MIN; t <= DAY + 2 * HOUR + 50 * MIN; t += 10 * MIN) {
      at(t);
      await beat(edge);
    }
    const fresh = restarted(edge);
    at(DAY + 2 * HOUR + 50 * MIN + 20_000);
    await playOn(s, fresh, "m1");
    at(DAY + 2 * HOUR + 50 * MIN + 30_000);
    await restartDone(edge, fresh);
    at(DAY + 4 * HOUR);
    await beat(fresh);
    const body = await usage(s, `?from=${iso(0)}&to=${iso(DAY + 4 * HOUR)}`);
    const nonzero = body.buckets.filter((x: any) => x.peakViewers > 0 || x.viewerSeconds > 0).map((x: any) => [(Date.parse(x.start) - Date.parse(iso(0))) / HOUR, x.peakViewers, x.viewerSeconds]);
    expect(nonzero).toEqual([[0, 2, 2400], [25, 1, 55 * 60], [26, 1, 50 * 60 + 9 * 60 + 40], [27, 1, 3600]]);
    expect(await minutePeaks(s, DAY + 2 * HOUR + 49 * MIN, DAY + 2 * HOUR + 52 * MIN)).toEqual([1, 1, 1]);
  });

  it("holds: two restarts 90 s apart: B's viewers from A's heartbeat minute, C fences B within the memory", async () => {
    const { edge: a, s } = await watchedBy(["v1", "v2"]);
    at(10 * MIN + 20_000);
    await beat(a);
    const b = restarted(a);
    at(10 * MIN + 30_000);
    await playOn(s, b, "n1");
    await playOn(s, b, "n2");
    at(10 * MIN + 35_000);
    await restartDone(a, b);
    at(10 * MIN + 45_000);
    await beat(b); // B's last
    const c = restarted(a);
    at(10 * MIN + 50_000);
    await playOn(s, c, "m1");
    await playOn(s, c, "m2");
    await playOn(s, c, "m3");
    at(11 * MIN + 50_000);
    await restartDone(a, c);
    at(13 * MIN);
    expect(await minutePeaks(s, 9 * MIN, 13 * MIN)).toEqual([2, 3, 3, 3]);
    const body = await usage(s, `?from=${iso(0)}&to=${iso(HOUR)}`);
    expect(bucket(body, 0)).toMatchObject({ peakViewers: 3, viewerSeconds: 2 * 620 + 2 * 15 + 3 * 130 });
  });
});
