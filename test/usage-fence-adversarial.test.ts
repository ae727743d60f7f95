/**
 * Adversarial: usage peaks and seconds around fences, heals and restarts (src/usage/book.ts retract/held/reconcile).
 * "must not happen (fixed)": failed on eef1bf4. Cause of the first four: retract() keeps the peak of the hour (and minute)
 * holding `start` as recorded, but that peak may include counts recorded after `start` (viewers of the restarted
 * process admitted before the fence's notice): only hours/minutes strictly after it are taken back. The fifth: e4e3f17
 * fills hours up to and including the hour holding `start`, also when `start` is that hour's first millisecond.
 */
import { describe, expect, it, vi } from "vitest";
import { evictDurableObject, runDurableObjectAlarm } from "cloudflare:test";
import { ViewerShard } from "../src/viewers/shard";
import { ALLOW, createStream, newEdge, uniqueStream } from "./srs";
import { at, beat, beatsEvery, bucket, deliverNotices, flushShard, overloaded, HOUR, iso, MIN, minutePeaks, playOn, restarted, serverStub, shardStub, stopOn, usage, useFakeClock, viewerSecondsIn, watchedBy, peaksOf, secondsOf, restartDone } from "./fleet";

useFakeClock();


describe("fence: new process's viewer before the notice", () => {
  it("must not happen (fixed): same minute as the last heartbeat: the old viewers end at it, the new one comes after: minute and hour peak at most 2", async () => {
    const { edge, s } = await watchedBy(["v1", "v2"]);
    at(20_000);
    await beat(edge);
    at(40_000);
    await beat(edge); // last heartbeat of the old process
    const fresh = restarted(edge);
    at(50_000);
    expect(await playOn(s, fresh, "n1")).toEqual(ALLOW); // the restarted SRS's first viewer, before its first heartbeat
    at(55_000);
    await restartDone(edge, fresh);
    at(2 * MIN);
    const body = await usage(s, `?from=${iso(0)}&to=${iso(HOUR)}`);
    // v1, v2: 0..40 s; n1: 50 s .. now (120 s): never more than 2 at once.
    expect(viewerSecondsIn(body)).toBe(40 + 40 + 70);
    expect(await minutePeaks(s, 0, 2 * MIN)).toEqual([2, 1]);
    expect(bucket(body, 0).peakViewers).toBe(2);
  });

  it("must not happen (fixed): a later minute: the new viewer is counted from its minute, the old ones not after the heartbeat's", async () => {
    const { edge, s } = await watchedBy(["v1", "v2"]);
    at(20_000);
    await beat(edge);
    const fresh = restarted(edge);
    at(90_000);
    expect(await playOn(s, fresh, "n1")).toEqual(ALLOW);
    at(95_000);
    await restartDone(edge, fresh);
    at(3 * MIN);
    expect(await minutePeaks(s, 0, 3 * MIN)).toEqual([2, 1, 1]);
    const body = await usage(s, `?from=${iso(0)}&to=${iso(HOUR)}`);
    expect(viewerSecondsIn(body)).toBe(40 + 90);
    expect(bucket(body, 0).peakViewers).toBe(2);
  });
});

const DAY = 24 * HOUR;

describe("fences around hours, restarts and heals", () => {
  it("holds: a fence straddling an hour: last heartbeat at 0:59:50, the restarted process's viewer at 1:00:05, notice at 1:00:10", async () => {
    const { edge, s } = await watchedBy(["v1", "v2"]);
    await beatsEvery(edge, 10 * MIN, 50 * MIN);
    at(HOUR - 10_000);
    await beat(edge);
    const fresh = restarted(edge);
    at(HOUR + 5_000);
    expect(await playOn(s, fresh, "n1")).toEqual(ALLOW);
    at(HOUR + 10_000);
    await restartDone(edge, fresh);
    at(HOUR + 10 * MIN);
    await beat(fresh);
    const body = await usage(s, `?from=${iso(0)}&to=${iso(2 * HOUR)}`);
    expect(bucket(body, 0)).toMatchObject({ viewerSeconds: 2 * 3590, peakViewers: 2 });
    expect(bucket(body, HOUR)).toMatchObject({ viewerSeconds: 10 * 60 - 5, peakViewers: 1 });
  });

  it("holds: two fences in a row: A's viewers to 1:40, restart B (a viewer from 1:42) to 3:20, restart C", async () => {
    const { edge: a, s } = await watchedBy(["v1", "v2"]);
    await beatsEvery(a, 10 * MIN, HOUR + 40 * MIN);
    const b = restarted(a);
    at(HOUR + 41 * MIN);
    await restartDone(a, b);
    at(HOUR + 42 * MIN);
    expect(await playOn(s, b, "w1")).toEqual(ALLOW);
    await beatsEvery(b, HOUR + 50 * MIN, 3 * HOUR + 20 * MIN);
    const c = restarted(a);
    at(3 * HOUR + 21 * MIN);
    await restartDone(a, c);
    at(5 * HOUR);
    await beat(c);
    const body = await usage(s, `?from=${iso(0)}&to=${iso(5 * HOUR)}`);
    expect(peaksOf(body)).toEqual([2, 2, 1, 1, 0]);
    expect(secondsOf(body)).toEqual([7200, 2 * 40 * 60 + 18 * 60, 3600, 20 * 60, 0]);
    // A session ended at its last heartbeat, 1:40:00.000 exactly, was not held in minute 1:40.
    expect(await minutePeaks(s, HOUR + 39 * MIN, HOUR + 44 * MIN)).toEqual([2, 0, 0, 1, 1]);
    expect(await minutePeaks(s, 3 * HOUR + 18 * MIN, 3 * HOUR + 23 * MIN)).toEqual([1, 1, 0, 0, 0]);
  });

  it("holds: a heal, then a restart: silent from 0:30 (suspended), back at 0:50, heartbeats to 2:10, restart", async () => {
    const { edge, s } = await watchedBy(["v1", "v2"]);
    await beatsEvery(edge, 10 * MIN, 30 * MIN);
    at(31 * MIN);
    await runDurableObjectAlarm(serverStub(edge)); // silent: suspended
    await deliverNotices(edge);
    await beatsEvery(edge, 50 * MIN, 2 * HOUR + 10 * MIN); // heal
    await deliverNotices(edge);
    const fresh = restarted(edge);
    at(2 * HOUR + 11 * MIN);
    await restartDone(edge, fresh);
    at(4 * HOUR);
    await beat(fresh);
    const body = await usage(s, `?from=${iso(0)}&to=${iso(4 * HOUR)}`);
    expect(peaksOf(body)).toEqual([2, 2, 2, 0]);
    expect(secondsOf(body)).toEqual([7200, 7200, 1200, 0]);
  });

  it("holds: a restart hours after the server went silent (no grace yet), with the new process's viewer before the notice in that later hour", async () => {
    const { edge, s } = await watchedBy(["v1", "v2"]);
    at(20 * MIN);
    await beat(edge);
    at(21 * MIN);
    await runDurableObjectAlarm(serverStub(edge));
    await deliverNotices(edge);
    const fresh = restarted(edge);
    at(5 * HOUR + 5 * MIN);
    expect(await playOn(s, fresh, "n1")).toEqual(ALLOW);
    at(5 * HOUR + 10 * MIN);
    await restartDone(edge, fresh);
    at(5 * HOUR + 20 * MIN);
    await beat(fresh);
    const body = await usage(s, `?from=${iso(0)}&to=${iso(6 * HOUR)}`);
    expect(peaksOf(body)).toEqual([2, 0, 0, 0, 0, 1]);
    expect(secondsOf(body)).toEqual([2400, 0, 0, 0, 0, 15 * 60]);
  });

  it("holds: a grace fence a day later, a shard with viewers of two streams (one left before the silence)", async () => {
    const edge = newEdge();
    const [s1, s2] = [uniqueStream(), uniqueStream()];
    await createStream(s1);
    await createStream(s2);
    await beat(edge);
    await playOn(s1, edge, "v1");
    await playOn(s1, edge, "v2");
    await playOn(s1, edge, "v3");
    await playOn(s2, edge, "w1");
    at(10 * MIN);
    await stopOn(s1, edge, "v3");
    await beat(edge);
    at(HOUR + 20 * MIN);
    await beat(edge); // last heartbeat
    at(HOUR + 21 * MIN);
    await runDurableObjectAlarm(serverStub(edge));
    await deliverNotices(edge);
    at(DAY + 2 * HOUR);
    await runDurableObjectAlarm(serverStub(edge));
    await deliverNotices(edge);
    const b1 = await usage(s1, `?from=${iso(0)}&to=${iso(DAY + 3 * HOUR)}`);
    const b2 = await usage(s2, `?from=${iso(0)}&to=${iso(DAY + 3 * HOUR)}`);
    expect(b1.buckets.filter((x: any) => x.peakViewers > 0).map((x: any) => [x.start, x.peakViewers, x.viewerSeconds])).toEqual([
      [iso(0), 3, 2 * 3600 + 600],
      [iso(HOUR), 2, 2 * 20 * 60],
    ]);
    expect(b2.buckets.filter((x: any) => x.peakViewers > 0).map((x: any) => [x.start, x.peakViewers, x.viewerSeconds])).toEqual([
      [iso(0), 1, 3600],
      [iso(HOUR), 1, 20 * 60],
    ]);
    expect(viewerSecondsIn(b1)).toBe(2 * 3600 + 600 + 2400);
    expect(viewerSecondsIn(b2)).toBe(3600 + 1200);
  });
});

describe("more fences", () => {
  it("must not happen (fixed): the e2e run 36 scenario (viewers watching into a new hour, fence) with the restarted SRS's viewers reconnecting before its first heartbeat: hour 1 peak is 2, not 4", async () => {
    const { edge, s } = await watchedBy(["v1", "v2"]);
    await beatsEvery(edge, 10 * MIN, HOUR + 40 * MIN);
    const fresh = restarted(edge);
    at(HOUR + 41 * MIN);
    expect(await playOn(s, fresh, "v1")).toEqual(ALLOW);
    expect(await playOn(s, fresh, "v2")).toEqual(ALLOW);
    at(HOUR + 41 * MIN + 8_000);
    await restartDone(edge, fresh);
    at(HOUR + 50 * MIN);
    await beat(fresh);
    const body = await usage(s, `?from=${iso(0)}&to=${iso(2 * HOUR)}`);
    expect(bucket(body, HOUR)).toMatchObject({ viewerSeconds: 2 * 40 * 60 + 2 * 9 * 60, peakViewers: 2 });
    // The old sessions ended at 1:40:00.000 exactly (not held in minute 1:40); the new ones from 1:41.
    expect(await minutePeaks(s, HOUR + 39 * MIN, HOUR + 43 * MIN)).toEqual([2, 0, 2, 2]);
  });

  it("holds: the shard evicted between its flush and the fence (reconcile on the notice's call)", async () => {
    const { edge, s } = await watchedBy(["v1", "v2"]);
    at(30 * MIN);
    await playOn(s, edge, "v3");
    await beatsEvery(edge, 40 * MIN, 2 * HOUR + 40 * MIN);
    at(2 * HOUR + 40 * MIN + 5_000);
    await stopOn(s, edge, "v3");
    await flushShard(edge);
    await evictDurableObject(shardStub(edge));
    at(2 * HOUR + 41 * MIN);
    await beat(restarted(edge));
    await deliverNotices(edge);
    at(4 * HOUR);
    const body = await usage(s, `?from=${iso(0)}&to=${iso(4 * HOUR)}`);
    expect(peaksOf(body)).toEqual([3, 3, 3, 0]);
    expect(secondsOf(body)).toEqual([7200 + 1800, 3 * 3600, 2 * 40 * 60 + 40 * 60 + 5, 0]);
    // v1 and v2 ended at 2:40:00.000 exactly; v3 alone until 2:40:05.
    expect(await minutePeaks(s, 2 * HOUR + 39 * MIN, 2 * HOUR + 42 * MIN)).toEqual([3, 1, 0]);
  });

  it("holds: retention: viewers since 95 days ago, fenced now: the oldest hour kept has them as its peak, older hours nothing", async () => {
    const edge = newEdge();
    const s = uniqueStream();
    await createStream(s);
    at(-95 * DAY);
    await beat(edge);
    expect(await playOn(s, edge, "v1")).toEqual(ALLOW);
    expect(await playOn(s, edge, "v2")).toEqual(ALLOW);
    // Heartbeats within SESSION_GRACE_S (a day) of each other: never ended by the grace.
    for (let t = -95 * DAY + 20 * HOUR; t < -10 * MIN; t += 20 * HOUR) {
      at(t);
      await beat(edge);
    }
    at(-10 * MIN);
    await beat(edge);
    at(-9 * MIN);
    await beat(restarted(edge));
    await deliverNotices(edge);
    at(MIN);
    const old = await usage(s, `?from=${iso(-90 * DAY - 2 * HOUR)}&to=${iso(-90 * DAY + 2 * HOUR)}`);
    expect(old.buckets.map((x: any) => [x.peakViewers, x.viewerSeconds])).toEqual([[0, 0], [0, 0], [2, 7200], [2, 7200]]);
    const recent = await usage(s, `?from=${iso(-2 * HOUR)}&to=${iso(HOUR)}`);
    expect(recent.buckets.map((x: any) => [x.peakViewers, x.viewerSeconds])).toEqual([[2, 7200], [2, 2 * 50 * 60], [0, 0]]);
    // Ended at their last heartbeat, -10:00.000 exactly: not held in its minute.
    expect(await minutePeaks(s, -12 * MIN, -8 * MIN)).toEqual([2, 2, 0, 0]);
  });

  it("holds: a grace fence the shard could not be told, the server back (same service) with a new viewer, then a restart: both ends told at once", async () => {
    const { edge, s } = await watchedBy(["v1", "v2"]);
    at(20 * MIN);
    await beat(edge);
    at(21 * MIN);
    await runDurableObjectAlarm(serverStub(edge));
    await deliverNotices(edge);
    const state = { down: true };
    const real = ViewerShard.prototype.applyStatus;
    vi.spyOn(ViewerShard.prototype, "applyStatus").mockImplementation(function (this: ViewerShard, news) {
      if (state.down) throw overloaded();
      return real.call(this, news);
    });
    at(DAY + 30 * MIN);
    await runDurableObjectAlarm(serverStub(edge)); // SESSION_GRACE_S: ended (not told to the shard)
    at(DAY + HOUR);
    await beat(edge); // back
    at(DAY + HOUR + 5 * MIN);
    await playOn(s, edge, "n1");
    await beatsEvery(edge, DAY + HOUR + 10 * MIN, DAY + 2 * HOUR + 50 * MIN);
    state.down = false;
    at(DAY + 2 * HOUR + 55 * MIN);
    await beat(restarted(edge));
    await deliverNotices(edge);
    at(DAY + 4 * HOUR);
    const body = await usage(s, `?from=${iso(0)}&to=${iso(DAY + 4 * HOUR)}`);
    const nonzero = body.buckets.filter((x: any) => x.peakViewers > 0 || x.viewerSeconds > 0).map((x: any) => [(Date.parse(x.start) - Date.parse(iso(0))) / HOUR, x.peakViewers, x.viewerSeconds]);
    expect(nonzero).toEqual([[0, 2, 2400], [25, 1, 55 * 60], [26, 1, 50 * 60]]);
  });
});

describe("a fence at an hour's first millisecond", () => {
  it("must not happen (fixed): the last heartbeat exactly at 1:00:00.000: the viewer was not held in hour 1 (0 viewer-seconds there), so hour 1 has no peak, nor minute 60", async () => {
    const { edge, s } = await watchedBy(["v1"]);
    await beatsEvery(edge, 10 * MIN, HOUR);
    at(HOUR + 30_000);
    await beat(restarted(edge));
    await deliverNotices(edge);
    at(2 * HOUR);
    const body = await usage(s, `?from=${iso(0)}&to=${iso(2 * HOUR)}`);
    expect(body.buckets.map((x: any) => [x.peakViewers, x.viewerSeconds])).toEqual([[1, 3600], [0, 0]]);
    expect(await minutePeaks(s, HOUR - MIN, HOUR + MIN)).toEqual([1, 0]);
  });
});

describe("a restarted process that dies before its first heartbeat", () => {
  it("must not happen (fixed): A's viewers to 1:40, B's two viewers at 1:41 (B never heartbeats), C heartbeats at 1:45: never more than 2 held", async () => {
    const { edge: a, s } = await watchedBy(["v1", "v2"]);
    await beatsEvery(a, 10 * MIN, HOUR + 40 * MIN);
    const b = restarted(a);
    at(HOUR + 41 * MIN);
    expect(await playOn(s, b, "n1")).toEqual(ALLOW);
    expect(await playOn(s, b, "n2")).toEqual(ALLOW);
    const c = restarted(a);
    at(HOUR + 45 * MIN);
    await restartDone(a, c);
    at(2 * HOUR + 30 * MIN);
    await beat(c);
    const body = await usage(s, `?from=${iso(0)}&to=${iso(3 * HOUR)}`);
    expect(peaksOf(body)).toEqual([2, 2, 0]);
  });
});
