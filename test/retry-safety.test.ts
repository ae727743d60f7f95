/**
 * Retries are safe to repeat: what happens when a platform error loses an
 * answer after the object acted (src/platform/retry.ts and its callers).
 * Errors are shaped as the platform's (Object.assign(new Error(), {
 * retryable | overloaded: true })), as in platform-errors.test.ts.
 */
import { env } from "cloudflare:workers";
import { runDurableObjectAlarm } from "cloudflare:test";
import { afterEach, beforeEach, describe, expect, it, onTestFinished, vi } from "vitest";
import { ServerRegistry, type ProcessStatus } from "../src/server/registry";
import { NoticeOutbox } from "../src/server/notices";
import { serverRegistry } from "../src/object-access";
import { StreamObject } from "../src/stream/object";
import { ViewerShard } from "../src/viewers/shard";
import {
  ALLOW,
  createStream,
  type Edge,
  hook,
  newEdge,
  play,
  publish,
  stopPlay,
  streamState,
  uniqueStream,
  unpublish,
} from "./srs";
import { beat, countCalls, events, holdMatching, viewingEdge, overloaded, retryable, serverListed, futureClock, until, withDeadline } from "./fleet";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));


let edge: Edge;
beforeEach(() => {
  edge = newEdge();
});
afterEach(() => {
  vi.restoreAllMocks();
});

describe("retry safety of start hooks", () => {
  it("every attempt's answer lost after the first admitted: the hook fails closed and the admission is undone", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    const real = StreamObject.prototype.publish;
    const spy = vi.spyOn(StreamObject.prototype, "publish").mockImplementation(async function (this: StreamObject, ...args: Parameters<StreamObject["publish"]>) {
      await real.apply(this, args);
      throw retryable();
    });
    const r = await hook(publish("live", s, key, { ...edge, client: "enc00001" }));
    expect(spy).toHaveBeenCalledTimes(3);
    expect(r.status).toBe(503);
    vi.restoreAllMocks();
    // SRS refused the encoder; README: "a start hook's client is refused and nothing is admitted".
    const state = await streamState(s);
    expect({ live: state.live, publisher: state.publisher?.clientId ?? null }).toEqual({ live: false, publisher: null });
  });

  it("an attempt still running in the object after the Worker undid the hook's admission does not admit again", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    const a = newEdge();
    const b = newEdge();
    expect(await hook(publish("live", s, key, { ...a, client: "encA0001" }))).toEqual(ALLOW);

    // The registry answers liveness questions slowly (400 ms): the first attempt waits in its round.
    const realLiveness = ServerRegistry.prototype.liveness;
    const round = { asked: 0, answered: 0, aStopped: false };
    vi.spyOn(ServerRegistry.prototype, "liveness").mockImplementation(async function (this: ServerRegistry, ...args: Parameters<ServerRegistry["liveness"]>) {
      round.asked++;
      try {
        await sleep(400);
        return await realLiveness.apply(this, args);
      } finally {
        round.answered++;
      }
    });
    // The first attempt's connection breaks while the object keeps working on it (the platform's
    // "Network connection lost" is about the connection, not the object).
    const realPublish = StreamObject.prototype.publish;
    let attempt = 0;
    vi.spyOn(StreamObject.prototype, "publish").mockImplementation(async function (this: StreamObject, ...args: Parameters<StreamObject["publish"]>) {
      if (attempt++ > 0) return realPublish.apply(this, args);
      void realPublish.apply(this, args).catch(() => {});
      // Lost once A has stopped (while the attempt waits in its round); a flag, polled: at most 10 s.
      for (let i = 0; i < 2_000 && !round.aStopped; i++) await scheduler.wait(5);
      throw retryable();
    });
    // B's index write fails: lifecycle.start undoes the admission.
    vi.spyOn(ServerRegistry.prototype, "track").mockImplementation(async () => {
      throw overloaded();
    });

    const pending = hook(publish("live", s, key, { ...b, client: "encB0001" }));
    // A stops while B's first attempt waits for the registry (its liveness question has reached it).
    await until(() => round.asked > 0);
    expect(await hook(unpublish("live", s, { ...a, client: "encA0001" }))).toEqual(ALLOW);
    round.aStopped = true;
    const r = await pending;
    expect(r.status).toBe(503); // B is refused by SRS
    // The first attempt's round ends (its questions answered); then a while for the attempt to go on.
    await until(() => round.answered === round.asked);
    await sleep(200);
    vi.restoreAllMocks();
    const state = await streamState(s);
    expect((await serverListed(b))?.sessions ?? 0).toBe(0); // no index entry for B (its server row exists: the liveness witness made it)
    const log = (await events(s)).filter((e) => e.client === "encB0001").map((e) => `${e.decision}: ${e.reason}`);
    console.info(JSON.stringify({ review3: "ghost publisher", state: state.publisher, log }));
    // The ghost blocks every other publisher: its server never heartbeats, so the registry calls it live.
    const c = newEdge();
    const other = await hook(publish("live", s, key, { ...c, client: "encC0001" }));
    console.info(JSON.stringify({ review3: "next publisher", status: other.status, body: other.body }));
    // Expected: nothing held for B. Actual: B is the live publisher, found by no on_close or restart notice.
    expect({ live: state.live, publisher: state.publisher?.clientId ?? null }).toEqual({ live: false, publisher: null });
  });

  it("one start hook whose answer was lost writes two decisions to the stream's log (admitted, then already live)", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 5 });
    const real = ViewerShard.prototype.play;
    const spy = vi.spyOn(ViewerShard.prototype, "play").mockImplementationOnce(async function (this: ViewerShard, ...args: Parameters<ViewerShard["play"]>) {
      await real.apply(this, args);
      throw retryable();
    });
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    expect(spy).toHaveBeenCalledTimes(2);
    // The viewer shard writes viewers' decisions; GET .../events shows them with the stream's.
    const mine = (await events(s)).filter((e) => e.client === "view0001" && e.action === "on_play");
    expect(mine.map((e) => e.reason)).toEqual(["already live", "admitted"]); // pinned as it is
    expect((await streamState(s)).viewers).toBe(1);
  });

  it("a retried track whose first attempt made a candidate makes it once, and the session counts once", async () => {
    expect(await beat(edge)).toEqual(ALLOW);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 5 });
    const candidate = { server: edge.server, service: newEdge().service };
    const real = ServerRegistry.prototype.track;
    const spy = vi.spyOn(ServerRegistry.prototype, "track").mockImplementationOnce(async function (this: ServerRegistry, ...args: Parameters<ServerRegistry["track"]>) {
      await real.apply(this, args);
      throw retryable();
    });
    expect(await hook(play("live", s, { ...candidate, client: "view0001" }))).toEqual(ALLOW);
    expect(spy).toHaveBeenCalledTimes(2);
    expect(await serverListed(edge)).toMatchObject({ serviceId: edge.service, candidateServiceIds: [candidate.service], sessions: 1 });
    expect((await streamState(s)).viewers).toBe(1);
  });

  it("a retried track that finds its process retired in between ends the admission and refuses with 4006", async () => {
    expect(await beat(edge)).toEqual(ALLOW);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 5 });
    const restarted = { server: edge.server, service: newEdge().service };
    const real = ServerRegistry.prototype.track;
    vi.spyOn(ServerRegistry.prototype, "track").mockImplementationOnce(async function (this: ServerRegistry, ...args: Parameters<ServerRegistry["track"]>) {
      await real.apply(this, args);
      // The restart's first heartbeat lands between the lost answer and the retry.
      await this.heartbeat({ serverId: restarted.server, serviceId: restarted.service, deviceId: "", ip: "", pid: "" });
      throw retryable();
    });
    const r = await hook(play("live", s, { ...edge, client: "view0001" }));
    expect(r.status).toBe(403);
    expect(r.body.code).toBe(4006);
    expect((await streamState(s)).viewers).toBe(0);
  });
});

describe("retry safety of stops, heartbeats, notices and liveness questions", () => {
  it("a retried end whose first attempt ended the session writes one end line to the decision log", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 5 });
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    // A viewer's on_stop goes to its server's viewer shard.
    const real = ViewerShard.prototype.stop;
    const spy = vi.spyOn(ViewerShard.prototype, "stop").mockImplementationOnce(function (this: ViewerShard, ...args: Parameters<ViewerShard["stop"]>) {
      real.apply(this, args);
      throw retryable();
    });
    expect(await hook(stopPlay("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    expect(spy).toHaveBeenCalledTimes(2);
    expect((await events(s)).filter((e) => e.client === "view0001" && e.decision === "end")).toHaveLength(1);
    expect((await streamState(s)).viewers).toBe(0);
    expect(await serverListed(edge)).toMatchObject({ sessions: 0 });
  });

  it("a retried heartbeat of a restart retires the old process once; the fence is logged once", async () => {
    expect(await beat(edge)).toEqual(ALLOW);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 5 });
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    const restarted = { server: edge.server, service: newEdge().service };
    const real = ServerRegistry.prototype.heartbeat;
    const spy = vi.spyOn(ServerRegistry.prototype, "heartbeat").mockImplementationOnce(async function (this: ServerRegistry, ...args: Parameters<ServerRegistry["heartbeat"]>) {
      await real.apply(this, args);
      throw retryable();
    });
    expect(await beat(restarted)).toEqual(ALLOW);
    expect(spy).toHaveBeenCalledTimes(2);
    for (let i = 0; i < 10 && ((await serverListed(edge))?.pendingNotices ?? 0) > 0; i++) await runDurableObjectAlarm(serverRegistry(env, edge.server));
    expect(await serverListed(edge)).toMatchObject({ serviceId: restarted.service, candidateServiceIds: [], duplicateServiceIds: [], pendingNotices: 0 });
    expect((await streamState(s)).viewers).toBe(0);
    expect((await events(s)).filter((e) => e.action === "fence")).toHaveLength(1);
  });

  it("a notice applied but whose answer was lost is applied once (one fence line), and leaves the outbox", async () => {
    const { s } = await viewingEdge(edge);
    expect(await hook(play("live", s, { ...edge, client: "view0002" }))).toEqual(ALLOW);
    // Viewers' processes are news for their server's viewer shard: a restart's heartbeat delivers it before it is answered.
    const real = ViewerShard.prototype.applyStatus;
    let lost = 0;
    vi.spyOn(ViewerShard.prototype, "applyStatus").mockImplementation(function (this: ViewerShard, news) {
      const n = real.call(this, news);
      if (news.serverId === edge.server && lost++ === 0) throw retryable();
      return n;
    });
    expect(await beat({ server: edge.server, service: newEdge().service })).toEqual(ALLOW);
    expect(lost).toBe(2);
    await runDurableObjectAlarm(serverRegistry(env, edge.server));
    expect(lost).toBe(2); // delivered: the alarm does not send it again
    expect(await serverListed(edge)).toMatchObject({ pendingNotices: 0 });
    const fences = (await events(s)).filter((e) => e.action === "fence");
    expect(fences).toHaveLength(1);
    expect(fences[0].reason).toMatch(/^ended 2 viewer/);
  });

  it("an alarm that runs while a restart's heartbeat delivers its notice does not deliver it again; the heartbeat waits for the delivery", async () => {
    const { s } = await viewingEdge(edge);
    // The shard holds the notice's first delivery until told.
    const held = holdMatching(ViewerShard.prototype, "applyStatus", (_shard, [news]) => (news as ProcessStatus).serverId === edge.server);
    let answered = false;
    const restart = beat({ server: edge.server, service: newEdge().service }).then((r) => ((answered = true), r));
    await vi.waitFor(() => expect(held.calls).toBe(1));
    // The alarm's run of the outbox (deliver() with no server: the heartbeat's names its shard) has found the notice on its way.
    const alarmRun = countCalls(NoticeOutbox.prototype, "deliver", (_outbox, [shardServer]) => shardServer === undefined);
    const alarm = runDurableObjectAlarm(serverRegistry(env, edge.server));
    await until(() => alarmRun.n > 0);
    expect(answered).toBe(false); // the shard does not know yet
    held.released = true;
    expect(await restart).toEqual(ALLOW);
    await alarm;
    expect(held.calls).toBe(1);
    expect(await serverListed(edge)).toMatchObject({ pendingNotices: 0 });
    expect((await events(s)).filter((e) => e.action === "fence")).toHaveLength(1);
  });

  it("a notice whose object never answers holds neither the restart's heartbeat nor the alarm: it is sent again later", async () => {
    const { s } = await viewingEdge(edge);
    // The first delivery to the shard never answers (until the test ends); the registry waits 50 ms for it.
    const stuck = holdMatching(ViewerShard.prototype, "applyStatus", (_shard, [news]) => (news as ProcessStatus).serverId === edge.server);
    const usual = ServerRegistry.noticeTimeoutMs;
    ServerRegistry.noticeTimeoutMs = 50;
    onTestFinished(() => void (ServerRegistry.noticeTimeoutMs = usual));
    expect(await withDeadline(2_000, () => beat({ server: edge.server, service: newEdge().service }))).toEqual(ALLOW);
    expect(await serverListed(edge)).toMatchObject({ pendingNotices: 1 });
    vi.setSystemTime(Date.now() + 5_000); // due again (NOTICE_RETRY_MS)
    await runDurableObjectAlarm(serverRegistry(env, edge.server));
    expect(stuck.calls).toBe(2);
    expect(await serverListed(edge)).toMatchObject({ pendingNotices: 0 });
    expect((await streamState(s)).viewers).toBe(0);
  });

  it("an overloaded registry is asked once by a stream's liveness round, and the refusal stands", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    const a = newEdge();
    expect(await hook(publish("live", s, key, { ...a, client: "encA0001" }))).toEqual(ALLOW);
    const spy = vi.spyOn(ServerRegistry.prototype, "liveness").mockImplementation(async () => {
      throw overloaded();
    });
    const r = await hook(publish("live", s, key, { ...edge, client: "encB0001" }));
    expect(r.status).toBe(403);
    expect(spy).toHaveBeenCalledTimes(1);
  });

  // A stream is told about its publishers (its viewers are its shards'): a publisher it is.
  it("an overloaded stream is sent a notice once per alarm run, and the notice stays pending", async () => {
    futureClock();
    expect(await beat(edge)).toEqual(ALLOW);
    const s = uniqueStream();
    const key = await createStream(s);
    expect(await hook(publish("live", s, key, { ...edge, client: "enc00001" }))).toEqual(ALLOW);
    let calls = 0;
    vi.spyOn(StreamObject.prototype, "applyStatus").mockImplementation(function (this: StreamObject, news) {
      if (news.serverId === edge.server) calls++;
      throw overloaded();
    });
    expect(await beat({ server: edge.server, service: newEdge().service })).toEqual(ALLOW);
    await runDurableObjectAlarm(serverRegistry(env, edge.server));
    expect(calls).toBe(1);
    expect(await serverListed(edge)).toMatchObject({ pendingNotices: 1 });
  });

  it("an overloaded viewer shard is sent a notice once by the restart's heartbeat, then by the alarm when it is due again (5 s, then 10 s), and the notice stays pending", async () => {
    await viewingEdge(edge);
    let calls = 0;
    vi.spyOn(ViewerShard.prototype, "applyStatus").mockImplementation(function (this: ViewerShard, news) {
      if (news.serverId === edge.server) calls++;
      throw overloaded();
    });
    // The heartbeat is answered all the same: the notice waits in the outbox.
    expect(await beat({ server: edge.server, service: newEdge().service })).toEqual(ALLOW);
    expect(calls).toBe(1);
    await runDurableObjectAlarm(serverRegistry(env, edge.server));
    expect(calls).toBe(1); // not due yet: a notice that failed waits NOTICE_RETRY_MS, then twice as long
    vi.setSystemTime(Date.now() + 5_000);
    await runDurableObjectAlarm(serverRegistry(env, edge.server));
    expect(calls).toBe(2);
    vi.setSystemTime(Date.now() + 5_000);
    await runDurableObjectAlarm(serverRegistry(env, edge.server));
    expect(calls).toBe(2);
    vi.setSystemTime(Date.now() + 5_000);
    await runDurableObjectAlarm(serverRegistry(env, edge.server));
    expect(calls).toBe(3);
    expect(await serverListed(edge)).toMatchObject({ pendingNotices: 1 });
  });
});
