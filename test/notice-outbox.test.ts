/**
 * Adversarial probes of the registry's notice outbox (0ed2e6b, 45737b2: deliveries in flight, the
 * 10 s bound per delivery, the restart's heartbeat delivering its shard's notice) and of voided
 * start hooks (62ea78d, f2a501e: stored voids, the undo window past the deadline, on_close order).
 * "must not happen (fixed): …" tests assert the correct behaviour and failed on the defect they
 * name until it was fixed; "holds: …" tests passed from the start.
 */
import { env } from "cloudflare:workers";
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { afterEach, describe, expect, it, onTestFinished, vi } from "vitest";
import { HOOK_DEADLINE_MS } from "../src/platform/retry";
import { ServerRegistry, type NoticeAnswer, type ProcessStatus } from "../src/server/registry";
import { StreamObject } from "../src/stream/object";
import { ViewerShard } from "../src/viewers/shard";
import { ALLOW, close, createStream, type Edge, heartbeat, hook, hookWith, newEdge, play, publish, streamState, uniqueStream, unpublish } from "./srs";
import { beat, countCalls, deliverNotices, events, futureClock, until, heldOnTheWay, holdFirst, holdMatching, overloaded, restarted, serverListed, serverStub, T0, withDeadline, withNoticeTimeout, publishingEdge, viewingEdge } from "./fleet";

const keyOf = (s: string) => `__defaultVhost__/live/${s}`;
/** The stream key a StreamObject holds (inside a mock of one of its methods). */
const streamKeyOf = (o: unknown) => (o as { settings: { key: string | null } | null }).settings?.key ?? "";

afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

const beatWith = (edge: Edge, fields: Record<string, unknown>) => hook({ ...heartbeat(edge), ...fields }, undefined, "/heartbeat");

describe("the notice outbox", () => {
  it("must not happen (fixed): fifty notices whose objects keep failing hold back every later notice of the registry shard for good", async () => {
    futureClock();
    const edge = newEdge();
    expect(await beat(edge)).toEqual(ALLOW);
    const streams: string[] = [];
    for (let i = 0; i < 51; i++) {
      const s = uniqueStream();
      const key = await createStream(s);
      expect(await hook(publish("live", s, key, { ...edge, client: `enc${String(i).padStart(5, "0")}` }))).toEqual(ALLOW);
      streams.push(s);
    }
    // The restart's notices, in the order the outbox sends them: the last one is the 51st.
    expect(await beat(restarted(edge))).toEqual(ALLOW);
    const order = await runInDurableObject(serverStub(edge), (_r, state) =>
      state.storage.sql.exec<{ stream_key: string }>("SELECT stream_key FROM notices WHERE server_id = ? ORDER BY rowid", edge.server).toArray().map((r) => r.stream_key),
    );
    expect(order).toHaveLength(51);
    const healthy = order[50];
    // Every stream object but that one is overloaded (a colo in trouble, an object stuck behind a slow neighbour).
    const real = StreamObject.prototype.applyStatus;
    let healthyCalls = 0;
    const failing = async function (this: StreamObject, news: ProcessStatus) {
      if (streamKeyOf(this) !== healthy) throw overloaded();
      healthyCalls++;
      return real.call(this, news);
    };
    vi.spyOn(StreamObject.prototype, "applyStatus").mockImplementation(failing as unknown as (news: ProcessStatus) => NoticeAnswer);
    for (let i = 0; i < 5; i++) await runDurableObjectAlarm(serverStub(edge));
    // The one stream that can be told never is (it is never even called): the publisher of the replaced process still holds it.
    const state = await streamState(healthy.split("/").pop()!);
    expect({ publisher: state.publisher?.clientId ?? null, healthyCalls: healthyCalls > 0 }).toEqual({ publisher: null, healthyCalls: true });
  });

  it("must not happen (fixed): a restart's heartbeat whose viewer shard never answers is refused 503 (the notice's bound was the heartbeat's whole deadline)", () => {
    // The mechanism at short times: test/retry-safety.test.ts ("a notice whose object never answers …").
    // Here the shipped times: the heartbeat waits for its shard's notice at most half its own deadline.
    expect(ServerRegistry.noticeTimeoutMs).toBeLessThanOrEqual(HOOK_DEADLINE_MS / 2);
  });

  it("must not happen (fixed): a delivery that timed out and lands late suspends a publisher whose server is alive (its seq is forgotten once the process held nothing)", async () => {
    const { edge, s, key } = await publishingEdge();
    withNoticeTimeout(50);
    // The stream's first "suspended" notice is stuck on its way (past the registry's bound).
    const late = holdMatching(StreamObject.prototype, "applyStatus", (_self, [news]) => (news as ProcessStatus).serverId === edge.server && (news as ProcessStatus).status === "suspended");
    vi.setSystemTime(T0 + 31_000);
    await runDurableObjectAlarm(serverStub(edge)); // silent: suspended; the notice times out
    expect(late.reached).toBe(true);
    expect(await serverListed(edge)).toMatchObject({ alive: false, pendingNotices: 1 });
    vi.setSystemTime(T0 + 32_000);
    expect(await beat(edge)).toEqual(ALLOW); // back: the pending notice now says "live" (a newer seq)
    await deliverNotices(edge);
    expect(await serverListed(edge)).toMatchObject({ alive: true, pendingNotices: 0 });
    // The encoder reconnects (the stream forgets the process while it holds nothing of it).
    expect(await hook(unpublish("live", s, { ...edge, client: "enc00001" }))).toEqual(ALLOW);
    expect(await hook(publish("live", s, key, { ...edge, client: "enc00002" }))).toEqual(ALLOW);
    // The stuck delivery of the older "suspended" lands now.
    late.released = true;
    await until(() => late.done);
    expect(await serverListed(edge)).toMatchObject({ alive: true, pendingNotices: 0 });
    const state = await streamState(s);
    expect({ live: state.live, publisher: state.publisher?.clientId, state: state.publisher?.state }).toEqual({ live: true, publisher: "enc00002", state: "live" });
  });

  it("holds: a notice superseded while in flight: the older's success deletes nothing newer, the newer is sent next, and the stream ends live", async () => {
    const { edge, s } = await publishingEdge();
    const held = holdMatching(StreamObject.prototype, "applyStatus", (_self, [news]) => (news as ProcessStatus).serverId === edge.server);
    vi.setSystemTime(T0 + 31_000);
    const alarm = runDurableObjectAlarm(serverStub(edge)); // sends "suspended" and waits for it
    await until(() => held.reached);
    vi.setSystemTime(T0 + 32_000);
    expect(await beat(edge)).toEqual(ALLOW); // "live", a newer seq, replaces the pending row
    held.released = true;
    await alarm;
    expect(await serverListed(edge)).toMatchObject({ pendingNotices: 1 });
    await deliverNotices(edge);
    expect(await serverListed(edge)).toMatchObject({ alive: true, pendingNotices: 0 });
    const state = await streamState(s);
    expect({ live: state.live, state: state.publisher?.state }).toEqual({ live: true, state: "live" });
  });

  it("holds: two restarts' heartbeats in a row while the first waits for its shard's notice: both answered, the last process current with its own pid, every notice delivered", async () => {
    futureClock();
    const a = newEdge();
    expect(await beatWith(a, { pid: "100" })).toEqual(ALLOW);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 5 });
    expect(await hook(play("live", s, { ...a, client: "viewA001" }))).toEqual(ALLOW);
    const held = holdMatching(ViewerShard.prototype, "applyStatus", (_self, [news]) => (news as ProcessStatus).serverId === a.server);
    const b = restarted(a);
    const first = beatWith(b, { pid: "200" });
    await until(() => held.reached);
    // B's viewer (the shard asks the registry itself), then B's own restart.
    expect(await hook(play("live", s, { ...b, client: "viewB001" }))).toEqual(ALLOW);
    const c = restarted(a);
    const beats = countCalls(ServerRegistry.prototype, "heartbeat", (_self, args) => JSON.stringify(args).includes(c.service));
    const second = beatWith(c, { pid: "300" });
    // C's heartbeat has reached the registry (then a moment to get to its wait there) while the first still waits.
    await until(() => beats.n > 0);
    await scheduler.wait(50);
    held.released = true;
    expect(await first).toEqual(ALLOW);
    expect(await second).toEqual(ALLOW);
    await deliverNotices(a);
    expect(await serverListed(a)).toMatchObject({ serviceId: c.service, pid: "300", pendingNotices: 0 });
    expect((await streamState(s)).viewers).toBe(0);
  });

  it("holds: a restart's heartbeat while the alarm's delivery to the same shard is in flight sends its own notice, waits for the other, and every viewer of the old process ends", async () => {
    const { edge, s } = await viewingEdge();
    const held = holdMatching(ViewerShard.prototype, "applyStatus", (_self, [news]) => (news as ProcessStatus).serverId === edge.server);
    vi.setSystemTime(T0 + 31_000);
    const alarm = runDurableObjectAlarm(serverStub(edge)); // "suspended" to the shard, held
    await until(() => held.reached);
    let answered = false;
    const restart = beat(restarted(edge)).then((r) => ((answered = true), r));
    await scheduler.wait(100);
    expect(answered).toBe(false);
    held.released = true;
    expect(await restart).toEqual(ALLOW);
    await alarm;
    await deliverNotices(edge);
    expect(await serverListed(edge)).toMatchObject({ alive: true, pendingNotices: 0 });
    expect((await streamState(s)).viewers).toBe(0);
  });
});

describe("voided start hooks", () => {
  it("must not happen (fixed): an undo that lands after the Worker gave up on it ends the session a replay of the same client was admitted with: a second publisher is admitted", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    const edge = newEdge();
    const other = newEdge();
    // The first attempt waits in the object past the hook's deadline; its undo is held on the way past UNDO_WAIT_MS.
    const stuck = holdMatching(StreamObject.prototype, "publish", () => true);
    const { proxy, gate } = heldOnTheWay(env.STREAM, "end");
    const first = await withDeadline(50, () => hookWith({ STREAM: proxy }, publish("live", s, key, { ...edge, client: "enc00001" })));
    expect(first.status).toBe(503);
    expect(gate.reached).toBe(true);
    // SRS sends the encoder's on_publish again under the same client id: admitted.
    expect(await hook(publish("live", s, key, { ...edge, client: "enc00001" }))).toEqual(ALLOW);
    // The first hook's undo and attempt land now.
    gate.released = true;
    await gate.done;
    stuck.released = true;
    await until(() => stuck.done);
    expect((await streamState(s)).publisher?.clientId).toBe("enc00001");
    // Exactly one publisher per stream: another encoder is refused while enc00001 publishes.
    expect((await hook(publish("live", s, key, { ...other, client: "enc00002" }))).status).toBe(403);
  });

  it("must not happen (fixed): an undo that lands after the Worker gave up on it ends the viewer session a replay of the same client was admitted with, and the cap admits one too many", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    const edge = newEdge();
    // The first attempt waits in the shard past the hook's deadline; its undo is held on the way past UNDO_WAIT_MS.
    const stuck = holdMatching(ViewerShard.prototype, "play", () => true);
    const { proxy, gate } = heldOnTheWay(env.VIEWERS, "stop");
    const first = await withDeadline(50, () => hookWith({ VIEWERS: proxy }, play("live", s, { ...edge, client: "view0001" })));
    expect(first.status).toBe(503);
    expect(gate.reached).toBe(true);
    // SRS sends the player's on_play again under the same client id: admitted, the one slot taken.
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    gate.released = true;
    await gate.done;
    stuck.released = true;
    await until(() => stuck.done);
    expect((await streamState(s)).viewers).toBe(1);
    // The cap holds: view0001 still plays, so another viewer is refused.
    expect((await hook(play("live", s, { ...edge, client: "view0002" }))).body.code).toBe(4005);
  });

  it("holds: a replay of an undone on_play under the same client id is admitted (a new hook), and the first hook's late attempt admits nothing more", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 5 });
    const edge = newEdge();
    const stuck = holdFirst(ViewerShard.prototype, "play");
    expect((await withDeadline(50, () => hook(play("live", s, { ...edge, client: "view0001" })))).status).toBe(503);
    expect(stuck.reached()).toBe(true);
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    stuck.release();
    // The late attempt finds the hook voided; it is logged as the session it finds ("already live") and admits nothing.
    await until(async () => (await events(s)).filter((e) => e.client === "view0001" && e.action === "on_play").length >= 2);
    expect((await streamState(s)).viewers).toBe(1);
  });

  it("holds: a hookId of '' is never voided, and a voided hookId survives the registry's eviction", async () => {
    const edge = newEdge();
    const reg = serverStub(edge);
    const stream = { streamKey: keyOf(uniqueStream()), role: "publisher" as const };
    await reg.forget(edge.server, edge.service, "enc00001", [stream], "");
    expect(await reg.track(edge.server, edge.service, "enc00001", stream, "")).toBe("current");
    expect((await reg.sessionsOf(edge.server)).map((x) => x.clientId)).toEqual(["enc00001"]);
    await reg.forget(edge.server, edge.service, "enc00002", [stream], "hook-x");
    await evictDurableObject(reg);
    await serverStub(edge).track(edge.server, edge.service, "enc00002", stream, "hook-x");
    await serverStub(edge).track(edge.server, edge.service, "enc00002", stream, "hook-x"); // repeated
    expect((await serverStub(edge).sessionsOf(edge.server)).map((x) => x.clientId)).toEqual(["enc00001"]);
  });

  it("holds: voided hooks do not pile up: a void older than a minute is dropped at the next one", async () => {
    futureClock();
    const edge = newEdge();
    const stream = { streamKey: keyOf(uniqueStream()), role: "publisher" as const };
    for (let i = 0; i < 20; i++) await serverStub(edge).forget(edge.server, edge.service, `c${i}`, [stream], `old-${i}`);
    vi.setSystemTime(T0 + 61_000);
    await serverStub(edge).forget(edge.server, edge.service, "c-new", [stream], "new");
    const rows = await runInDurableObject(serverStub(edge), (_r, state) =>
      state.storage.sql.exec<{ hook_id: string }>("SELECT hook_id FROM voided_hooks WHERE hook_id IN ('new') OR hook_id LIKE 'old-%'").toArray().map((r) => r.hook_id),
    );
    expect(rows).toEqual(["new"]);
    // And an expired void no longer blocks its hook (far beyond any attempt's run time).
    expect(await serverStub(edge).track(edge.server, edge.service, "c0", stream, "old-0")).toBe("current");
    expect((await serverStub(edge).sessionsOf(edge.server)).map((x) => x.clientId)).toContain("c0");
  });

  it("holds: on_close whose viewer shard fails is not answered 200, whether or not a stream object fails too", async () => {
    const s = uniqueStream();
    const key = await createStream(s, { maxViewers: 5 });
    const edge = newEdge();
    expect(await hook(publish("live", s, key, { ...edge, client: "cli00001" }))).toEqual(ALLOW);
    expect(await hook(play("live", s, { ...edge, client: "cli00001" }))).toEqual(ALLOW);
    // The shard fails once the streams have answered (an earlier failure: see the next test).
    vi.spyOn(ViewerShard.prototype, "close").mockImplementation(async () => {
      await scheduler.wait(300);
      throw overloaded();
    });
    const onlyShard = await hook(close({ ...edge, client: "cli00001" }));
    expect(onlyShard.status).toBe(503);
    expect(onlyShard.body.reason).toMatch(/^viewer shard/);
    expect(await hook(publish("live", s, key, { ...edge, client: "cli00002" }))).toEqual(ALLOW);
    vi.spyOn(StreamObject.prototype, "end").mockImplementation(() => {
      throw overloaded();
    });
    const both = await hook(close({ ...edge, client: "cli00002" }));
    expect(both.status).toBe(503);
    expect(both.body.reason).toMatch(/^stream object/);
  });

  it("must not happen (fixed): on_close whose viewer shard fails before the registry answers leaves an unhandled promise rejection in the Worker", async () => {
    const edge = newEdge();
    const unhandled: unknown[] = [];
    const seen = (e: PromiseRejectionEvent) => {
      unhandled.push(e.reason);
      e.preventDefault();
    };
    addEventListener("unhandledrejection", seen);
    onTestFinished(() => removeEventListener("unhandledrejection", seen));
    vi.spyOn(ViewerShard.prototype, "close").mockImplementation(async () => {
      throw overloaded();
    });
    // The registry answers after the shard failed (a busy shard of the registry).
    const real = ServerRegistry.prototype.held;
    vi.spyOn(ServerRegistry.prototype, "held").mockImplementation(async function (this: ServerRegistry, ...args: Parameters<ServerRegistry["held"]>) {
      await scheduler.wait(100);
      return real.apply(this, args);
    });
    const r = await hook(close({ ...edge, client: "cli00001" }));
    expect(r.status).toBe(503);
    await scheduler.wait(50);
    expect(unhandled.map(String)).toEqual([]);
  });
});
