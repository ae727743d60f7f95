/**
 * Adversarial probes of 7b6c8aa / 308f486: the notice outbox's backoff (due/failures), the seq
 * remembered for forgotten processes (src/session/forgotten-processes.ts), and the undo that leaves
 * a session another hook confirmed (confirmedBy in StreamObject.end and ViewerShard.endViewer).
 * "must not happen (fixed): …" tests assert the correct behaviour and failed on the defect they
 * name until it was fixed; "holds: …" tests pass ("failed on …, fixed by …": found already fixed).
 */
import { env } from "cloudflare:workers";
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { afterEach, describe, expect, it, onTestFinished, vi } from "vitest";
import { ServerRegistry, type ProcessStatus } from "../src/server/registry";
import { StreamObject } from "../src/stream/object";
import { ViewerShard } from "../src/viewers/shard";
import { ALLOW, createStream, type Edge, hook, hookWith, newEdge, play, publish, streamState, uniqueStream, unpublish } from "./srs";
import { beat, deliverNotices, futureClock, heldOnTheWay, overloaded, restarted, retryable, serverListed, serverStub, T0, withDeadline, publishingEdge, viewingEdge } from "./fleet";

const DAY = 86_400_000;

afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

/** The registry's pending notices of a server, and its stored alarm. */
async function outbox(edge: Edge) {
  return runInDurableObject(serverStub(edge), async (_r, state) => ({
    notices: state.storage.sql
      .exec<{ stream_key: string; status: string; seq: number; cutoff: number; due: number; failures: number }>(
        "SELECT stream_key, status, seq, cutoff, due, failures FROM notices WHERE server_id = ? ORDER BY rowid", edge.server,
      )
      .toArray(),
    alarm: await state.storage.getAlarm(),
  }));
}

/** While `down`, applyStatus of `proto` fails (overloaded) for news about `edge`'s server; `calls` counts them. */
function failingApply(proto: typeof StreamObject.prototype | typeof ViewerShard.prototype, edge: Edge) {
  const state = { down: true, calls: 0 };
  const real = proto.applyStatus;
  vi.spyOn(proto, "applyStatus").mockImplementation(function (this: unknown, news: ProcessStatus) {
    if (news.serverId !== edge.server) return real.call(this as never, news);
    state.calls++;
    if (state.down) throw overloaded();
    return real.call(this as never, news);
  });
  return state;
}

/** The edge falls silent (SERVER_TIMEOUT_S) at `at`, the stream's publisher is suspended, and it is back a second later. */
async function silentThenBack(edge: Edge, s: string, at: number): Promise<void> {
  vi.setSystemTime(at);
  await runDurableObjectAlarm(serverStub(edge));
  await deliverNotices(edge);
  expect((await streamState(s)).publisher?.state).toBe("suspended");
  vi.setSystemTime(at + 1_000);
  expect(await beat(edge)).toEqual(ALLOW);
  await deliverNotices(edge);
  expect((await streamState(s)).publisher?.state).toBe("live");
}

describe("the notice outbox with backoff", () => {
  it("holds: a failed notice waits 5 s doubling to 60 s, the alarm stays armed at its due time, and it is delivered once due", async () => {
    const { edge, s } = await publishingEdge();
    const apply = failingApply(StreamObject.prototype, edge);
    let now = T0 + 31_000;
    vi.setSystemTime(now);
    await runDurableObjectAlarm(serverStub(edge)); // silent: "suspended" fails
    const waits: number[] = [];
    for (let i = 0; i < 6; i++) {
      const { notices, alarm } = await outbox(edge);
      expect(notices).toHaveLength(1);
      waits.push(notices[0].due - now);
      // Armed no later than the notice is due (and not in the past).
      expect(alarm).not.toBeNull();
      expect(alarm!).toBeLessThanOrEqual(notices[0].due);
      // An alarm run before it is due sends nothing.
      const before = apply.calls;
      vi.setSystemTime(notices[0].due - 1);
      await runDurableObjectAlarm(serverStub(edge));
      expect(apply.calls).toBe(before);
      now = notices[0].due;
      vi.setSystemTime(now);
      await runDurableObjectAlarm(serverStub(edge)); // due: sent again, fails again
      expect(apply.calls).toBe(before + 1);
    }
    expect(waits).toEqual([5000, 10_000, 20_000, 40_000, 60_000, 60_000]);
    apply.down = false;
    vi.setSystemTime(now + 60_000);
    await runDurableObjectAlarm(serverStub(edge));
    expect((await outbox(edge)).notices).toEqual([]);
    expect((await streamState(s)).publisher?.state).toBe("suspended");
  });

  it("holds: a notice in backoff superseded by newer news is due at once, and the older news never lands after it", async () => {
    const { edge, s } = await publishingEdge();
    const apply = failingApply(StreamObject.prototype, edge);
    vi.setSystemTime(T0 + 31_000);
    await runDurableObjectAlarm(serverStub(edge)); // "suspended" (seq 1) fails: due at +5 s
    expect((await outbox(edge)).notices[0]).toMatchObject({ status: "suspended", failures: 1, due: T0 + 36_000 });
    apply.down = false;
    vi.setSystemTime(T0 + 32_000);
    expect(await beat(edge)).toEqual(ALLOW); // back: "live" (seq 2) replaces it, due at once
    const { notices, alarm } = await outbox(edge);
    expect(notices).toHaveLength(1);
    expect(notices[0]).toMatchObject({ status: "live", due: 0, failures: 0 });
    expect(alarm!).toBeLessThanOrEqual(T0 + 32_000);
    await runDurableObjectAlarm(serverStub(edge));
    expect((await outbox(edge)).notices).toEqual([]);
    // The stream applied the newer news (seq 2).
    const state = await streamState(s);
    expect({ live: state.live, state: state.publisher?.state }).toEqual({ live: true, state: "live" });
  });

  it("holds: a restart's heartbeat delivers its shard's notice in backoff before it answers, and a late on_play of the replaced process is refused", async () => {
    const { edge, s } = await viewingEdge();
    const apply = failingApply(ViewerShard.prototype, edge);
    vi.setSystemTime(T0 + 31_000);
    await runDurableObjectAlarm(serverStub(edge)); // the shard's "suspended" fails: in backoff
    vi.setSystemTime(T0 + 32_000);
    expect(await beat(edge)).toEqual(ALLOW); // back: "live", due at once; now it fails once more
    await runDurableObjectAlarm(serverStub(edge));
    const waiting = (await outbox(edge)).notices;
    expect(waiting).toHaveLength(1);
    expect(waiting[0].due).toBeGreaterThan(T0 + 32_000);
    apply.down = false;
    // The restart, before that notice is due: no alarm is run before the late hook.
    expect(await beat(restarted(edge))).toEqual(ALLOW);
    expect((await hook(play("live", s, { ...edge, client: "view0002" }))).body.code).toBe(4006);
    expect((await streamState(s)).viewers).toBe(0);
    await deliverNotices(edge);
    expect(await serverListed(edge)).toMatchObject({ pendingNotices: 0 });
  });
});

describe("forgotten processes", () => {
  /** A heartbeating edge `a` silent for SERVER_RETENTION_S and more, until the registry forgets it; then back with the same process. */
  async function forgottenAndBack(a: Edge, at: number): Promise<number> {
    vi.setSystemTime(at);
    await runDurableObjectAlarm(serverStub(a));
    await deliverNotices(a);
    expect(await serverListed(a)).toBeUndefined();
    vi.setSystemTime(at + 1000);
    expect(await beat(a)).toEqual(ALLOW); // the same SRS process (a long partition): a fresh row, seq from 0
    return at + 1000;
  }

  it("holds (failed on 7b6c8aa, fixed by efc78b8): a server the registry forgot (SERVER_RETENTION_S) comes back with the same service_id; the stream applies its next silence, and a publisher on another server is not refused by the silent one", async () => {
    const { edge: a, s, key } = await publishingEdge();
    const b = newEdge();
    // A silence and a return: the stream applies seq 1, then 2.
    await silentThenBack(a, s, T0 + 31_000);
    // The encoder stops: the stream forgets the process and remembers seq 2.
    expect(await hook(unpublish("live", s, { ...a, client: "enc00001" }))).toEqual(ALLOW);
    const back = await forgottenAndBack(a, T0 + 8 * DAY);
    expect(await hook(publish("live", s, key, { ...a, client: "enc00002" }))).toEqual(ALLOW);
    // Silent again: the registry says "suspended" with seq 1.
    vi.setSystemTime(back + 31_000);
    await runDurableObjectAlarm(serverStub(a));
    await deliverNotices(a);
    const state = await streamState(s);
    const other = await hook(publish("live", s, key, { ...b, client: "enc00003" }));
    expect({ state: state.publisher?.state, other: other.status }).toEqual({ state: "suspended", other: 200 });
  });

  it("holds (failed on 7b6c8aa, fixed by efc78b8): a server the registry forgot comes back with the same service_id; its viewer shard applies its next silence (its viewers no longer count)", async () => {
    futureClock();
    const a = newEdge();
    expect(await beat(a)).toEqual(ALLOW);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 5 });
    expect(await hook(play("live", s, { ...a, client: "view0001" }))).toEqual(ALLOW);
    vi.setSystemTime(T0 + 31_000);
    await runDurableObjectAlarm(serverStub(a)); // suspended (seq 1), applied by the shard
    await deliverNotices(a);
    expect(await streamState(s)).toMatchObject({ viewers: 0, suspendedViewers: 1 });
    vi.setSystemTime(T0 + DAY + 60_000);
    await runDurableObjectAlarm(serverStub(a)); // SESSION_GRACE_S: the viewer ends, the shard forgets the process (remembering seq 1)
    await deliverNotices(a);
    expect(await streamState(s)).toMatchObject({ viewers: 0, suspendedViewers: 0 });
    const back = await forgottenAndBack(a, T0 + 9 * DAY);
    expect(await hook(play("live", s, { ...a, client: "view0002" }))).toEqual(ALLOW);
    vi.setSystemTime(back + 31_000);
    await runDurableObjectAlarm(serverStub(a)); // "suspended", seq 1 of the fresh row
    await deliverNotices(a);
    expect(await streamState(s)).toMatchObject({ viewers: 0, suspendedViewers: 1 });
  });

  it("holds: a process dropped by the stream and seen again takes the registry's next news (a silence, then the return)", async () => {
    const { edge: a, s, key } = await publishingEdge();
    await silentThenBack(a, s, T0 + 31_000);
    expect(await hook(unpublish("live", s, { ...a, client: "enc00001" }))).toEqual(ALLOW);
    expect(await hook(publish("live", s, key, { ...a, client: "enc00002" }))).toEqual(ALLOW);
    await silentThenBack(a, s, T0 + 63_000);
  });
});

describe("undo and confirmedBy", () => {
  it("must not happen (fixed): an undo skipped because the stream allowed a replay of the same client whose own hook then failed (its index write): both hooks refused by SRS, the first attempt's admission stays a ghost publisher", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    const edge = newEdge();
    const other = newEdge();
    // The first attempt admits in the object, then its answer is held past the hook's deadline.
    const real = StreamObject.prototype.publish;
    const answer = { released: false, admitted: false };
    onTestFinished(() => void (answer.released = true));
    let first = true;
    vi.spyOn(StreamObject.prototype, "publish").mockImplementation(async function (this: StreamObject, ...args: Parameters<StreamObject["publish"]>) {
      const d = await real.apply(this, args);
      if (first) {
        first = false;
        answer.admitted = d.allow;
        while (!answer.released) await scheduler.wait(5);
      }
      return d;
    });
    // Its undo is held on the way past UNDO_WAIT_MS.
    const { proxy, gate } = heldOnTheWay(env.STREAM, "end");
    const r1 = await withDeadline(50, () => hookWith({ STREAM: proxy }, publish("live", s, key, { ...edge, client: "enc00001" })));
    expect(r1.status).toBe(503);
    expect({ admitted: answer.admitted, undoOnTheWay: gate.reached }).toEqual({ admitted: true, undoOnTheWay: true });
    // SRS sends the client's on_publish again: the stream allows it (a repeat), but the registry fails its index write.
    const track = vi.spyOn(ServerRegistry.prototype, "track").mockImplementation(async () => {
      throw overloaded();
    });
    const r2 = await hook(publish("live", s, key, { ...edge, client: "enc00001" }));
    expect(r2.status).toBe(503);
    track.mockRestore();
    // The first hook's undo lands now: SRS refused both hooks, so nobody publishes.
    gate.released = true;
    await gate.done;
    answer.released = true;
    const held = (await streamState(s)).publisher?.clientId ?? null;
    const next = await hook(publish("live", s, key, { ...other, client: "enc00002" }));
    expect({ ghost: held, next: next.status }).toEqual({ ghost: null, next: 200 });
  });

  it("holds: every attempt of one hook admitted and lost (the Worker retries with the same hookId): its undo still ends the session", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    const edge = newEdge();
    const other = newEdge();
    // Every publish reaches the object, then its answer is lost as a retryable platform error.
    const lossy = new Proxy(env.STREAM as any, {
      get(t, prop) {
        if (prop === "get")
          return (id: DurableObjectId) => {
            const stub = t.get(id);
            return new Proxy(stub, {
              get(st, p) {
                if (p === "publish")
                  return async (...args: unknown[]) => {
                    await st.publish(...args);
                    throw retryable();
                  };
                if (typeof p === "string" && p !== "then") return (...args: unknown[]) => st[p](...args);
                return Reflect.get(st, p);
              },
            });
          };
        const v = Reflect.get(t, prop);
        return typeof v === "function" ? v.bind(t) : v;
      },
    }) as typeof env.STREAM;
    const r1 = await hookWith({ STREAM: lossy }, publish("live", s, key, { ...edge, client: "enc00001" }));
    expect(r1.status).toBe(503);
    const state = await streamState(s);
    expect(state.publisher).toBeNull();
    expect(await hook(publish("live", s, key, { ...other, client: "enc00002" }))).toEqual(ALLOW);
  });

  it("holds: a viewer replay allowed by the shard whose every answer is lost too is undone by its own hook; the first hook's late undo, skipped, leaves no ghost under the cap", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    const edge = newEdge();
    // First hook: the shard admits, its answer is held past the deadline, and its undo is held on the way.
    const real = ViewerShard.prototype.play;
    const state = { released: false, lossy: false, n: 0 };
    onTestFinished(() => void (state.released = true));
    vi.spyOn(ViewerShard.prototype, "play").mockImplementation(async function (this: ViewerShard, ...args: Parameters<ViewerShard["play"]>) {
      const d = await real.apply(this, args);
      if (++state.n === 1) while (!state.released) await scheduler.wait(5);
      else if (state.lossy) throw retryable(); // the replay's answers are lost (after it ran)
      return d;
    });
    const { proxy, gate } = heldOnTheWay(env.VIEWERS, "stop");
    expect((await withDeadline(50, () => hookWith({ VIEWERS: proxy }, play("live", s, { ...edge, client: "view0001" })))).status).toBe(503);
    expect(gate.reached).toBe(true);
    state.lossy = true;
    expect((await hook(play("live", s, { ...edge, client: "view0001" }))).status).toBe(503);
    state.lossy = false;
    gate.released = true;
    await gate.done;
    state.released = true;
    expect((await streamState(s)).viewers).toBe(0);
    expect(await hook(play("live", s, { ...edge, client: "view0002" }))).toEqual(ALLOW);
  });
});
