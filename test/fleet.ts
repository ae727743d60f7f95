/**
 * Helpers for tests of an SRS fleet over time: a fake clock in the future (so
 * Durable Object alarms run only when a test runs them), heartbeats and
 * restarts of edges, the server list, and the registry's notices.
 */
import { env } from "cloudflare:workers";
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { afterEach, beforeEach, expect, onTestFinished, vi } from "vitest";
import { serverRegistry, viewerShard } from "../src/object-access";
import { ViewerShard } from "../src/viewers/shard";
import { ServerRegistry } from "../src/server/registry";
import { StreamObject } from "../src/stream/object";
import { Deadline } from "../src/platform/retry";
import { admin, createStream, type Edge, heartbeat, hook, newEdge, play, publish, stopPlay, streamState, uniqueStream } from "./srs";
import { ALLOW, kickedOn, type takeoverReady } from "./fake-srs";

/** In the future: alarms the objects set at fake times never fire by themselves, only when a test runs them. */
export const T0 = new Date("2031-03-01T12:00:00Z").getTime();

/** Sets the fake clock to T0 + ms (tests call vi.useFakeTimers({ toFake: ["Date"] }) first). */
export const at = (ms: number) => vi.setSystemTime(T0 + ms);

/** The fake clock at 0 (the caller's test fakes Date), and a new stream with `policy`. */
export async function streamAtZero(policy: Record<string, unknown> = {}): Promise<string> {
  vi.useFakeTimers({ toFake: ["Date"] });
  at(0);
  const s = uniqueStream();
  await createStream(s, policy);
  return s;
}

export const beat = (edge: Edge) => hook(heartbeat(edge), undefined, "/heartbeat");

/** The same server_id under a new service_id: SRS after a restart. */
export const restarted = (edge: Edge): Edge => ({ server: edge.server, service: newEdge().service });

export const serverStub = (edge: Edge) => serverRegistry(env, edge.server);

/** The edge's viewer shard: where its viewers of every stream are admitted. */
export const shardStub = (edge: Edge) => viewerShard(env, edge.server);

/**
 * What the edge's viewer shard writes at most a second after a change (decision-log lines and usage
 * minutes, see FLUSH_AFTER_MS in src/viewers/shard.ts) is written now: before a restart of a shard
 * that was not that busy a second earlier (an evicted object was idle for longer).
 */
export const flushShard = (edge: Edge) => runInDurableObject(shardStub(edge), (shard) => (shard as unknown as { log: { flush(): void } }).log.flush());

/** What an on_play tells a viewer shard, for tests that call the shard directly. */
export const playRequest = (stream: string, edge: Edge, clientId: string) => ({
  streamKey: `__defaultVhost__/live/${stream}`,
  session: { serverId: edge.server, serviceId: edge.service, clientId },
  ip: "127.0.0.1",
  token: { ok: true } as const,
  guessLimit: 10,
  hookId: crypto.randomUUID(),
  place: { colo: "", country: "" },
});

export const streamStub = (stream: string) => env.STREAM.get(env.STREAM.idFromName(`__defaultVhost__/live/${stream}`));

/** Runs an object's alarm only if it is due by the (fake) clock, as the platform would; true if it ran. */
export async function fireDue(stub: any): Promise<boolean> {
  const when: number | null = await runInDurableObject(stub as DurableObjectStub<StreamObject>, async (_o: StreamObject, state: DurableObjectState) => (await state.storage.getAlarm()) as number | null);
  if (when === null || when > Date.now()) return false;
  return runDurableObjectAlarm(stub);
}

/**
 * The `nth` ask for slots of `edge`'s shard from now on (by default the second: a first viewer's policy read
 * comes first): the stream decides it, then its answer waits on the way back until `back.open()`; `decided`
 * once the stream has decided.
 */
export function askForSlotsHeld(edge: Edge, nth = 2): { decided: Promise<void>; back: ReturnType<typeof gate> } {
  const realLease = StreamObject.prototype.viewerLease;
  const back = gate();
  const decided = gate();
  let asks = 0;
  vi.spyOn(StreamObject.prototype, "viewerLease").mockImplementation(async function (this: StreamObject, report) {
    const answer = await realLease.call(this, report);
    if (report.serverId === edge.server && report.want > 0 && ++asks === nth) {
      decided.open();
      await back.wait;
    }
    return answer;
  });
  return { decided: decided.wait, back };
}

/** The shards the stream counts as waiting for slots, longest waiting first. */
export async function waitingOf(s: string): Promise<string[]> {
  return runInDurableObject(streamStub(s), async (o: StreamObject) => (o as any).leases.waiting() as string[]);
}

/**
 * From `from` to `to` ms (fake clock), every `step` ms: `each` (if any), the stream's due alarm, then a new
 * viewer on `edge`; when the first is admitted (ms), or null.
 */
export async function admittedAt(
  s: string, edge: Edge, from: number, to: number, tag: string,
  { step = 500, each }: { step?: number; each?: (t: number) => Promise<void> } = {},
): Promise<number | null> {
  for (let t = from, i = 0; t <= to; t += step, i++) {
    at(t);
    if (each) await each(t);
    await fireDue(streamStub(s));
    if ((await viewer(s, edge, `${tag}${String(i).padStart(5, "0")}`)).body.code === 0) return t;
  }
  return null;
}

/** The server as GET /admin/servers lists it (undefined: not listed). */
export async function serverListed(edge: Edge) {
  return (await admin("GET", "/servers")).body.servers.find((s: any) => s.serverId === edge.server);
}

/** Runs the server's registry shard alarm until every notice to streams is delivered. */
export async function deliverNotices(edge: Edge) {
  for (let i = 0; i < 100 && ((await serverListed(edge))?.pendingNotices ?? 0) > 0; i++) await runDurableObjectAlarm(serverStub(edge));
}

/** Errors shaped as the platform throws them from a Durable Object call (src/platform/retry.ts). */
export const retryable = () => Object.assign(new Error("Network connection lost."), { retryable: true });
export const overloaded = () => Object.assign(new Error("Durable Object is overloaded. Too many requests queued."), { overloaded: true });

/** While `down`, the viewer shard of `edge` fails the stream's recalls as overloaded: a shard a push cannot reach. */
export function recallsFailOn(edge: Edge): { down: boolean } {
  const state = { down: true };
  const real = ViewerShard.prototype.recall;
  vi.spyOn(ViewerShard.prototype, "recall").mockImplementation(async function (this: ViewerShard, ...args: Parameters<ViewerShard["recall"]>) {
    if (state.down && (this as any).serverId === edge.server) throw overloaded();
    return real.apply(this, args);
  });
  return state;
}

/**
 * For the whole file: Date is faked and set to T0 before each test; mocks and
 * the real clock are restored after it.
 */
export function useFakeClock(): void {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["Date"] });
    at(0);
  });
  afterEach(() => {
    vi.restoreAllMocks();
    vi.useRealTimers();
  });
}

/** Two SRS edges, new for each test of a file that calls twoEdgesOnTheFakeClock(). */
export let edge: Edge;
export let other: Edge;

/** For the whole file: the fake clock (useFakeClock), and `edge` and `other` new before each test. */
export function twoEdgesOnTheFakeClock(): void {
  useFakeClock();
  beforeEach(() => {
    edge = newEdge();
    other = newEdge();
  });
}

/** For one test: Date is faked at T0 (alarms run only when the test runs them), real again after it. */
export function futureClock(): void {
  vi.useFakeTimers({ toFake: ["Date"] });
  vi.setSystemTime(T0);
  onTestFinished(() => {
    vi.useRealTimers();
  });
}

export const MIN = 60_000;
export const HOUR = 60 * MIN;
/** T0 + ms as the admin API writes times. */
export const iso = (ms: number) => new Date(T0 + ms).toISOString();

/** GET /admin/streams/live/{stream}/usage{query}: its body (the status must be 200). */
export async function usage(stream: string, query = "") {
  const res = await admin("GET", `/streams/live/${stream}/usage${query}`);
  expect(res.status).toBe(200);
  return res.body;
}

/** The stream's peak viewers per hour in [T0 + from, T0 + to), keyed by hours since T0. */
export const hourPeaks = async (stream: string, from: number, to: number) =>
  Object.fromEntries((await usage(stream, `?from=${iso(from)}&to=${iso(to)}`)).buckets.map((b: any) => [(Date.parse(b.start) - T0) / HOUR, b.peakViewers]));

/** The stream's peak viewers per minute in [T0 + from, T0 + to). */
export const minutePeaks = async (stream: string, from: number, to: number) =>
  (await usage(stream, `?resolution=minute&from=${iso(from)}&to=${iso(to)}`)).buckets.map((b: any) => b.peakViewers);

/** The bucket of a usage answer that starts at T0 + ms. */
export const bucket = (body: any, ms: number) => body.buckets.find((b: any) => b.start === iso(ms));

/** A usage answer's peakViewers and viewerSeconds, bucket by bucket. */
export const peaksOf = (body: any): number[] => body.buckets.map((b: any) => b.peakViewers);
export const secondsOf = (body: any): number[] => body.buckets.map((b: any) => b.viewerSeconds);

/** `fresh` (a restart of `edge`) heartbeats: the restart is complete, and the registry's notices of it are delivered. */
export async function restartDone(edge: Edge, fresh: Edge): Promise<void> {
  await beat(fresh);
  await deliverNotices(edge);
}

/** The viewer-seconds of a usage answer, summed over its buckets. */
export const viewerSecondsIn = (body: any): number => body.buckets.reduce((sum: number, b: any) => sum + b.viewerSeconds, 0);

/** Heartbeats of `edge` every `step` ms in [from, to] on the fake clock (the registry's alarm is never run: no silence). */
export async function beatsEvery(edge: Edge, from: number, to: number, step = 10 * MIN): Promise<void> {
  for (let t = from; t <= to; t += step) {
    at(t);
    await beat(edge);
  }
}

/** A new stream (no cap) watched by `clients` on a heartbeating new edge, from the fake clock's now. */
export async function watchedBy(clients: string[]): Promise<{ edge: Edge; s: string }> {
  const edge = newEdge();
  const s = uniqueStream();
  await createStream(s);
  await beat(edge);
  for (const client of clients) expect(await playOn(s, edge, client)).toEqual(ALLOW);
  return { edge, s };
}

/** The code of a refusal at the viewer cap. */
export const CAP = 4005;
/** An on_play / on_stop of `client` on `edge` for live/{s}: the gate's answer. */
export const playOn = (s: string, edge: Edge, client: string) => hook(play("live", s, { ...edge, client }));
export const stopOn = (s: string, edge: Edge, client: string) => hook(stopPlay("live", s, { ...edge, client }));

/** A new stream capped at one viewer: v1 on `edge` holds the slot, v2 is refused for the cap. */
export async function fullStream(edge: Edge): Promise<string> {
  const s = uniqueStream();
  await createStream(s, { maxViewers: 1 });
  expect(await playOn(s, edge, "v1")).toEqual(ALLOW);
  expect((await playOn(s, edge, "v2")).body.code).toBe(CAP);
  return s;
}

/** A stream's decision log, newest first. */
export async function events(stream: string): Promise<any[]> {
  return (await admin("GET", `/streams/live/${stream}/events`)).body.events;
}

/**
 * Holds (inside the object) the first call of `method` whose arguments match `which`, until released
 * (at the latest when the test ends), then runs the real method; `calls` counts the matching calls,
 * `done` says the held one has run. Flags, not promises: a promise made here cannot be awaited inside
 * a Durable Object ("Cannot perform I/O on behalf of a different Durable Object").
 */
export function holdMatching<T extends object>(proto: T, method: keyof T & string, which: (self: any, args: any[]) => boolean) {
  const real = (proto as any)[method];
  const state = { reached: false, released: false, done: false, calls: 0 };
  onTestFinished(() => void (state.released = true));
  vi.spyOn(proto as any, method).mockImplementation(async function (this: unknown, ...args: unknown[]) {
    if (!which(this, args)) return real.apply(this, args);
    state.calls++;
    if (state.reached) return real.apply(this, args);
    state.reached = true;
    return heldRun(state, () => real.apply(this, args));
  });
  return state;
}

/** Waits until `state.released`, then runs `run`; `state.done` once it has. */
async function heldRun<T>(state: { released: boolean; done: boolean }, run: () => Promise<T>): Promise<T> {
  while (!state.released) await scheduler.wait(5);
  try {
    return await run();
  } finally {
    state.done = true;
  }
}

/** Holds the first call of `method` until released; later calls run at once. `done`: the held call has run since. */
export function holdFirst<T extends object>(proto: T, method: keyof T & string): { release: () => void; reached: () => boolean; done: () => boolean } {
  const state = holdMatching(proto, method, () => true);
  return { release: () => void (state.released = true), reached: () => state.reached, done: () => state.done };
}

/**
 * A namespace for the Worker (hookWith) whose first call of `method` is held on the way, before it
 * reaches the object: a late attempt in the network. Released, it is sent to a fresh stub.
 */
export function heldOnTheWay<N extends DurableObjectNamespace<any>>(ns: N, method: string) {
  const gate = { released: false, reached: false, done: null as Promise<any> | null };
  onTestFinished(() => void (gate.released = true));
  const stubFor = (id: DurableObjectId) =>
    new Proxy((ns as any).get(id), {
      get(t, prop) {
        if (prop === method && !gate.reached) {
          return (...args: unknown[]) => {
            gate.reached = true;
            gate.done = (async () => {
              while (!gate.released) await scheduler.wait(5);
              return (ns as any).get(id)[method](...args);
            })();
            gate.done.catch(() => {});
            return gate.done;
          };
        }
        // Everything else straight to the real stub (an RPC stub's methods cannot be bound: .bind is a remote name).
        if (typeof prop === "string" && prop !== "then") return (...args: unknown[]) => t[prop](...args);
        return Reflect.get(t, prop);
      },
    });
  const proxy = new Proxy(ns as any, {
    get(t, prop) {
      if (prop === "get") return stubFor;
      const v = Reflect.get(t, prop);
      return typeof v === "function" ? v.bind(t) : v;
    },
  }) as N;
  return { proxy, gate };
}

/** A heartbeating edge (the clock faked) whose client enc00001 publishes a new stream. */
export async function publishingEdge() {
  futureClock();
  const edge = newEdge();
  expect(await beat(edge)).toEqual(ALLOW);
  const s = uniqueStream();
  const key = await createStream(s);
  expect(await hook(publish("live", s, key, { ...edge, client: "enc00001" }))).toEqual(ALLOW);
  return { edge, s, key };
}

/** A heartbeating edge (the clock faked) whose client view0001 watches a new stream capped at 5. */
export async function viewingEdge(edge = newEdge()) {
  futureClock();
  expect(await beat(edge)).toEqual(ALLOW);
  const s = uniqueStream();
  await createStream(s, { maxViewers: 5 });
  expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
  return { edge, s };
}

/** Polls `ok` in real time, up to 10 s (vi.waitFor would move a faked Date while it waits). */
export async function until(ok: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (await ok()) return;
    await scheduler.wait(10);
  }
  throw new Error("condition not reached in 10 s");
}

/** Runs `send` (a hook) with a hook deadline of `ms` instead of HOOK_DEADLINE_MS (an undo still gets UNDO_WAIT_MS). */
export async function withDeadline<T>(ms: number, send: () => Promise<T>): Promise<T> {
  const usual = Deadline.hookMs;
  Deadline.hookMs = ms;
  try {
    return await send();
  } finally {
    Deadline.hookMs = usual;
  }
}

/** Sets ServerRegistry.noticeTimeoutMs (how long a notice's delivery may take) for one test. */
export function withNoticeTimeout(ms: number): void {
  const usual = ServerRegistry.noticeTimeoutMs;
  ServerRegistry.noticeTimeoutMs = ms;
  onTestFinished(() => void (ServerRegistry.noticeTimeoutMs = usual));
}

/** Tracks of `serverId`, numbered from 1: `fate(n)` says whether the n-th fails (overloaded), is held, or runs. */
export function tracksOf(serverId: string, fate: (n: number) => "fail" | "hold" | "run") {
  const real = ServerRegistry.prototype.track;
  const state = { n: 0, released: false, held: false, done: false };
  onTestFinished(() => void (state.released = true));
  vi.spyOn(ServerRegistry.prototype, "track").mockImplementation(async function (this: ServerRegistry, ...args: Parameters<ServerRegistry["track"]>) {
    if (args[0] !== serverId) return real.apply(this, args);
    const f = fate(++state.n);
    if (f === "fail") throw overloaded();
    if (f === "hold") {
      state.held = true;
      return heldRun(state, () => real.apply(this, args));
    }
    return real.apply(this, args);
  });
  return state;
}

/**
 * A takeover (test/fake-srs.ts takeoverReady) that must have done nothing lasting: once the old edge's API
 * has no call in flight, its publisher enc00001 was not kicked and keeps the stream, and the new edge b
 * holds no index entry.
 */
export async function expectNoTakeover({ a, b, s }: Awaited<ReturnType<typeof takeoverReady>>): Promise<void> {
  await until(() => a.fake.inFlight === 0);
  expect(kickedOn(a.fake, "enc00001")).toBe(false);
  expect((await streamState(s)).publisher).toMatchObject({ clientId: "enc00001", state: "live" });
  await until(async () => (await serverListed(b.edge)).sessions === 0);
}

/** A promise the test opens by hand. */
export function gate(): { wait: Promise<void>; open: () => void } {
  let open!: () => void;
  const wait = new Promise<void>((r) => (open = r));
  return { wait, open };
}

/** A viewer `client` of live/`s` on `edge`: its on_play, and its on_stop. */
export const viewer = (s: string, edge: Edge, client: string) => hook(play("live", s, { ...edge, client }));
export const viewerStop = (s: string, edge: Edge, client: string) => hook(stopPlay("live", s, { ...edge, client }));

/**
 * A stream capped at `servers` (fake clock from 0), one viewer on each of `servers` edges (`holders`), each
 * answered while the stream still had slots free; `watching` lists them oldest first, `client()` makes fresh ids.
 */
export async function fullOverManyServers(servers: number) {
  const s = await streamAtZero({ maxViewers: servers });
  const holders = Array.from({ length: servers }, () => newEdge());
  let n = 0;
  const client = () => `v${String(n++).padStart(7, "0")}`;
  const watching: [Edge, string][] = [];
  for (const e of holders) {
    const c = client();
    expect((await viewer(s, e, c)).body.code).toBe(0);
    watching.push([e, c]);
  }
  return { s, holders, client, watching };
}

/**
 * Counts the calls of `method` on every object of `proto`'s class from now on (the method still runs), only those
 * whose arguments match `which` if given: `n` once a call has entered the method (the method runs synchronously up
 * to its first await before the count can be read), `done` once it has returned or thrown.
 */
export function countCalls<T extends object>(proto: T, method: keyof T & string, which?: (self: any, args: any[]) => boolean): { n: number; done: number } {
  const count = { n: 0, done: 0 };
  const real = (proto as any)[method];
  const spy = vi.spyOn(proto as any, method);
  // Gone when the test ends, in files that do not restore their mocks (a second count would wrap this one).
  onTestFinished(() => spy.mockRestore());
  spy.mockImplementation(async function (this: unknown, ...args: unknown[]) {
    if (which && !which(this, args)) return real.apply(this, args);
    count.n++;
    try {
      return await real.apply(this, args);
    } finally {
      count.done++;
    }
  });
  return count;
}

/** Counts the recalls the viewer shards answer from now on (the stream's calls of them). */
export const countRecalls = () => countCalls(ViewerShard.prototype, "recall");

/**
 * maxViewers 3 (fake clock from 0, after a refusal at a cap of 1, so a round with checks just ran): edge `a` watches
 * with a0000001 and a0000003, and was told last, by its give-back of a0000004's slot, that the stream is not tight
 * (it keeps the next slots its viewers free, unseen by the stream); one slot is free at the stream; `b` is a new edge.
 */
export async function aNotTight() {
  const s = await streamAtZero({ maxViewers: 1 });
  const [a, b] = [newEdge(), newEdge()];
  expect(await viewer(s, a, "a0000001")).toEqual(ALLOW);
  expect((await viewer(s, a, "a0000002")).body.code).toBe(4005);
  expect((await admin("PUT", `/streams/live/${s}`, { maxViewers: 3 })).status).toBe(200);
  expect(await viewer(s, a, "a0000003")).toEqual(ALLOW);
  expect(await viewer(s, a, "a0000004")).toEqual(ALLOW);
  expect(await viewerStop(s, a, "a0000004")).toEqual(ALLOW);
  return { s, a, b };
}
