/**
 * Model-based property test: random interleavings of SRS hooks, heartbeats,
 * restarts (new service_id) and silences across several servers and streams,
 * run against the Worker in workerd and against a small reference model of
 * the rules below. Every hook's answer must be the model's answer at every
 * step; once the alarms have run (settle), the admin API's state must equal
 * the model's: holder, suspended and counted sessions, per stream and per
 * viewer shard (each server's viewers are admitted by its own shard, within
 * leases of slots from the stream: src/viewers/lease.ts). At every step, the
 * viewers that count plus the slots leased but unused never exceed the cap
 * (unless a heal brought back more connected viewers than it: then no slot
 * is left unused), which is the leases' invariant.
 */
import { env } from "cloudflare:workers";
import { runDurableObjectAlarm } from "cloudflare:test";
import fc from "fast-check";
import { afterEach, describe, expect, it, vi } from "vitest";
import { serverRegistry, viewerShard } from "../src/object-access";
import { admin, close, createStream, heartbeat, hook, play, publish, stopPlay, streamState, unpublish } from "./srs";

const TIMEOUT_MS = 30_000; // SERVER_TIMEOUT_S in wrangler.toml
const SERVERS = 3;
const CLIENTS = 3;
const STREAMS = 2;

type Op =
  | { t: "publish"; server: number; client: number; stream: number; goodKey: boolean }
  | { t: "unpublish" | "play" | "stop"; server: number; client: number; stream: number }
  /** A start hook from a process of the server never heard of: a late hook of an older process, or a forgery. */
  | { t: "ghost"; server: number; client: number; stream: number }
  | { t: "close"; server: number; client: number }
  | { t: "heartbeat" | "restart"; server: number }
  | { t: "silence"; ms: number }
  | { t: "settle" };

const server = fc.integer({ min: 0, max: SERVERS - 1 });
const client = fc.integer({ min: 0, max: CLIENTS - 1 });
const stream = fc.integer({ min: 0, max: STREAMS - 1 });
const op: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ t: fc.constant("publish" as const), server, client, stream, goodKey: fc.boolean() }), weight: 4 },
  { arbitrary: fc.record({ t: fc.constant("unpublish" as const), server, client, stream }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant("play" as const), server, client, stream }), weight: 5 },
  { arbitrary: fc.record({ t: fc.constant("stop" as const), server, client, stream }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant("ghost" as const), server, client, stream }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant("close" as const), server, client }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant("heartbeat" as const), server }), weight: 3 },
  { arbitrary: fc.record({ t: fc.constant("restart" as const), server }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant("silence" as const), ms: fc.constantFrom(5_000, 29_000, 31_000, 61_000) }), weight: 1 },
  { arbitrary: fc.constant({ t: "settle" as const }), weight: 1 },
);

// --- the reference model ----------------------------------------------------------

interface Session {
  server: string;
  service: string;
  client: string;
}

interface ModelServer {
  id: string;
  /** Every service_id this server has run, oldest first; the last one is running. */
  processes: string[];
  /** The service_id the gate believes current (null: never heard from by a start hook or heartbeat). */
  known: string | null;
  retired: Set<string>;
  /** Start hooks from unseen processes while the current one heartbeats: service → when first heard. */
  candidates: Map<string, number>;
  lastHeartbeat: number | null;
}

interface ModelStream {
  name: string;
  key: string;
  cap: number | null;
  /** Publisher sessions that received no stop event, in order of admission. */
  publishers: Session[];
  viewers: Session[];
}

type Answer = { allow: true } | { allow: false; code: number };

const same = (a: Session, b: Session) => a.server === b.server && a.service === b.service && a.client === b.client;

/**
 * The rules of issue 10: a silent server's sessions are suspended (they
 * neither count nor block) and come back when the same process is heard from
 * again; only a stop event or a restart (new service_id from a start hook or
 * heartbeat) ends them. On a server that heartbeats, a start hook from an
 * unseen process is only a candidate (admitted, counted) until its own first
 * heartbeat, and is refused once the current process heartbeated for a whole
 * SERVER_TIMEOUT_S after it appeared. One live publisher holds the
 * stream; the others live are conflicts.
 */
class Model {
  now = 0;
  constructor(
    public servers: ModelServer[],
    public streams: ModelStream[],
  ) {}

  private server(id: string): ModelServer {
    return this.servers.find((s) => s.id === id)!;
  }

  silent(s: ModelServer): boolean {
    return s.lastHeartbeat !== null && this.now - s.lastHeartbeat >= TIMEOUT_MS;
  }

  suspended(x: Session): boolean {
    const s = this.server(x.server);
    return !s.candidates.has(x.service) && this.silent(s);
  }

  private endProcess(serverId: string, service: string): void {
    for (const st of this.streams) {
      const of = (x: Session) => x.server === serverId && x.service === service;
      st.publishers = st.publishers.filter((p) => !of(p));
      st.viewers = st.viewers.filter((v) => !of(v));
    }
  }

  /** A start hook or heartbeat: may move the epoch (restart), brings a silent server back. False for a replaced process. */
  private observeStart(s: ModelServer, service: string, kind: "start" | "heartbeat"): boolean {
    if (s.known === null) s.known = service;
    else if (service !== s.known) {
      if (s.retired.has(service)) return false;
      if (kind === "start" && s.lastHeartbeat !== null) {
        if (!s.candidates.has(service)) s.candidates.set(service, this.now);
        return true;
      }
      this.restart(s, service);
      return true;
    }
    if (this.silent(s)) s.lastHeartbeat = this.now;
    return true;
  }

  private restart(s: ModelServer, service: string): void {
    for (const old of [s.known!, ...[...s.candidates.keys()].filter((c) => c !== service)]) {
      s.retired.add(old);
      this.endProcess(s.id, old);
    }
    s.candidates.clear();
    s.known = service;
    if (this.silent(s)) s.lastHeartbeat = this.now;
  }

  /** What the registry's alarm does about candidates: refused once the current process heartbeated a whole timeout past them. */
  settle(): void {
    for (const s of this.servers) {
      for (const [c, since] of [...s.candidates]) {
        if (this.now - since < TIMEOUT_MS || this.silent(s)) continue;
        s.candidates.delete(c);
        s.retired.add(c);
        this.endProcess(s.id, c);
      }
    }
  }

  /** A stop or close event: never moves the epoch; the current process's message brings its server back. */
  private observeStop(s: ModelServer, service: string): void {
    if (s.known === service && this.silent(s)) s.lastHeartbeat = this.now;
  }

  counted(st: ModelStream): number {
    return st.viewers.filter((v) => !this.suspended(v)).length;
  }

  publish(s: ModelServer, session: Session, st: ModelStream, goodKey: boolean): Answer {
    if (!this.observeStart(s, session.service, "start")) return { allow: false, code: 4006 };
    if (st.publishers.some((p) => same(p, session))) return { allow: true };
    if (!goodKey) return { allow: false, code: 4003 };
    if (st.publishers.some((p) => !this.suspended(p))) return { allow: false, code: 4004 };
    st.publishers.push(session);
    return { allow: true };
  }

  play(s: ModelServer, session: Session, st: ModelStream): Answer {
    if (!this.observeStart(s, session.service, "start")) return { allow: false, code: 4006 };
    if (st.viewers.some((v) => same(v, session))) return { allow: true };
    if (st.cap !== null && this.counted(st) >= st.cap) return { allow: false, code: 4005 };
    st.viewers.push(session);
    return { allow: true };
  }

  end(s: ModelServer, session: Session, st: ModelStream | null, role: "publisher" | "viewer" | null): Answer {
    this.observeStop(s, session.service);
    for (const x of st ? [st] : this.streams) {
      if (role !== "viewer") x.publishers = x.publishers.filter((p) => !same(p, session));
      if (role !== "publisher") x.viewers = x.viewers.filter((v) => !same(v, session));
    }
    return { allow: true };
  }

  heartbeat(s: ModelServer): void {
    if (!this.observeStart(s, s.processes.at(-1)!, "heartbeat")) return;
    s.lastHeartbeat = this.now;
  }
}

// --- running a sequence against the Worker -----------------------------------------------

let run = 0;

async function runSequence(ops: Op[], caps: (number | null)[]): Promise<void> {
  run++;
  const t0 = Date.parse("2031-03-01T12:00:00Z"); // in the future: alarms run only when the sequence settles
  vi.setSystemTime(t0);
  const streams: ModelStream[] = [];
  for (let i = 0; i < STREAMS; i++) {
    const name = `model-${run}-${i}-${crypto.randomUUID().slice(0, 6)}`;
    streams.push({ name, key: await createStream(name, { maxViewers: caps[i] }), cap: caps[i], publishers: [], viewers: [] });
  }
  const servers: ModelServer[] = Array.from({ length: SERVERS }, (_, i) => ({
    id: `vid-m${run}x${i}`,
    processes: [`svc${run}x${i}a`],
    known: null,
    retired: new Set(),
    candidates: new Map(),
    lastHeartbeat: null,
  }));
  const model = new Model(servers, streams);
  let ipCounter = 0;
  const who = (s: ModelServer, c: number) => ({ server: s.id, service: s.processes.at(-1)!, client: `c${c}` });
  const session = (s: ModelServer, c: number): Session => ({ server: s.id, service: s.processes.at(-1)!, client: `c${c}` });
  // A fresh client ip per hook keeps the brute-force limit (tested on its own) out of the model.
  const fresh = (body: Record<string, unknown>) => ({ ...body, ip: `2001:db8::${(++ipCounter).toString(16)}` });

  for (const [step, o] of [...ops, { t: "settle" } as Op].entries()) {
    let expected: Answer | null = null;
    let got: { status: number; body: any } | null = null;
    if (o.t === "publish") {
      const [s, st] = [servers[o.server], streams[o.stream]];
      got = await hook(fresh(publish("live", st.name, o.goodKey ? st.key : "wrong-key", who(s, o.client))));
      expected = model.publish(s, session(s, o.client), st, o.goodKey);
    } else if (o.t === "play") {
      const [s, st] = [servers[o.server], streams[o.stream]];
      got = await hook(fresh(play("live", st.name, who(s, o.client))));
      expected = model.play(s, session(s, o.client), st);
    } else if (o.t === "ghost") {
      const [s, st] = [servers[o.server], streams[o.stream]];
      const ghost = { server: s.id, service: `ghost${run}x${step}`, client: `c${o.client}` };
      got = await hook(fresh(play("live", st.name, ghost)));
      expected = model.play(s, ghost, st);
    } else if (o.t === "unpublish" || o.t === "stop") {
      const s = servers[o.server];
      const st = streams[o.stream];
      const body = o.t === "unpublish" ? unpublish("live", st.name, who(s, o.client)) : stopPlay("live", st.name, who(s, o.client));
      got = await hook(fresh(body));
      expected = model.end(s, session(s, o.client), st, o.t === "unpublish" ? "publisher" : "viewer");
    } else if (o.t === "close") {
      const s = servers[o.server];
      got = await hook(close(who(s, o.client)));
      expected = model.end(s, session(s, o.client), null, null);
    } else if (o.t === "heartbeat") {
      const s = servers[o.server];
      got = await hook(heartbeat({ server: s.id, service: s.processes.at(-1)! }), undefined, "/heartbeat");
      model.heartbeat(s);
      expected = { allow: true };
    } else if (o.t === "restart") {
      const s = servers[o.server];
      s.processes.push(`svc${run}x${o.server}${String.fromCharCode(97 + s.processes.length)}`);
    } else if (o.t === "silence") {
      model.now += o.ms;
      vi.setSystemTime(t0 + model.now);
    } else {
      // Every alarm runs: registry shards suspend silent servers and deliver their notices; streams sweep.
      for (const s of servers) {
        for (let i = 0; i < 20; i++) {
          await runDurableObjectAlarm(serverRegistry(env, s.id));
          const listed = (await admin("GET", "/servers")).body.servers.find((x: any) => x.serverId === s.id);
          if (!listed || listed.pendingNotices === 0) break;
        }
      }
      for (const st of streams) await runDurableObjectAlarm(env.STREAM.get(env.STREAM.idFromName(`__defaultVhost__/live/${st.name}`)));
      for (const s of servers) await runDurableObjectAlarm(viewerShard(env, s.id));
      model.settle();
      // Candidates the alarm refused leave notices behind: deliver them too.
      for (const s of servers) {
        for (let i = 0; i < 20; i++) {
          const listed = (await admin("GET", "/servers")).body.servers.find((x: any) => x.serverId === s.id);
          if (!listed || listed.pendingNotices === 0) break;
          await runDurableObjectAlarm(serverRegistry(env, s.id));
        }
      }
    }

    const where = `step ${step} ${JSON.stringify(o)}`;
    if (got && expected) {
      expect(got.status, where).toBe(expected.allow ? 200 : 403);
      if (!expected.allow) expect(got.body.code, where).toBe(expected.code);
    }
    for (const st of streams) {
      const state = await streamState(st.name);
      const view = (p: any) => ({ server: p.serverId, service: p.serviceId, client: p.clientId });
      // The notices of restarts and silences reach the streams by alarms: the full state agrees once they ran.
      if (o.t === "settle") {
        const live = st.publishers.filter((p) => !model.suspended(p));
        const suspended = st.publishers.filter((p) => model.suspended(p));
        const states = [state.publisher, ...state.conflicts].filter(Boolean);
        const key = (p: Session) => `${p.server}/${p.service}/${p.client}`;
        const seen = (wanted: string[]) => states.filter((p: any) => wanted.includes(p.state)).map((p: any) => key(view(p))).sort();
        // Which live publisher holds the stream depends on the order the stream learned of returns; one does.
        expect(seen(["live", "conflict"]), `${where}: ${st.name} live publishers`).toEqual(live.map(key).sort());
        expect(seen(["suspended"]), `${where}: ${st.name} suspended publishers`).toEqual(suspended.map(key).sort());
        expect(state.live, `${where}: ${st.name} live`).toBe(live.length > 0);
        if (live.length > 0) expect(state.publisher.state, where).toBe("live");
        expect({ viewers: state.viewers, suspendedViewers: state.suspendedViewers }, `${where}: ${st.name}`).toEqual({
          viewers: model.counted(st),
          suspendedViewers: st.viewers.length - model.counted(st),
        });
        // Per shard (one per server): the admin API's totals are the sum of what each shard holds.
        const perServer = (count: (v: Session) => boolean) =>
          Object.fromEntries(servers.map((x) => [x.id, st.viewers.filter((v) => v.server === x.id && count(v)).length]).filter(([, n]) => n !== 0));
        const shown = (field: "viewers" | "suspendedViewers") =>
          Object.fromEntries(state.shards.map((x: any) => [x.serverId, x[field]]).filter(([, n]: [string, number]) => n !== 0));
        expect(shown("viewers"), `${where}: ${st.name} viewers per shard`).toEqual(perServer((v) => !model.suspended(v)));
        expect(shown("suspendedViewers"), `${where}: ${st.name} suspended viewers per shard`).toEqual(perServer((v) => model.suspended(v)));
      }
      if (st.cap !== null) {
        // The leases' invariant: admitted viewers plus unused leased slots stay within the cap.
        expect(state.viewers + state.leasedUnused, `${where}: ${st.name} viewers + unused leased slots`).toBeLessThanOrEqual(Math.max(st.cap, state.viewers));
        expect(state.leasedUnused, `${where}: ${st.name}`).toBeGreaterThanOrEqual(0);
      }
      // At every step: at most one publisher holds the stream.
      expect([state.publisher, ...state.conflicts].filter((p) => p?.state === "live").length, where).toBeLessThanOrEqual(1);
      expect(state.viewers, where).toBeGreaterThanOrEqual(0);
    }
  }
}

describe("the rules hold for every sequence of hooks, restarts and silences", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("the admin API always reports what the reference model says, and every hook gets the model's answer", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 30 }), fc.array(fc.constantFrom(null, 1, 2, 3, 5), { minLength: STREAMS, maxLength: STREAMS }), runSequence),
      {
        numRuns: 40,
        examples: [
          // From a review: a forged candidate and the real restart's candidate while the current process is silent.
          [
            [
              { t: "heartbeat", server: 0 },
              { t: "restart", server: 0 },
              { t: "publish", server: 0, client: 0, stream: 0, goodKey: true },
              { t: "ghost", server: 0, client: 1, stream: 0 },
              { t: "silence", ms: 31_000 },
            ],
            [null, null],
          ],
          // A restart by start hook (a server without heartbeats) frees its old process's slot for the new process's viewer.
          [
            [
              { t: "play", server: 2, client: 0, stream: 1 },
              { t: "play", server: 2, client: 1, stream: 1 },
              { t: "ghost", server: 2, client: 0, stream: 1 },
            ],
            [null, 1],
          ],
          // Leases: a shard's unused slots must come back when another shard needs them.
          [
            [
              { t: "play", server: 0, client: 0, stream: 0 },
              { t: "play", server: 1, client: 0, stream: 0 },
              { t: "play", server: 2, client: 0, stream: 0 },
              { t: "play", server: 2, client: 1, stream: 0 },
              { t: "play", server: 1, client: 1, stream: 0 },
              { t: "play", server: 2, client: 2, stream: 0 },
            ],
            [5, 3],
          ],
          // Leases and a heal: slots granted while a server's viewers were suspended do not admit past the cap once it returns.
          [
            [
              { t: "heartbeat", server: 0 },
              { t: "heartbeat", server: 1 },
              { t: "play", server: 0, client: 0, stream: 0 },
              { t: "play", server: 0, client: 1, stream: 0 },
              { t: "silence", ms: 31_000 },
              { t: "settle" },
              { t: "play", server: 1, client: 0, stream: 0 },
              { t: "play", server: 1, client: 1, stream: 0 },
              { t: "play", server: 2, client: 0, stream: 0 },
              { t: "heartbeat", server: 0 },
              { t: "play", server: 2, client: 1, stream: 0 },
              { t: "stop", server: 1, client: 0, stream: 0 },
              { t: "play", server: 2, client: 2, stream: 0 },
              { t: "settle" },
            ],
            [3, null],
          ],
        ],
      },
    );
  }, 240_000);
});
