/**
 * Adversarial probes of two commits: 17877aa (the stream object's policy version and owed pushes in
 * src/stream/policy-pushes.ts, a getter policyVersion answering 0 when the object is not ready) and
 * bd0b240 (PUT /admin/servers/{server_id} answers with its viewers among its sessions, as GET does).
 */
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { afterEach, describe, expect, it, onTestFinished, vi } from "vitest";
import { PUSH_RETRY_MS, StreamObject } from "../src/stream/object";
import { ViewerShard } from "../src/viewers/shard";
import { POLICY_TTL_MS } from "../src/viewers/lease";
import { at, beat, CAP, until, overloaded, playOn, recallsFailOn, serverListed, serverStub, shardStub, streamAtZero, streamStub, useFakeClock, fireDue } from "./fleet";
import { ALLOW } from "./fake-srs";
import { admin, createStream, hook, newEdge, publish, streamState, uniqueStream, type Edge } from "./srs";

useFakeClock();
afterEach(() => {
  vi.restoreAllMocks();
});

const TIMEOUT_MS = 30_000;
const key = (s: string) => `__defaultVhost__/live/${s}`;
const versionOf = (s: string) => runInDurableObject(streamStub(s), async (o: StreamObject) => (o as any).policyVersion as number);
const storedVersion = (s: string) =>
  runInDurableObject(streamStub(s), async (_o: StreamObject, st: DurableObjectState) => (st.storage.sql.exec("SELECT v FROM policy_version").toArray()[0]?.v as number) ?? 0);
const pendingRows = (s: string) =>
  runInDurableObject(streamStub(s), async (_o: StreamObject, st: DurableObjectState) => st.storage.sql.exec("SELECT version, whole FROM push_pending").toArray() as { version: number; whole: number }[]);
const shardPolicy = (edge: Edge, s: string) =>
  runInDurableObject(shardStub(edge), async (o: ViewerShard) => (o as any).leases.policies.get(key(s)) as { policy: any; version: number } | undefined);
const tablesOf = (stub: any) =>
  runInDurableObject(stub, async (_o: unknown, st: DurableObjectState) => ({
    tables: st.storage.sql.exec("SELECT name FROM sqlite_master").toArray().length,
    alarm: await st.storage.getAlarm(),
  }));
describe("17877aa: the policy version and owed pushes in PolicyPushes", () => {
  it("holds: the version is monotonic across evictions, PUTs, DELETE and create again, and the getter matches storage", async () => {
    const s = await streamAtZero();
    const seen: number[] = [await versionOf(s)];
    expect(seen[0]).toBe(1);
    for (const step of [
      () => admin("PUT", `/streams/live/${s}`, { maxViewers: 3 }),
      () => evictDurableObject(streamStub(s)),
      () => admin("PUT", `/streams/live/${s}`, { maxViewers: 4 }),
      () => evictDurableObject(streamStub(s)),
      () => admin("DELETE", `/streams/live/${s}`),
      () => evictDurableObject(streamStub(s)),
      () => createStream(s, { maxViewers: 1 }),
      () => evictDurableObject(streamStub(s)),
    ]) {
      await step();
      const v = await versionOf(s);
      expect(v).toBe(await storedVersion(s));
      seen.push(v);
    }
    expect(seen).toEqual([1, 2, 2, 3, 3, 4, 4, 5, 5]);
  });

  it("holds: a stream deleted and created again pushes its new policy to a shard that cached the old one (higher version wins)", async () => {
    const s = await streamAtZero({ maxViewers: 5 });
    const a = newEdge();
    expect(await playOn(s, a, "a0000001")).toEqual(ALLOW);
    const before = (await shardPolicy(a, s))!.version;
    expect((await admin("DELETE", `/streams/live/${s}`)).status).toBeLessThan(300);
    expect((await shardPolicy(a, s))!).toMatchObject({ policy: null, version: before + 1 });
    await evictDurableObject(streamStub(s));
    await createStream(s, { maxViewers: 1 });
    expect((await shardPolicy(a, s))!.version).toBe(before + 2);
    expect((await shardPolicy(a, s))!.policy).toMatchObject({ maxViewers: 1 });
    // The old viewer holds the one slot: the next is refused for the cap on the recreated policy.
    expect((await playOn(s, a, "a0000002")).body.code).toBe(CAP);
  });

  it("holds: a push that cannot reach a shard stays owed across an eviction and the alarm delivers it", async () => {
    const s = await streamAtZero();
    const a = newEdge();
    expect(await playOn(s, a, "a0000001")).toEqual(ALLOW);
    const recalls = recallsFailOn(a);
    at(1_000);
    expect((await admin("PUT", `/streams/live/${s}`, { maxViewers: 2 })).status).toBe(200);
    const v = await versionOf(s);
    expect(await pendingRows(s)).toEqual([{ version: v, whole: 0 }]);
    expect((await shardPolicy(a, s))!.version).toBeLessThan(v);
    await evictDurableObject(streamStub(s));
    // Still down at the first retry: still owed.
    at(1_000 + PUSH_RETRY_MS + 100);
    expect(await fireDue(streamStub(s))).toBe(true);
    expect(await pendingRows(s)).toHaveLength(1);
    recalls.down = false;
    await evictDurableObject(streamStub(s));
    at(1_000 + 2 * PUSH_RETRY_MS + 200);
    expect(await fireDue(streamStub(s))).toBe(true);
    expect(await pendingRows(s)).toEqual([]);
    expect(await shardPolicy(a, s)).toMatchObject({ version: v, policy: { maxViewers: 2 } });
  });

  it("holds: a viewer_lease and an on_play for a stream never created answer version 0 and store nothing (also after eviction)", async () => {
    const s = uniqueStream("never");
    const a = newEdge();
    const report = { streamKey: key(s), serverId: a.server, seq: 7, granted: 3, live: 2, suspended: 1, want: 1, place: { colo: "", country: "" } };
    expect(await streamStub(s).viewerLease(report as any)).toEqual({ policy: null, version: 0, seq: 7, granted: 3, tight: false });
    expect((await playOn(s, a, "a0000001")).status).not.toBe(200);
    await evictDurableObject(streamStub(s));
    expect(await streamStub(s).viewerLease({ ...report, seq: 8 } as any)).toMatchObject({ policy: null, version: 0, seq: 8 });
    expect(await streamStub(s).pushPolicy(key(s))).toEqual([]);
    expect(await tablesOf(streamStub(s))).toEqual({ tables: 0, alarm: null });
  });

  it("holds: a viewer_lease after DELETE and an eviction answers the stored version, not 0 (a shard keeps no stale policy)", async () => {
    const s = await streamAtZero({ maxViewers: 2 });
    const a = newEdge();
    expect(await playOn(s, a, "a0000001")).toEqual(ALLOW);
    expect((await admin("DELETE", `/streams/live/${s}`)).status).toBeLessThan(300);
    await evictDurableObject(streamStub(s));
    const ans = await streamStub(s).viewerLease({ streamKey: key(s), serverId: a.server, seq: 99, granted: 1, live: 1, suspended: 0, want: 1, place: { colo: "", country: "" } } as any);
    expect(ans).toMatchObject({ policy: null, version: 2 });
  });

  it("holds: two PUTs racing advance the version twice and the shard ends on the policy the stream keeps", async () => {
    const s = await streamAtZero();
    const [a, b] = [newEdge(), newEdge()];
    expect(await playOn(s, a, "a0000001")).toEqual(ALLOW);
    expect(await playOn(s, b, "b0000001")).toEqual(ALLOW);
    const v0 = await versionOf(s);
    const [r1, r2] = await Promise.all([
      admin("PUT", `/streams/live/${s}`, { maxViewers: 2 }),
      admin("PUT", `/streams/live/${s}`, { maxViewers: 7, playAuth: "open" }),
    ]);
    expect([r1.status, r2.status]).toEqual([200, 200]);
    expect(await versionOf(s)).toBe(v0 + 2);
    const kept = (await streamState(s)).maxViewers;
    for (const e of [a, b]) expect(await shardPolicy(e, s)).toMatchObject({ version: v0 + 2, policy: { maxViewers: kept } });
    expect(await pendingRows(s)).toEqual([]);
  });
});

describe("bd0b240: PUT /admin/servers/{server_id} counts the server's viewers", () => {
  it("holds: an unknown server is 404 and neither its viewer shard nor a registry answer is made up", async () => {
    const ghost = newEdge();
    const r = await admin("PUT", `/servers/${ghost.server}`, { api: null });
    expect(r.status).toBe(404);
    expect(await tablesOf(shardStub(ghost))).toEqual({ tables: 0, alarm: null });
    expect(await serverListed(ghost)).toBeUndefined();
  });

  it("holds: a server whose shard never had viewers gets sessions from its publishers and no durable state in the shard", async () => {
    const a = newEdge();
    await beat(a);
    const s = uniqueStream();
    const k = await createStream(s);
    expect(await hook(publish("live", s, k, { ...a, client: "enc00001" }))).toEqual(ALLOW);
    const put = await admin("PUT", `/servers/${a.server}`, { api: null });
    expect(put.status).toBe(200);
    expect(put.body.sessions).toBe(1);
    expect(put.body).toEqual(await serverListed(a));
    expect(await tablesOf(shardStub(a))).toEqual({ tables: 0, alarm: null });
  });

  it("holds: a viewer shard that fails answers the PUT as GET does (publishers only), not a 500 after the API was set", async () => {
    const a = newEdge();
    await beat(a);
    const s = uniqueStream();
    await createStream(s);
    expect(await playOn(s, a, "a0000001")).toEqual(ALLOW);
    expect((await admin("PUT", `/servers/${a.server}`, { api: null })).body.sessions).toBe(1);
    vi.spyOn(ViewerShard.prototype, "sessionCount").mockRejectedValue(overloaded());
    const put = await admin("PUT", `/servers/${a.server}`, { api: null });
    expect(put.status).toBe(200);
    expect(put.body.sessions).toBe(0);
    expect(put.body).toEqual(await serverListed(a));
  });

  it("holds: a silent server's suspended viewers are counted by the PUT as by GET", async () => {
    const a = newEdge();
    await beat(a);
    const s = uniqueStream();
    await createStream(s);
    for (const c of ["a0000001", "a0000002"]) expect(await playOn(s, a, c)).toEqual(ALLOW);
    at(TIMEOUT_MS + 1_000);
    await runDurableObjectAlarm(serverStub(a));
    expect(await streamState(s)).toMatchObject({ viewers: 0, suspendedViewers: 2 });
    const put = await admin("PUT", `/servers/${a.server}`, { api: null });
    expect(put.status).toBe(200);
    expect(put.body).toMatchObject({ alive: false, sessions: 2 });
    expect(put.body).toEqual(await serverListed(a));
  });
});

describe("a policy answer that arrives after a newer push", () => {
  it("a lease answer computed before PUT playAuth=token, arriving after the push of it, does not bring back the open policy: a viewer without a token is refused", async () => {
    const s = await streamAtZero({ maxViewers: 10 });
    const edge = newEdge();
    expect(await beat(edge)).toEqual(ALLOW);
    expect(await playOn(s, edge, "view0001")).toEqual(ALLOW);

    // The shard's cached policy is due for a re-read: the next on_play asks the stream, whose answer (the open
    // policy) is slow on its way back. Meanwhile the operator requires tokens, and the push reaches the shard first.
    at(POLICY_TTL_MS + 1000);
    const real = StreamObject.prototype.viewerLease;
    const slow = { reached: false, released: false };
    onTestFinished(() => void (slow.released = true));
    vi.spyOn(StreamObject.prototype, "viewerLease").mockImplementation(async function (this: StreamObject, report) {
      const answer = await real.call(this, report);
      if (!slow.reached) {
        slow.reached = true;
        while (!slow.released) await scheduler.wait(5);
      }
      return answer;
    });
    const late = playOn(s, edge, "view0002");
    await until(() => slow.reached);
    expect((await admin("PUT", `/streams/live/${s}`, { playAuth: "token" })).status).toBe(200);
    const pushed = await shardPolicy(edge, s);
    expect(pushed?.policy, "the push reached the shard").toMatchObject({ playAuth: "token" });
    slow.released = true;

    expect((await late).status, "the on_play without a token decided on the older answer").not.toBe(200);
    expect(await shardPolicy(edge, s)).toMatchObject({ version: pushed!.version, policy: { playAuth: "token" } });
    expect((await playOn(s, edge, "view0003")).status, "the next viewer without a token").not.toBe(200);
  });
});
