/**
 * Adversarial tests of the latest commits, in the "gate" project (no SRS_API_URL):
 * - 7d7d05b: the usage book's cache of what it last wrote per stream (src/usage/book.ts), the shard's
 *   INSERT OR IGNORE admission (src/viewers/admission.ts decide), the cached digests of configured
 *   secrets (src/auth/secrets.ts);
 * - 6c3a2c9: the bench-only load counters (src/platform/load.ts, GET /admin/load).
 * The kick of refused HLS viewers (82e916b) needs SRS_API_URL: test/srs-api/hls-refused-kicks.test.ts.
 */
import { env } from "cloudflare:workers";
import { createExecutionContext, evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import worker from "../src/index";
import type { ViewerShard } from "../src/viewers/shard";
import { admin, adminWith, createStream, hook, newEdge, publish, stopPlay, uniqueStream, type Edge } from "./srs";
import { at, events, flushShard, HOUR, hourPeaks, iso, MIN, minutePeaks, playOn, shardStub, stopOn, usage, useFakeClock } from "./fleet";
import { ALLOW, LIMIT, limited, livePerSub, playWith, seatsBecome, seatsOf, tokenOf } from "./identity";

/**
 * The viewer shard of `edge` starts again: its memory (the usage book's cache) is gone, its storage
 * kept, with what it writes a second after a change written (the changes here are fake minutes apart;
 * test/batched-writes.test.ts restarts a shard within that second).
 */
const restartShard = async (edge: Edge) => {
  await flushShard(edge);
  await evictDurableObject(shardStub(edge));
};

describe("7d7d05b: the usage book's cache of what it last wrote", () => {
  useFakeClock();

  it("holds: a shard restarted mid-hour after its peak keeps the hour's peak and the per-minute chart exact", async () => {
    const edge = newEdge();
    const s = uniqueStream();
    await createStream(s);
    for (const c of ["v1", "v2", "v3"]) expect(await playOn(s, edge, c)).toEqual(ALLOW);
    at(MIN);
    await stopOn(s, edge, "v3");
    await stopOn(s, edge, "v2");
    await restartShard(edge);
    at(5 * MIN);
    expect(await playOn(s, edge, "v4")).toEqual(ALLOW);
    at(10 * MIN);
    await stopOn(s, edge, "v4");
    await stopOn(s, edge, "v1");
    at(15 * MIN);
    expect(await hourPeaks(s, 0, HOUR)).toEqual({ 0: 3 });
    expect((await usage(s, `?from=${iso(0)}&to=${iso(HOUR)}`)).buckets[0].viewerSeconds).toBe(600 + 60 + 60 + 300);
    expect(await minutePeaks(s, 0, 15 * MIN)).toEqual([3, 3, 1, 1, 1, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0]);
  });

  it("holds: a restart right before an hour boundary, counts going up and down in the hours after, long silences between", async () => {
    const edge = newEdge();
    const s = uniqueStream();
    await createStream(s);
    at(HOUR - 2 * MIN);
    await playOn(s, edge, "v1");
    await playOn(s, edge, "v2");
    at(HOUR - MIN);
    await stopOn(s, edge, "v2");
    await restartShard(edge);
    at(HOUR + 30 * MIN);
    await playOn(s, edge, "v3"); // 2: below hour 0's peak, but hour 1's own peak
    at(HOUR + 40 * MIN);
    await playOn(s, edge, "v4");
    await playOn(s, edge, "v5"); // 4
    await stopOn(s, edge, "v5");
    await stopOn(s, edge, "v4");
    await stopOn(s, edge, "v3"); // 1, held through hour 2
    at(3 * HOUR + 10 * MIN);
    await stopOn(s, edge, "v1"); // 0
    at(4 * HOUR + 5 * MIN);
    await playOn(s, edge, "v6"); // 1
    await restartShard(edge);
    at(4 * HOUR + 6 * MIN);
    await playOn(s, edge, "v7"); // 2, after a restart with no change since the last write
    at(5 * HOUR);
    expect(await hourPeaks(s, 0, 5 * HOUR)).toEqual({ 0: 2, 1: 4, 2: 1, 3: 1, 4: 2 });
  });

  it("holds: within one hour a count that falls and rises again never lowers the hour's peak, and a new hour starts from what is held", async () => {
    const edge = newEdge();
    const s = uniqueStream();
    await createStream(s);
    for (const c of ["v1", "v2", "v3"]) await playOn(s, edge, c);
    at(20 * MIN);
    await stopOn(s, edge, "v3");
    await stopOn(s, edge, "v2");
    at(30 * MIN);
    await playOn(s, edge, "v2"); // 2 < 3: no peak write needed
    at(HOUR + MIN);
    await stopOn(s, edge, "v2"); // 1: hour 1's peak is 2 (held from its start), not hour 0's 3
    at(HOUR + 2 * MIN);
    await playOn(s, edge, "v8");
    await playOn(s, edge, "v9");
    await playOn(s, edge, "va"); // 4
    at(2 * HOUR);
    expect(await hourPeaks(s, 0, 2 * HOUR)).toEqual({ 0: 3, 1: 4 });
  });

  it("holds: two streams on one shard, interleaved, each with its own peak (the cache is per stream)", async () => {
    const edge = newEdge();
    const [a, b] = [uniqueStream(), uniqueStream()];
    await createStream(a);
    await createStream(b);
    await playOn(a, edge, "a1");
    await playOn(b, edge, "b1");
    await playOn(a, edge, "a2");
    await playOn(b, edge, "b2");
    await playOn(b, edge, "b3");
    at(MIN);
    await stopOn(b, edge, "b3");
    await stopOn(a, edge, "a2");
    at(HOUR);
    expect(await hourPeaks(a, 0, HOUR)).toEqual({ 0: 2 });
    expect(await hourPeaks(b, 0, HOUR)).toEqual({ 0: 3 });
  });

  it("holds: a viewer held past the 48 h of minute rows (pruned meanwhile) still counts in the chart and the hour's peak", async () => {
    const edge = newEdge();
    const s = uniqueStream();
    await createStream(s);
    await playOn(s, edge, "v1");
    at(50 * HOUR);
    await playOn(s, edge, "v2");
    await stopOn(s, edge, "v2"); // a session ended: the book prunes its old minute rows
    at(50 * HOUR + 3 * MIN);
    await playOn(s, edge, "v3");
    at(50 * HOUR + 5 * MIN);
    expect(await minutePeaks(s, 50 * HOUR - 2 * MIN, 50 * HOUR + 5 * MIN)).toEqual([1, 1, 2, 1, 1, 2, 2]);
    expect(await hourPeaks(s, 49 * HOUR, 51 * HOUR)).toEqual({ 49: 1, 50: 2 });
  });
});

describe("7d7d05b: INSERT OR IGNORE instead of a second isViewing check", () => {
  it("holds: ten copies of one on_play racing (token stream, one session per viewer, cap 3) admit it once, with one seat and one slot", async () => {
    const s = await limited({ maxViewers: 3 });
    const alice = await tokenOf(s, "alice");
    const edge = newEdge();
    const replies = await Promise.all(Array.from({ length: 10 }, () => hook(playWith(s, edge, "tv000001", alice))));
    expect(replies).toEqual(Array.from({ length: 10 }, () => ALLOW));
    expect(await livePerSub(s)).toEqual({ alice: 1 });
    expect(await seatsOf(s, "alice")).toEqual(["tv000001"]);
    const log = (await events(s)).filter((e: any) => e.action === "on_play");
    expect(log.filter((e: any) => /^admitted/.test(e.reason))).toHaveLength(1);
    // The two other slots are there for two other viewers; a fourth is refused for the cap.
    expect(await hook(playWith(s, edge, "bob00001", await tokenOf(s, "bob")))).toEqual(ALLOW);
    expect(await hook(playWith(s, edge, "carol001", await tokenOf(s, "carol")))).toEqual(ALLOW);
    expect((await hook(playWith(s, edge, "dave0001", await tokenOf(s, "dave")))).body.code).toBe(4005);
    // The repeats leaked no seat: once the session ends, alice plays on another screen.
    expect(await hook(stopPlay("live", s, { ...edge, client: "tv000001" }))).toEqual(ALLOW);
    await seatsBecome(s, "alice", []); // the stop gives the seat back in the background
    expect(await seatsOf(s, "alice")).toEqual([]);
    expect(await hook(playWith(s, newEdge(), "phone001", alice))).toEqual(ALLOW);
    expect(await livePerSub(s)).toMatchObject({ alice: 1 });
  });

  it("holds: the repeats racing a second session of the same viewer: one of the two sessions, never both", async () => {
    const s = await limited();
    const alice = await tokenOf(s, "alice");
    const [a, b] = [newEdge(), newEdge()];
    const replies = await Promise.all([
      ...Array.from({ length: 5 }, () => hook(playWith(s, a, "tv000001", alice))),
      ...Array.from({ length: 5 }, () => hook(playWith(s, b, "phone001", alice))),
    ]);
    const ok = (i: number) => replies[i].status === 200;
    // Each client's repeats agree among themselves, and exactly one client got in.
    const tv = [0, 1, 2, 3, 4].map(ok);
    const phone = [5, 6, 7, 8, 9].map(ok);
    expect(new Set(tv).size).toBe(1);
    expect(new Set(phone).size).toBe(1);
    expect(tv[0] !== phone[0]).toBe(true);
    expect(replies.filter((r) => r.status !== 200).every((r) => r.body.code === LIMIT.body.code)).toBe(true);
    expect(await livePerSub(s)).toEqual({ alice: 1 });
    expect(await seatsOf(s, "alice")).toEqual([tv[0] ? "tv000001" : "phone001"]);
  });

  it("holds: the shard's stored rows and in-memory count agree after racing repeats and a restart", async () => {
    const edge = newEdge();
    const s = uniqueStream();
    await createStream(s, { maxViewers: 5 });
    await Promise.all(Array.from({ length: 8 }, () => playOn(s, edge, "v0000001")));
    await Promise.all(Array.from({ length: 8 }, () => playOn(s, edge, "v0000002")));
    const count = () => runInDurableObject(shardStub(edge), async (o: ViewerShard, state: DurableObjectState) => ({
      memory: o.sessionCount(),
      rows: state.storage.sql.exec("SELECT COUNT(*) AS n FROM viewers").one().n,
    }));
    expect(await count()).toEqual({ memory: 2, rows: 2 });
    await restartShard(edge);
    expect(await count()).toEqual({ memory: 2, rows: 2 });
  });
});

describe("7d7d05b: the configured secrets' digests, cached by value", () => {
  const A = "rotation-secret-A-of-32-characters!";
  const B = "rotation-secret-B-of-32-characters!";
  const hookAs = (secret: string, overrides: Record<string, string | undefined>) =>
    worker.fetch(
      new Request(`http://gate.test/hooks/srs/${encodeURIComponent(secret)}`, { method: "POST", body: JSON.stringify({ action: "on_connect" }) }),
      { ...env, ...overrides } as any,
      createExecutionContext(),
    ).then((r) => r.status);

  it("holds: a rotation A → B → none accepts exactly the configured secrets at each step, whatever the cache holds", async () => {
    expect(await hookAs(A, { HOOK_SECRET: A, HOOK_SECRET_PREVIOUS: "" })).toBe(200);
    expect(await hookAs(B, { HOOK_SECRET: A, HOOK_SECRET_PREVIOUS: "" })).toBe(404);
    // Rotating: B new, A previous.
    expect(await hookAs(B, { HOOK_SECRET: B, HOOK_SECRET_PREVIOUS: A })).toBe(200);
    expect(await hookAs(A, { HOOK_SECRET: B, HOOK_SECRET_PREVIOUS: A })).toBe(200);
    // Rotation over: A is refused although its digest is still cached.
    expect(await hookAs(A, { HOOK_SECRET: B, HOOK_SECRET_PREVIOUS: "" })).toBe(404);
    expect(await hookAs(A, { HOOK_SECRET: B, HOOK_SECRET_PREVIOUS: undefined })).toBe(404);
    expect(await hookAs(B, { HOOK_SECRET: B, HOOK_SECRET_PREVIOUS: undefined })).toBe(200);
  });

  it("holds: near misses are refused (one character off, a prefix, an extension, another case, empty)", async () => {
    const o = { HOOK_SECRET: A, HOOK_SECRET_PREVIOUS: B };
    for (const wrong of [A.slice(0, -1) + "?", A.slice(0, -1), A + "x", A.toUpperCase(), B + " ", " " + A, "x"]) expect(await hookAs(wrong, o), wrong).toBe(404);
    expect(await hookAs(A, o)).toBe(200);
    expect(await hookAs(B, o)).toBe(200);
  });

  it("holds: more configured values than the cache keeps (it is cleared at 16) change no answer", async () => {
    const secrets = Array.from({ length: 40 }, (_, i) => `many-secrets-${String(i).padStart(2, "0")}-of-32-characters-long`);
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < secrets.length; i++) {
        const o = { HOOK_SECRET: secrets[i], HOOK_SECRET_PREVIOUS: secrets[(i + 1) % secrets.length] };
        expect(await hookAs(secrets[i], o)).toBe(200);
        expect(await hookAs(secrets[(i + 1) % secrets.length], o)).toBe(200);
        expect(await hookAs(secrets[(i + 2) % secrets.length], o)).toBe(404);
      }
    }
  });

  it("holds: the admin token through the same cache: the right one in, a near miss and the hook secret out", async () => {
    const T = "admin-token-for-the-cache-of-32-chars";
    expect((await adminWith({ ADMIN_TOKEN: T } as any, "GET", "/streams")).status).toBe(401); // adminWith sends the test's own token
    const raw = (token: string) =>
      worker.fetch(new Request("http://gate.test/admin/streams", { headers: { authorization: `Bearer ${token}` } }), { ...env, ADMIN_TOKEN: T } as any, createExecutionContext()).then((r) => r.status);
    expect(await raw(T)).toBe(200);
    expect(await raw(T.slice(0, -1))).toBe(401);
    expect(await raw(env.HOOK_SECRET as string)).toBe(401);
  });
});

describe("6c3a2c9: bench-only load counters stay out of production paths", () => {
  it("holds: without LOAD_COUNTERS the objects' RPC methods are not wrapped, count nothing, and GET /admin/load is 404", async () => {
    const edge = newEdge();
    const s = uniqueStream();
    const key = await createStream(s, { maxViewers: 2 });
    expect(await hook(publish("live", s, key, { ...edge, client: "pub00001" }))).toEqual(ALLOW);
    expect(await playOn(s, edge, "v0000001")).toEqual(ALLOW);
    const seen = await runInDurableObject(shardStub(edge), async (o: ViewerShard) => ({
      name: (Object.getPrototypeOf(o) as any).play.name,
      counted: o.loadCount(),
    }));
    expect(seen).toEqual({ name: "play", counted: { calls: 0, starts: 0, methods: {} } });
    expect((await admin("GET", `/load?stream=live/${s}&servers=${edge.server}`)).status).toBe(404);
  });

  it("holds: with LOAD_COUNTERS the route still needs the admin token", async () => {
    const res = await worker.fetch(
      new Request("http://gate.test/admin/load?stream=live/x&servers=a", { headers: { authorization: "Bearer wrong" } }),
      { ...env, LOAD_COUNTERS: "1" } as any,
      createExecutionContext(),
    );
    expect(res.status).toBe(401);
  });

  it("a query parameter given twice is a 400 naming it, as on every other route (it was read as absent)", async () => {
    for (const query of ["stream=live/x&stream=live/y", "servers=a&servers=b"]) {
      const res = await worker.fetch(
        new Request(`http://gate.test/admin/load?${query}`, { headers: { authorization: `Bearer ${env.ADMIN_TOKEN}` } }),
        { ...env, LOAD_COUNTERS: "1" } as any,
        createExecutionContext(),
      );
      expect({ status: res.status, body: await res.json() }).toEqual({ status: 400, body: { error: `query parameter "${query.split("=")[0]}" must be given once` } });
    }
  });

  it("?stream= that is not {app}/{stream} is a 400 (it counted a stream named \"undefined\", or the second part of three)", async () => {
    for (const stream of ["live", "live/", "/x", "live/a/b"]) {
      const res = await worker.fetch(
        new Request(`http://gate.test/admin/load?stream=${stream}`, { headers: { authorization: `Bearer ${env.ADMIN_TOKEN}` } }),
        { ...env, LOAD_COUNTERS: "1" } as any,
        createExecutionContext(),
      );
      expect({ stream, status: res.status, body: await res.json() }).toEqual({ stream, status: 400, body: { error: 'query parameter "stream" must be {app}/{stream}' } });
    }
  });
});
