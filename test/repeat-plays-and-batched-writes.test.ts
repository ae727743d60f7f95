/**
 * Adversarial tests of d66c053 and c863165 (src/viewers/shard.ts, src/usage/book.ts), in the "gate" project:
 * - decide() no longer answers a repeat of a live session "already live" before anything else; the
 *   INSERT OR IGNORE, logged() and (since the fix) repeat() before any call to another object answer it instead;
 * - decision-log lines, usage minutes and hour peaks wait in memory up to a second (or 500 lines)
 *   and are written in multi-row statements by flush(); a restarted shard reconciles its chart.
 * "must not happen (fixed): …" failed on c863165 and passes since the fix; "holds: …" passed there too.
 */
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import fc from "fast-check";
import { describe, expect, it, vi } from "vitest";
import { StreamObject } from "../src/stream/object";
import { ViewerShard } from "../src/viewers/shard";
import { ViewerSeats } from "../src/viewers/seats";
import { ShardActivity } from "../src/usage/shard-activity";
import { admin, close, createStream, hook, newEdge, play, stopPlay, streamState, uniqueStream, type Edge } from "./srs";
import { at, beat, CAP, deliverNotices, events, flushShard, fullStream, HOUR, hourPeaks, iso, MIN, minutePeaks, overloaded, playOn, restarted, retryable, shardStub, stopOn, T0, usage, useFakeClock } from "./fleet";
import { ALLOW, keyOf, LIMIT, limited, livePerSub, playWith, REVOKED, seatsOf, tokenOf } from "./identity";


/** The edge's shard's next SQL statement that starts with `prefix` throws `message` (once). */
const failOnce = (edge: Edge, prefix: string, message: string) =>
  runInDurableObject(shardStub(edge), (shard) => {
    const sql = (shard as any).sql;
    const exec = sql.exec.bind(sql);
    let failed = false;
    sql.exec = (q: string, ...args: unknown[]) => {
      if (!failed && q.startsWith(prefix)) {
        failed = true;
        throw new Error(message);
      }
      return exec(q, ...args);
    };
  });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** This shard's on_play lines of the stream, oldest first: "client decision: reason". */
const linesOf = async (s: string, edge: Edge) =>
  (await events(s))
    .filter((e) => e.server === edge.server && e.action === "on_play")
    .reverse()
    .map((e) => `${e.client} ${e.decision}: ${e.reason}`);

/**
 * The next on_play's first attempt runs in its shard, then its answer is lost on the way back (a
 * retryable platform error): the Worker's retry is a repeat of a session that attempt admitted.
 * `between` runs after the first attempt, before the retry, inside the shard's call.
 */
function loseFirstAnswer(between: (shard: ViewerShard) => unknown = () => {}) {
  const real = ViewerShard.prototype.play;
  return vi.spyOn(ViewerShard.prototype, "play").mockImplementationOnce(async function (this: ViewerShard, ...args: Parameters<ViewerShard["play"]>) {
    await real.apply(this, args);
    await between(this);
    throw retryable();
  });
}

useFakeClock();

describe("a repeat of a live session (a retried on_play whose first answer was lost)", () => {
  it("must not happen (fixed): at the cap, the retry needs the stream object (a lease request): with the stream overloaded for that moment the hook fails 503 (it was 200 \"already live\"), and the admitted session stays as a ghost holding the cap", async () => {
    const edge = newEdge();
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    let down = false;
    const realLease = StreamObject.prototype.viewerLease;
    vi.spyOn(StreamObject.prototype, "viewerLease").mockImplementation(async function (this: StreamObject, ...args: Parameters<StreamObject["viewerLease"]>) {
      if (down) throw overloaded();
      return realLease.apply(this, args);
    });
    const spy = loseFirstAnswer(() => {
      down = true; // the stream object is overloaded from the lost answer to the end of the retry
    });
    const answer = await playOn(s, edge, "v1");
    down = false;
    expect(spy).toHaveBeenCalledTimes(2);
    const viewers = (await streamState(s)).viewers;
    const next = (await playOn(s, edge, "v2")).body.code;
    console.info(JSON.stringify({ probe: "repeat at cap, stream overloaded", answer, viewers, next }));
    // SRS refused v1 on a 503 and sends no on_stop for it: v1 is a ghost, and v2 is refused for the cap it holds.
    expect({ answer, viewers, next }).toEqual({ answer: ALLOW, viewers: 1, next: CAP });
  });

  it("must not happen (fixed): on an unlimited stream whose cached policy expires between the attempts (POLICY_TTL_MS), the retry reads the policy from the stream: with the stream overloaded for that moment the hook fails 503 (it was 200) and the session stays", async () => {
    const edge = newEdge();
    const s = uniqueStream();
    await createStream(s);
    at(0);
    expect(await playOn(s, edge, "v0")).toEqual(ALLOW); // the shard caches the policy at 0
    let down = false;
    const realLease = StreamObject.prototype.viewerLease;
    vi.spyOn(StreamObject.prototype, "viewerLease").mockImplementation(async function (this: StreamObject, ...args: Parameters<StreamObject["viewerLease"]>) {
      if (down) throw overloaded();
      return realLease.apply(this, args);
    });
    at(10 * MIN - 1); // v1's first attempt still uses the cached policy
    loseFirstAnswer(() => {
      at(10 * MIN + 1);
      down = true;
    });
    const answer = await playOn(s, edge, "v1");
    down = false;
    const viewers = (await streamState(s)).viewers;
    console.info(JSON.stringify({ probe: "repeat after policy TTL, stream overloaded", answer, viewers }));
    expect({ answer, viewers }).toEqual({ answer: ALLOW, viewers: 2 });
  });

  it("must not happen (fixed): at the cap, the retry costs a lease request to the stream and a round of recalls (liveness and ghost checks) on every other shard of the stream; before, none", async () => {
    const [edge, other] = [newEdge(), newEdge()];
    const s = uniqueStream();
    await createStream(s, { maxViewers: 2 });
    expect(await playOn(s, other, "w1")).toEqual(ALLOW);
    const lease = vi.spyOn(StreamObject.prototype, "viewerLease");
    const recall = vi.spyOn(ViewerShard.prototype, "recall");
    let counted = { lease: 0, recall: 0 };
    // v1 takes the slot its shard holds; its retry finds none free here.
    loseFirstAnswer(() => {
      counted = { lease: lease.mock.calls.length, recall: recall.mock.calls.length };
    });
    expect(await playOn(s, edge, "v1")).toEqual(ALLOW);
    const byRetry = { lease: lease.mock.calls.length - counted.lease, recall: recall.mock.calls.length - counted.recall };
    console.info(JSON.stringify({ probe: "calls made by the retry of an admitted on_play at the cap", byRetry }));
    expect(byRetry).toEqual({ lease: 0, recall: 0 });
  });

  it("must not happen (fixed): on a stream limiting sessions per viewer, the retry takes its seat again: with the seat object overloaded for that moment the hook fails 503 (it was 200), and the viewer is locked out by its own ghost", async () => {
    const [a, b] = [newEdge(), newEdge()];
    const s = await limited();
    const token = await tokenOf(s, "alice");
    let down = false;
    const realTake = ViewerSeats.prototype.take;
    vi.spyOn(ViewerSeats.prototype, "take").mockImplementation(async function (this: ViewerSeats, ...args: Parameters<ViewerSeats["take"]>) {
      if (down) throw overloaded();
      return realTake.apply(this, args);
    });
    loseFirstAnswer(() => {
      down = true;
    });
    const answer = await hook(playWith(s, a, "tv000001", token));
    down = false;
    // SRS refused tv000001; the player comes back as a new client.
    const again = await hook(playWith(s, b, "tv000002", token));
    console.info(JSON.stringify({ probe: "repeat with seat object overloaded", answer, again, seats: await seatsOf(s, "alice") }));
    expect(answer).toEqual(ALLOW);
  });

  it("holds: at the cap, the retry is 200 \"already live\": no cap refusal line, no viewer_limit_reached report, one session", async () => {
    const edge = newEdge();
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    const capRefused = vi.spyOn(ShardActivity.prototype, "capRefused");
    loseFirstAnswer();
    expect(await playOn(s, edge, "v1")).toEqual(ALLOW);
    expect(capRefused).not.toHaveBeenCalled();
    expect(await linesOf(s, edge)).toEqual(["v1 allow: admitted", "v1 allow: already live"]);
    expect((await streamState(s)).viewers).toBe(1);
    // A fresh viewer is still refused for the cap, once reported.
    expect((await playOn(s, edge, "v2")).body.code).toBe(CAP);
    expect(capRefused).toHaveBeenCalledTimes(1);
    expect((await linesOf(s, edge)).at(-1)).toBe("v2 deny: viewer cap reached: 1 of 1 viewers");
  });

  it("holds: the stream turned to playAuth \"token\" between the attempts: the retry without a token is 200 \"already live\" (a fresh one is refused)", async () => {
    const edge = newEdge();
    const s = uniqueStream();
    await createStream(s);
    loseFirstAnswer(async () => {
      expect((await admin("PUT", `/streams/live/${s}`, { playAuth: "token" })).status).toBe(200);
    });
    expect(await playOn(s, edge, "v1")).toEqual(ALLOW);
    expect((await playOn(s, edge, "v2")).status).toBe(403);
    expect((await streamState(s)).viewers).toBe(1);
    expect(await linesOf(s, edge)).toEqual(["v1 allow: admitted", "v1 allow: already live", "v2 deny: missing token"]);
  });

  it("holds: the stream deleted between the attempts: the retry is 200 as before (a fresh one 4001)", async () => {
    const edge = newEdge();
    const s = uniqueStream();
    await createStream(s);
    loseFirstAnswer(async () => {
      expect((await admin("DELETE", `/streams/live/${s}`)).status).toBeLessThan(300);
    });
    expect(await playOn(s, edge, "v1")).toEqual(ALLOW);
    expect((await playOn(s, edge, "v2")).body.code).toBe(4001);
  });

  it("must not happen (fixed): the \"already live\" line of a retry on a deleted stream (unlessLive) loses the hook's ip and the viewer id, which every other decision line carries (before, it had both)", async () => {
    const edge = newEdge();
    const s = await limited({ maxSessionsPerViewer: null });
    const token = await tokenOf(s, "alice");
    loseFirstAnswer(async () => {
      expect((await admin("DELETE", `/streams/live/${s}`)).status).toBeLessThan(300);
    });
    expect(await hook(playWith(s, edge, "tv000001", token))).toEqual(ALLOW);
    await createStream(s); // the name again: its log shows the shard's lines
    const lines = (await events(s)).filter((e) => e.server === edge.server).reverse().map((e) => `${e.ip} ${e.decision}: ${e.reason}`);
    expect(lines).toEqual(["127.0.0.1 allow: admitted (viewer alice)", "127.0.0.1 allow: already live (viewer alice)"]);
  });

  it("holds: the viewer's tokens revoked between the attempts: the session ended, the retry refused 4019", async () => {
    const edge = newEdge();
    const s = await limited({ maxSessionsPerViewer: null });
    const token = await tokenOf(s, "alice", Math.floor(Date.now() / 1000) - 10);
    loseFirstAnswer(async () => {
      expect((await admin("POST", `/streams/live/${s}/revocations`, { sub: "alice" })).status).toBe(201);
    });
    expect(await hook(playWith(s, edge, "tv000001", token))).toEqual(REVOKED);
    expect((await streamState(s)).viewers).toBe(0);
  });

  it("holds: maxSessionsPerViewer 1, deny: the retry of a seated session is 200 and keeps exactly its seat; a second screen is refused", async () => {
    const [a, b] = [newEdge(), newEdge()];
    const s = await limited();
    const token = await tokenOf(s, "alice");
    loseFirstAnswer();
    expect(await hook(playWith(s, a, "tv000001", token))).toEqual(ALLOW);
    expect(await seatsOf(s, "alice")).toEqual(["tv000001"]);
    expect(await hook(playWith(s, b, "phone001", token))).toEqual(LIMIT);
    expect(await livePerSub(s)).toEqual({ alice: 1 });
  });

  it("holds: maxSessionsPerViewer 1, replace: a newer screen replaces the session between its attempts: the retry is refused 4016 and the newer one stays", async () => {
    const [a, b] = [newEdge(), newEdge()];
    const s = await limited({ onExtraViewerSession: "replace" });
    const token = await tokenOf(s, "alice");
    loseFirstAnswer(async () => {
      expect(await hook(playWith(s, b, "phone001", token))).toEqual(ALLOW);
    });
    expect((await hook(playWith(s, a, "tv000001", token))).body.code).toBe(4016);
    expect(await seatsOf(s, "alice")).toEqual(["phone001"]);
    expect(await livePerSub(s)).toEqual({ alice: 1 });
  });

  it("holds: maxSessionsPerViewer 1, replace: the retry of the seated session is 200 and ends nobody", async () => {
    const [a] = [newEdge()];
    const s = await limited({ onExtraViewerSession: "replace" });
    const token = await tokenOf(s, "alice");
    loseFirstAnswer();
    expect(await hook(playWith(s, a, "tv000001", token))).toEqual(ALLOW);
    expect(await seatsOf(s, "alice")).toEqual(["tv000001"]);
    expect((await events(s)).filter((e) => e.action === "seat")).toEqual([]);
  });

  it("holds: the server restarted between the attempts (its old process replaced): the session is fenced and the retry refused 4006", async () => {
    const edge = newEdge();
    expect(await beat(edge)).toEqual(ALLOW);
    const s = uniqueStream();
    await createStream(s);
    loseFirstAnswer(async () => {
      expect(await beat(restarted(edge))).toEqual(ALLOW);
      await deliverNotices(edge);
    });
    const r = await playOn(s, edge, "v1");
    expect(r.body.code).toBe(4006);
    expect((await streamState(s)).viewers).toBe(0);
  });

  it("holds: the server fell silent between the attempts (its viewers suspended): the retry is 200 and brings it back", async () => {
    const edge = newEdge();
    const s = uniqueStream();
    await createStream(s, { maxViewers: 5 });
    loseFirstAnswer((shard) =>
      shard.applyStatus({ serverId: edge.server, serviceId: edge.service, status: "suspended", seq: 1_000_000, cutoff: 0, replaced: false, why: "probe: silent" }),
    );
    expect(await playOn(s, edge, "v1")).toEqual(ALLOW);
    expect((await streamState(s)).viewers).toBe(1);
  });

  it("holds: a hook whose every attempt lost its answer is undone (voided): 503, nothing left live, the next viewer admitted", async () => {
    const edge = newEdge();
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    const real = ViewerShard.prototype.play;
    vi.spyOn(ViewerShard.prototype, "play").mockImplementation(async function (this: ViewerShard, ...args: Parameters<ViewerShard["play"]>) {
      await real.apply(this, args);
      throw retryable();
    });
    expect((await playOn(s, edge, "v1")).status).toBe(503);
    vi.restoreAllMocks();
    expect((await streamState(s)).viewers).toBe(0);
    expect(await playOn(s, edge, "v2")).toEqual(ALLOW);
  });

  it("holds: fresh refusals are as before: cap 4005 logged, unknown stream 4001 leaves nothing, missing token refused by the stream and logged once", async () => {
    const edge = newEdge();
    const s = await fullStream(edge);
    expect((await playOn(uniqueStream("nope"), edge, "v3")).body.code).toBe(4001);
    const t = uniqueStream();
    await createStream(t, { playAuth: "token" });
    const r = await playOn(t, edge, "v4");
    expect(r.status).toBe(403);
    expect(await linesOf(s, edge)).toEqual(["v1 allow: admitted", "v2 deny: viewer cap reached: 1 of 1 viewers"]);
    expect((await events(t)).filter((e) => e.client === "v4").length).toBe(1);
  });
});

describe("batched decision-log lines", () => {
  it("holds: 600 lines of one stream in one batch (a flush at 500 in the middle): the newest 100 are kept, in order", async () => {
    const edge = newEdge();
    const s = uniqueStream();
    await createStream(s);
    expect(await playOn(s, edge, "v0")).toEqual(ALLOW); // the stream knows this shard (its events are asked for)
    await runInDurableObject(shardStub(edge), (shard) => {
      for (let i = 0; i < 600; i++) (shard as any).log.record(keyOf(s), "on_play", `c${i}`, "", "deny", `line ${i}`);
    });
    const mine = (await events(s)).filter((e) => e.server === edge.server).map((e) => e.client);
    expect(mine).toEqual(Array.from({ length: 100 }, (_, i) => `c${599 - i}`));
  });

  it("holds: the ring carries over a restart after a flush, and lines lost with a restart within the second leave no hole in the order", async () => {
    const edge = newEdge();
    const s = uniqueStream();
    await createStream(s);
    for (let i = 0; i < 60; i++) expect(await playOn(s, edge, `a${i}`)).toEqual(ALLOW);
    await flushShard(edge);
    await evictDurableObject(shardStub(edge));
    for (let i = 0; i < 30; i++) expect(await playOn(s, edge, `b${i}`)).toEqual(ALLOW);
    await evictDurableObject(shardStub(edge)); // these 30 lines may be lost, never the sessions
    for (let i = 0; i < 70; i++) expect(await playOn(s, edge, `c${i}`)).toEqual(ALLOW);
    const mine = (await events(s)).filter((e) => e.server === edge.server).map((e) => e.client);
    expect(mine.length).toBe(100);
    expect(mine.slice(0, 70)).toEqual(Array.from({ length: 70 }, (_, i) => `c${69 - i}`));
    const rest = mine.slice(70);
    // Whatever of b survived, then a, newest first.
    const survivingB = Array.from({ length: 30 }, (_, i) => `b${29 - i}`).filter((c) => rest.includes(c));
    expect(rest).toEqual([...survivingB, ...Array.from({ length: 60 }, (_, i) => `a${59 - i}`)].slice(0, 30));
    expect((await streamState(s)).viewers).toBe(160);
  });

  it("holds: a flush whose events insert throws breaks no hook and loses no later line, and the minutes of that batch are written with the next", async () => {
    const edge = newEdge();
    const s = uniqueStream();
    await createStream(s);
    expect(await playOn(s, edge, "v1")).toEqual(ALLOW);
    await flushShard(edge);
    await failOnce(edge, "INSERT OR REPLACE INTO events", "SQLITE_FULL: probe");
    at(MIN);
    expect(await playOn(s, edge, "v2")).toEqual(ALLOW);
    await flushShard(edge); // throws inside, caught
    at(2 * MIN);
    expect(await playOn(s, edge, "v3")).toEqual(ALLOW);
    expect(await linesOf(s, edge)).toEqual(["v1 allow: admitted", "v3 allow: admitted"]);
    expect(await minutePeaks(s, 0, 3 * MIN)).toEqual([1, 2, 3]);
  });

  it("holds: lines of two shards (unflushed) and of the stream object merge by time, newest first", async () => {
    const [a, b] = [newEdge(), newEdge()];
    const s = uniqueStream();
    await createStream(s, { playAuth: "token" });
    const token = await tokenOf(s);
    at(1_000);
    expect((await playOn(s, a, "v1")).status).toBe(403); // the stream's line
    at(2_000);
    expect(await hook(playWith(s, a, "v1", token))).toEqual(ALLOW);
    at(3_000);
    expect(await hook(playWith(s, b, "w1", token))).toEqual(ALLOW);
    at(4_000);
    await stopOn(s, a, "v1");
    at(5_000);
    expect((await playOn(s, b, "w2")).status).toBe(403);
    const log = (await events(s)).map((e) => `${e.at.slice(17, 19)} ${e.action} ${e.client} ${e.decision}`);
    expect(log).toEqual(["05 on_play w2 deny", "04 on_stop v1 end", "03 on_play w1 allow", "02 on_play v1 allow", "01 on_play v1 deny"]);
  });

  it("must not happen (fixed): one usage flush that throws (a transient storage error) loses the chart's count and the hour's peak until the stream's next change (hours), though the shard never stopped", async () => {
    const edge = newEdge();
    const s = uniqueStream();
    await createStream(s);
    await runInDurableObject(shardStub(edge), () => {}); // the shard exists
    expect(await playOn(s, edge, "v0")).toEqual(ALLOW);
    await stopOn(s, edge, "v0");
    await flushShard(edge);
    await failOnce(edge, "INSERT INTO usage_minutes", "SQLITE_BUSY: probe");
    at(MIN);
    for (const c of ["v1", "v2", "v3"]) expect(await playOn(s, edge, c)).toEqual(ALLOW);
    await flushShard(edge); // the minutes insert throws (caught and logged)
    at(3 * HOUR);
    const peaks = await hourPeaks(s, 0, 3 * HOUR + MIN);
    const chart = await minutePeaks(s, 3 * HOUR - 3 * MIN, 3 * HOUR);
    console.info(JSON.stringify({ probe: "usage flush failed once", peaks, chart, viewers: (await streamState(s)).viewers }));
    expect({ peaks, chart }).toEqual({ peaks: { 0: 3, 1: 3, 2: 3, 3: 3 }, chart: [3, 3, 3] });
  });
});

describe("batched usage minutes and hour peaks", () => {
  it("holds: 60 streams' minutes and hour peaks over two hours in one flush (more rows than one statement's 100 bound parameters)", async () => {
    const edge = newEdge();
    const keys = Array.from({ length: 60 }, (_, i) => `__defaultVhost__/live/many-${crypto.randomUUID().slice(0, 6)}-${i}`);
    const stored = await runInDurableObject(shardStub(edge), (shard, state: DurableObjectState) => {
      const book = (shard as any).activity.usage;
      for (const k of keys) book.held(k, 2, T0);
      book.flush();
      for (const k of keys) book.held(k, 1, T0 + 2 * HOUR + 5 * MIN);
      book.flush();
      const sql = state.storage.sql;
      const minutes = sql.exec(`SELECT COUNT(*) AS n FROM usage_minutes WHERE stream_key IN (${keys.map(() => "?").join(",")})`, ...keys).one().n;
      const hours = sql.exec(`SELECT COUNT(*) AS n FROM usage_hours WHERE peak = 2 AND stream_key IN (${keys.map(() => "?").join(",")})`, ...keys).one().n;
      return { minutes, hours };
    });
    expect(stored).toEqual({ minutes: 120, hours: 180 });
  });

  it("holds: a peak buffered across an hour boundary, the shard restarted within the second: the earlier hour keeps its written peak, later hours take up the held count from the next call", async () => {
    const edge = newEdge();
    const s = uniqueStream();
    await createStream(s);
    at(HOUR - 30_000);
    for (const c of ["v1", "v2"]) expect(await playOn(s, edge, c)).toEqual(ALLOW);
    await flushShard(edge);
    at(HOUR + 500);
    expect(await playOn(s, edge, "v3")).toEqual(ALLOW);
    await evictDurableObject(shardStub(edge));
    at(HOUR + 2_000);
    expect((await playOn(uniqueStream(), edge, "x")).body.code).toBe(4001); // any call starts the shard again
    at(HOUR + 10 * MIN);
    for (const c of ["v1", "v2", "v3"]) await stopOn(s, edge, c);
    at(2 * HOUR + MIN);
    expect(await hourPeaks(s, 0, 2 * HOUR + MIN)).toEqual({ 0: 2, 1: 3, 2: 0 });
    expect((await usage(s, `?from=${iso(0)}&to=${iso(2 * HOUR)}`)).buckets.map((b: any) => b.viewerSeconds)).toEqual([60, 3 * 600 - 0.5]);
  });

  it("holds: the shard's peak for a publish (stream.ended's peakViewers) counts viewers not yet flushed", async () => {
    const edge = newEdge();
    const s = uniqueStream();
    await createStream(s);
    for (const c of ["v1", "v2", "v3"]) expect(await playOn(s, edge, c)).toEqual(ALLOW);
    at(20_000);
    await stopOn(s, edge, "v3");
    expect(await shardStub(edge).peakViewers(keyOf(s), T0, T0 + 30_000)).toBe(3);
  });

  it("holds: the buffers empty themselves within about a second, with nobody reading", async () => {
    vi.useRealTimers();
    const edge = newEdge();
    const s = uniqueStream();
    await createStream(s);
    for (let i = 0; i < 20; i++) expect(await playOn(s, edge, `v${i}`)).toEqual(ALLOW);
    await sleep(1_500);
    const waiting = await runInDurableObject(shardStub(edge), (shard) => ({
      lines: (shard as any).log.unwritten.length,
      minutes: (shard as any).activity.usage.unwritten.size,
      peaks: (shard as any).activity.usage.unwrittenPeaks.size,
      timer: (shard as any).log.timer !== null,
    }));
    expect(waiting).toEqual({ lines: 0, minutes: 0, peaks: 0, timer: false });
  });
});

describe("usage adds up across restarts of viewer shards", () => {
  type Op =
    | { t: "play" | "stop" | "close"; server: number; client: number }
    | { t: "wait"; ms: number }
    | { t: "restart"; server: number; flushed: boolean };
  const SERVERS = 2;
  const server = fc.integer({ min: 0, max: SERVERS - 1 });
  const client = fc.integer({ min: 0, max: 2 });
  const opOf = (restarts: "flushed" | "any"): fc.Arbitrary<Op> =>
    fc.oneof(
      { arbitrary: fc.record({ t: fc.constant("play" as const), server, client }), weight: 5 },
      { arbitrary: fc.record({ t: fc.constant("stop" as const), server, client }), weight: 3 },
      { arbitrary: fc.record({ t: fc.constant("close" as const), server, client }), weight: 1 },
      { arbitrary: fc.record({ t: fc.constant("wait" as const), ms: fc.oneof(fc.integer({ min: 1, max: 90_000 }), fc.integer({ min: HOUR / 2, max: 2 * HOUR })) }), weight: 3 },
      { arbitrary: fc.record({ t: fc.constant("restart" as const), server, flushed: restarts === "flushed" ? fc.constant(true) : fc.boolean() }), weight: 2 },
    );

  /** Per shard: every count it held and when, in order. */
  async function run(ops: Op[], exactPeaks: boolean) {
    at(0);
    const s = uniqueStream("um");
    await createStream(s);
    const edges = Array.from({ length: SERVERS }, () => newEdge());
    const live = edges.map(() => new Map<number, number>());
    const changes: { t: number; n: number }[][] = edges.map(() => [{ t: -Infinity, n: 0 }]);
    const viewerMs = new Map<number, number>();
    const addByHour = (from: number, to: number) => {
      for (let h = Math.floor(from / HOUR) * HOUR; h < to; h += HOUR) {
        const ms = Math.min(to, h + HOUR) - Math.max(from, h);
        if (ms > 0) viewerMs.set(h, (viewerMs.get(h) ?? 0) + ms);
      }
    };
    let now = 0;
    for (const o of ops) {
      if (o.t === "wait") {
        now += o.ms;
        at(now);
        continue;
      }
      const edge = edges[o.server];
      if (o.t === "restart") {
        if (o.flushed) await flushShard(edge);
        else await runInDurableObject(shardStub(edge), () => {}); // running, whatever waits unwritten
        await evictDurableObject(shardStub(edge));
        continue;
      }
      const who = { ...edge, client: `c${o.client}` };
      const m = live[o.server];
      if (o.t === "play") {
        expect(await hook(play("live", s, who))).toEqual(ALLOW);
        if (!m.has(o.client)) m.set(o.client, now);
      } else {
        await hook(o.t === "stop" ? stopPlay("live", s, who) : close(who));
        if (m.has(o.client)) addByHour(m.get(o.client)!, now);
        m.delete(o.client);
      }
      const last = changes[o.server].at(-1)!;
      if (last.n !== m.size) changes[o.server].push({ t: now, n: m.size });
    }
    for (const m of live) for (const since of m.values()) addByHour(since, now);
    const end = now;
    const hours = (await usage(s, `?from=${iso(0)}&to=${iso(end + 1)}`)).buckets;
    for (const b of hours) {
      const h = Date.parse(b.start) - T0;
      expect(b.viewerSeconds, `viewer-seconds of ${b.start}`).toBeCloseTo((viewerMs.get(h) ?? 0) / 1000, 3);
    }
    expect((await streamState(s)).viewers).toBe(live.reduce((a, m) => a + m.size, 0));
    if (!exactPeaks) return;
    // The peak of [from, to) per shard (every count held in it, and the one it started with), summed. A change at the
    // range's very first millisecond still counts the count before it (README "Usage": the book keeps the larger of
    // the count carried into a minute and the new one), hence `next >= from`.
    const peakIn = (from: number, to: number) =>
      changes.reduce((sum, c) => {
        let p = 0;
        for (let i = 0; i < c.length; i++) {
          const next = c[i + 1]?.t ?? Infinity;
          if (c[i].t < to && next >= from) p = Math.max(p, c[i].n);
          else if (c[i].t >= from && c[i].t < to) p = Math.max(p, c[i].n);
        }
        return sum + p;
      }, 0);
    for (const b of hours) {
      const h = Date.parse(b.start) - T0;
      expect(b.peakViewers, `peak of ${b.start}`).toBe(peakIn(h, Math.min(h + HOUR, end + 1)));
    }
    const lastMinute = Math.floor(end / MIN) * MIN;
    const chart = await minutePeaks(s, lastMinute - 30 * MIN, lastMinute + MIN);
    const expected = Array.from({ length: 31 }, (_, i) => peakIn(lastMinute - 30 * MIN + i * MIN, Math.min(lastMinute - 29 * MIN + i * MIN, end + 1)));
    expect(chart).toEqual(expected);
  }

  it("holds: restarts after a flush: viewer-seconds, viewers, hour peaks and the per-minute chart are exact", async () => {
    await fc.assert(fc.asyncProperty(fc.array(opOf("flushed"), { minLength: 1, maxLength: 25 }), (ops) => run(ops, true)), {
      numRuns: 30,
      examples: [
        // Found with `size: "max"` (seed 1883672158): a gap of the model, not of the gate. The stop falls on 30:00.000, a
        // minute's first millisecond, and the count before it (1) is that minute's peak, as README "Usage" says.
        [[{ t: "play", server: 0, client: 1 }, { t: "wait", ms: HOUR / 2 }, { t: "stop", server: 0, client: 1 }, { t: "wait", ms: 60_000 }, { t: "play", server: 0, client: 0 }]],
      ],
    });
  });

  it("holds: restarts within the second too: viewer-seconds and viewers are exact", async () => {
    await fc.assert(fc.asyncProperty(fc.array(opOf("any"), { minLength: 1, maxLength: 25 }), (ops) => run(ops, false)), { numRuns: 30 });
  });
});
