/**
 * Model-based property test: random interleavings of SRS hooks, heartbeats,
 * restarts (new service_id) and silences across several servers and streams,
 * run against the Worker in workerd and against a small reference model of
 * the rules below. After every step the admin API's state must equal the
 * model's, and every hook's answer must be the model's answer.
 */
import { env } from "cloudflare:workers";
import { runDurableObjectAlarm } from "cloudflare:test";
import fc from "fast-check";
import { afterEach, describe, expect, it, vi } from "vitest";
import { serverRegistry } from "../src/stubs";
import { close, createStream, heartbeat, hook, play, publish, stopPlay, streamState, unpublish } from "./srs";

const TIMEOUT_MS = 30_000; // SERVER_TIMEOUT_S in wrangler.toml
const SERVERS = 3;
const CLIENTS = 3;
const STREAMS = 2;

type Op =
  | { t: "publish"; server: number; client: number; stream: number; goodKey: boolean }
  | { t: "unpublish" | "play" | "stop"; server: number; client: number; stream: number }
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
  /** The service_id the gate believes current (null: never heard from). */
  known: string | null;
  retired: Set<string>;
  lastHeartbeat: number | null;
  declaredDead: boolean;
}

interface ModelStream {
  name: string;
  key: string;
  cap: number | null;
  publisher: Session | null;
  viewers: Session[];
}

type Answer = { allow: true } | { allow: false; code: number };

const same = (a: Session, b: Session) => a.server === b.server && a.service === b.service && a.client === b.client;

class Model {
  now = 0;
  constructor(
    public servers: ModelServer[],
    public streams: ModelStream[],
  ) {}

  private dead(s: ModelServer): boolean {
    return s.lastHeartbeat !== null && (s.declaredDead || this.now - s.lastHeartbeat >= TIMEOUT_MS);
  }

  private endProcess(serverId: string, service: string | null, only?: ModelStream): void {
    for (const st of only ? [only] : this.streams) {
      const of = (x: Session) => x.server === serverId && (service === null || x.service === service);
      if (st.publisher && of(st.publisher)) st.publisher = null;
      st.viewers = st.viewers.filter((v) => !of(v));
    }
  }

  /** Every message from a server: restart fencing and revival. Returns false for a replaced process. */
  private observe(s: ModelServer, service: string): boolean {
    if (s.known === null) s.known = service;
    else if (service !== s.known) {
      if (s.retired.has(service)) return false;
      s.retired.add(s.known);
      this.endProcess(s.id, s.known);
      s.known = service;
    }
    if (this.dead(s)) {
      s.declaredDead = false;
      s.lastHeartbeat = this.now;
    }
    return true;
  }

  /** Liveness as a denial checks it: sessions of dead or replaced processes are ended on that stream. */
  private pruneStale(st: ModelStream, sessions: Session[]): void {
    for (const x of sessions) {
      const s = this.servers.find((y) => y.id === x.server)!;
      if (this.dead(s) || x.service !== s.known) this.endProcess(x.server, x.service, st);
    }
  }

  publish(s: ModelServer, session: Session, st: ModelStream, goodKey: boolean): Answer {
    if (!this.observe(s, session.service)) return { allow: false, code: 4006 };
    if (st.publisher && same(st.publisher, session)) return { allow: true };
    if (!goodKey) return { allow: false, code: 4003 };
    if (st.publisher) this.pruneStale(st, [st.publisher]);
    if (st.publisher) return { allow: false, code: 4004 };
    st.publisher = session;
    return { allow: true };
  }

  play(s: ModelServer, session: Session, st: ModelStream): Answer {
    if (!this.observe(s, session.service)) return { allow: false, code: 4006 };
    if (st.viewers.some((v) => same(v, session))) return { allow: true };
    if (st.cap !== null && st.viewers.length >= st.cap) this.pruneStale(st, [...st.viewers]);
    if (st.cap !== null && st.viewers.length >= st.cap) return { allow: false, code: 4005 };
    st.viewers.push(session);
    return { allow: true };
  }

  end(s: ModelServer, session: Session, st: ModelStream | null, role: "publisher" | "viewer" | null): Answer {
    this.observe(s, session.service);
    for (const x of st ? [st] : this.streams) {
      if (role !== "viewer" && x.publisher && same(x.publisher, session)) x.publisher = null;
      if (role !== "publisher") x.viewers = x.viewers.filter((v) => !same(v, session));
    }
    return { allow: true };
  }

  heartbeat(s: ModelServer): void {
    if (!this.observe(s, s.processes.at(-1)!)) return;
    s.lastHeartbeat = this.now;
  }

  /** What the alarms do: servers silent past the timeout are declared dead, their sessions end. */
  settle(): void {
    for (const s of this.servers) {
      if (this.dead(s)) {
        s.declaredDead = true;
        this.endProcess(s.id, null);
      }
    }
  }
}

// --- running a sequence against the Worker -----------------------------------------------

let run = 0;

async function runSequence(ops: Op[], caps: (number | null)[]): Promise<void> {
  run++;
  const t0 = Date.parse("2026-11-25T12:00:00Z");
  vi.setSystemTime(t0);
  const streams: ModelStream[] = [];
  for (let i = 0; i < STREAMS; i++) {
    const name = `model-${run}-${i}-${crypto.randomUUID().slice(0, 6)}`;
    streams.push({ name, key: await createStream(name, { maxViewers: caps[i] }), cap: caps[i], publisher: null, viewers: [] });
  }
  const servers: ModelServer[] = Array.from({ length: SERVERS }, (_, i) => ({
    id: `vid-m${run}x${i}`,
    processes: [`svc${run}x${i}a`],
    known: null,
    retired: new Set(),
    lastHeartbeat: null,
    declaredDead: false,
  }));
  const model = new Model(servers, streams);
  let ipCounter = 0;
  const who = (s: ModelServer, c: number) => ({ server: s.id, service: s.processes.at(-1)!, client: `c${c}` });
  const session = (s: ModelServer, c: number): Session => ({ server: s.id, service: s.processes.at(-1)!, client: `c${c}` });
  // A fresh client ip per hook keeps the brute-force limit (tested on its own) out of the model.
  const fresh = (body: Record<string, unknown>) => ({ ...body, ip: `2001:db8::${(++ipCounter).toString(16)}` });

  for (const [step, o] of ops.entries()) {
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
      for (const s of servers) await runDurableObjectAlarm(serverRegistry(env, s.id));
      for (const st of streams) await runDurableObjectAlarm(env.STREAM.get(env.STREAM.idFromName(`__defaultVhost__/live/${st.name}`)));
      model.settle();
    }

    const where = `step ${step} ${JSON.stringify(o)}`;
    if (got && expected) {
      expect(got.status, where).toBe(expected.allow ? 200 : 403);
      if (!expected.allow) expect(got.body.code, where).toBe(expected.code);
    }
    for (const st of streams) {
      const state = await streamState(st.name);
      const publisher = state.publisher && { server: state.publisher.serverId, service: state.publisher.serviceId, client: state.publisher.clientId };
      expect({ publisher, viewers: state.viewers }, `${where}: ${st.name}`).toEqual({ publisher: st.publisher, viewers: st.viewers.length });
      expect(state.live, where).toBe(st.publisher !== null);
      expect(state.viewers, where).toBeGreaterThanOrEqual(0);
      if (st.cap !== null) expect(state.viewers, `${where}: admitted viewers never exceed the cap`).toBeLessThanOrEqual(st.cap);
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
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 30 }), fc.array(fc.constantFrom(null, 1, 2), { minLength: STREAMS, maxLength: STREAMS }), runSequence),
      { numRuns: 40 },
    );
  }, 240_000);
});
