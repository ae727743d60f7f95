/**
 * Adversarial tests of policy and revocation pushes (push_pending, retried from
 * the stream's alarm), of POLICY_TTL_MS at 10 minutes, and of unlimited streams
 * whose shards tell them nothing but policy reads and leaving.
 */
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import { PUSH_RETRY_MS, StreamObject } from "../src/stream/object";
import { ViewerShard } from "../src/viewers/shard";
import { at, overloaded, recallsFailOn, shardStub, streamAtZero, streamStub, T0, viewer, fireDue } from "./fleet";
import { ALLOW, playWith, REVOKED, tokenOf } from "./identity";
import { admin, createStream, hook, newEdge, publish, stopPlay, streamState } from "./srs";
import { LivenessRounds } from "../src/stream/liveness-rounds";

const MIN = 60_000;

afterEach(() => {
  vi.restoreAllMocks();
  vi.useRealTimers();
});

async function alarmOf(stub: any): Promise<number | null> {
  return runInDurableObject(stub as DurableObjectStub<StreamObject>, async (_o: any, state: DurableObjectState) => (await state.storage.getAlarm()) as number | null);
}

async function leaseRecords(s: string): Promise<string[]> {
  return runInDurableObject(streamStub(s), async (o: StreamObject) => ((o as any).leases.shards() as { serverId: string }[]).map((r) => r.serverId).sort());
}

async function pendingRows(s: string): Promise<number> {
  return runInDurableObject(streamStub(s), async (_o: StreamObject, state: DurableObjectState) => state.storage.sql.exec("SELECT COUNT(*) AS n FROM push_pending").one().n as number);
}


describe("a cap set on an unlimited stream while the admin's push call fails", () => {
  it("the viewers already watching on a silent shard count: no new viewer is admitted over the cap on another edge", async () => {
    const s = await streamAtZero();
    const [a, b] = [newEdge(), newEdge()];
    // Five viewers on a, admitted on the policy a read with its first one (the stream's record of a shows none).
    for (let i = 0; i < 5; i++) expect(await viewer(s, a, `a000000${i}`)).toEqual(ALLOW);
    at(16 * MIN);
    // The operator caps the stream at 5; the push call of the PUT fails (the stream object was overloaded).
    vi.spyOn(StreamObject.prototype, "pushPolicy").mockRejectedValueOnce(overloaded());
    expect((await admin("PUT", `/streams/live/${s}`, { maxViewers: 5 })).status).toBe(200);
    // A new viewer on b, before the stream's alarm retries the push: a's five fill the cap.
    at(16 * MIN + 1_000);
    const r = await viewer(s, b, "b0000001");
    expect(r.body.code, "b admitted over the cap: a's viewers were unknown (a's record forgotten or stale)").toBe(4005);
    expect(await leaseRecords(s)).toContain(a.server);
    // And after the retry, the stream still counts a's viewers.
    at(16 * MIN + PUSH_RETRY_MS + 100);
    await fireDue(streamStub(s));
    const st = await streamState(s);
    expect(st.viewers).toBe(5);
  });
});

describe("a revocation that could not reach a shard", () => {
  it("the revoked viewer's live session on that shard ends once the retried push reaches it (not only its next play refused)", async () => {
    const s = await streamAtZero({ playAuth: "token" });
    const [a, b] = [newEdge(), newEdge()];
    const token = await tokenOf(s, "alice");
    expect(await hook(playWith(s, a, "tv000001", token))).toEqual(ALLOW);
    expect(await hook(playWith(s, b, "phone001", token))).toEqual(ALLOW);
    // a's shard cannot be reached during the POST: neither the push nor the ending of its sessions.
    const realRecall = ViewerShard.prototype.recall;
    const realEnd = ViewerShard.prototype.endRevoked;
    let down = true;
    vi.spyOn(ViewerShard.prototype, "recall").mockImplementation(async function (this: ViewerShard, ...args: any[]) {
      if (down && (this as any).serverId === a.server) throw overloaded();
      return (realRecall as any).apply(this, args);
    });
    vi.spyOn(ViewerShard.prototype, "endRevoked").mockImplementation(function (this: ViewerShard, ...args: any[]) {
      if (down && (this as any).serverId === a.server) throw overloaded();
      return (realEnd as any).apply(this, args);
    });
    at(1_000);
    const r = await admin("POST", `/streams/live/${s}/revocations`, { sub: "alice" });
    expect(r.status).toBe(201);
    expect(r.body.ended.map((e: any) => e.clientId)).toEqual(["phone001"]);
    // a is reachable again; the stream's alarm retries.
    down = false;
    at(1_000 + PUSH_RETRY_MS + 100);
    expect(await fireDue(streamStub(s))).toBe(true);
    // The next play is refused on a (this holds)...
    expect(await hook(playWith(s, a, "tv000002", token))).toEqual(REVOKED);
    // ...and alice's live session on a has ended.
    at(1_000 + 2 * PUSH_RETRY_MS + 100);
    await fireDue(streamStub(s));
    const st = await streamState(s);
    expect(st.viewers, "alice's revoked session on a is still live").toBe(0);
  });

  it("holds?: a shard with viewers of an unlimited stream, silent for over 15 minutes, still has its revoked sessions ended", async () => {
    const s = await streamAtZero({ playAuth: "token" });
    const [a, b] = [newEdge(), newEdge()];
    const token = await tokenOf(s, "alice");
    expect(await hook(playWith(s, a, "tv000001", token))).toEqual(ALLOW);
    // 20 minutes of silence from a; b's viewers come and go meanwhile.
    for (let t = 1; t <= 20; t++) {
      at(t * MIN);
      await runDurableObjectAlarm(shardStub(a));
      expect(await hook(playWith(s, b, `bob${String(t).padStart(5, "0")}`, await tokenOf(s, "bob")))).toEqual(ALLOW);
      expect(await hook(stopPlay("live", s, { ...b, client: `bob${String(t).padStart(5, "0")}` }))).toEqual(ALLOW);
      await fireDue(streamStub(s));
    }
    expect(await leaseRecords(s)).toContain(a.server);
    const r = await admin("POST", `/streams/live/${s}/revocations`, { sub: "alice" });
    expect(r.body.ended.map((e: any) => e.clientId)).toEqual(["tv000001"]);
    expect(await hook(playWith(s, a, "tv000002", token))).toEqual(REVOKED);
    expect(await pendingRows(s)).toBe(0);
  }, 30_000);
});

describe("an unlimited stream's record of a shard whose leave message was lost", () => {
  it("goes at last: the shard tries to leave again, or the stream forgets it", async () => {
    const s = await streamAtZero();
    const a = newEdge();
    expect(await viewer(s, a, "a0000001")).toEqual(ALLOW);
    at(10_000);
    expect(await hook(stopPlay("live", s, { ...a, client: "a0000001" }))).toEqual(ALLOW);
    // The leave message fails (the stream object is overloaded at that moment).
    const real = StreamObject.prototype.viewerLease;
    let lost = 0;
    vi.spyOn(StreamObject.prototype, "viewerLease").mockImplementation(async function (this: StreamObject, report) {
      if (report.serverId === a.server && report.want === 0 && report.live === 0 && lost === 0) {
        lost++;
        throw new Error("connection reset");
      }
      return real.call(this, report);
    });
    for (let t = 1; t <= 120; t++) {
      at(t * MIN);
      await fireDue(shardStub(a));
      await fireDue(streamStub(s));
    }
    expect(lost).toBe(1);
    expect(await leaseRecords(s), "the record of a (no viewers, no slots) stays for good").toEqual([]);
  }, 60_000);
});

describe("push_pending and the alarm", () => {
  it("holds?: two PUTs in a row while the first push is being retried, then a DELETE and a re-create, with a restart: every shard learns the newest, nothing stays pending", async () => {
    const s = await streamAtZero();
    const [a, b] = [newEdge(), newEdge()];
    expect(await viewer(s, a, "a0000001")).toEqual(ALLOW);
    expect(await viewer(s, b, "b0000001")).toEqual(ALLOW);
    const recalls = recallsFailOn(a);
    at(1_000);
    expect((await admin("PUT", `/streams/live/${s}`, { maxViewers: 1 })).status).toBe(200);
    at(6_500);
    await fireDue(streamStub(s));
    expect((await admin("PUT", `/streams/live/${s}`, { playAuth: "token" })).status).toBe(200);
    await evictDurableObject(streamStub(s));
    recalls.down = false;
    at(12_000);
    await fireDue(streamStub(s));
    expect((await viewer(s, a, "a0000002")).body.code).toBe(4010);
    expect(await pendingRows(s)).toBe(0);
    expect((await admin("DELETE", `/streams/live/${s}`)).status).toBe(200);
    expect((await viewer(s, a, "a0000003")).body.code).not.toBe(0);
    await createStream(s);
    expect(await viewer(s, a, "a0000004")).toEqual(ALLOW);
    expect(await viewer(s, b, "b0000004")).toEqual(ALLOW);
    expect(await pendingRows(s)).toBe(0);
  });

  it("holds?: after pushed() deleted the alarm, a publisher admitted later still gets its sweeps", async () => {
    const s = await streamAtZero();
    expect(await alarmOf(streamStub(s))).toBeNull();
    const sweeps: number[] = [];
    const realRefresh = (LivenessRounds.prototype as any).refresh;
    vi.spyOn(LivenessRounds.prototype as any, "refresh").mockImplementation(async function (this: any, ...args: any[]) {
      if (args[0] === null) sweeps.push(Date.now() - T0);
      return realRefresh.apply(this, args);
    });
    const k = (await admin("PUT", `/streams/live/${s}`, { rotateKey: true })).body.publishKey;
    const p = newEdge();
    expect(await hook(publish("live", s, k, { ...p, client: "pub00001" }))).toEqual(ALLOW);
    for (let t = 1_000; t <= 200_000; t += 1_000) {
      at(t);
      await fireDue(streamStub(s));
    }
    expect(sweeps.length, `sweeps at ${sweeps}`).toBeGreaterThanOrEqual(3);
  }, 60_000);
});
