/**
 * Model-based property test of viewer identity interleaved with operator actions: the ground between
 * test/model.test.ts (viewer identity: tokens with subs, limits, replace, revocations; no operator
 * action but policy changes) and test/model-operator.test.ts (caps, deletes, ends by hand, lost and
 * repeated hooks; open play only).
 *
 * Generated: token plays from a few viewer ids (so they collide), tokens issued at various ages (and
 * missing, expired or naming nobody), plays sent again after a lost answer, stops and closes; PUTs
 * changing maxSessionsPerViewer (null/1/2), onExtraViewerSession, maxViewers (null/0/1/2/3) and playAuth
 * mid-run; revocations by viewer, by time and both; DELETE of a stream and its creation again; ends by
 * hand (DELETE …/sessions with ?server= / ?client=, and DELETE /admin/servers/{id}/sessions); restarts
 * (a heartbeat of a new process), silences of 5 s and 31 s, heartbeats, objects evicted.
 *
 * Checked at every step against a small reference model (README is the contract):
 * (a) every hook's answer is one the model allows (allow; 4001 deleted; 4005 cap; 4010/4013 token
 *     refusals; 4016 viewer session limit; 4018 no viewer id; 4019 revoked), and which sessions a
 *     replacing play ended is one the model allows;
 * (b) each viewer shard holds exactly the model's sessions (deleted streams included: SRS keeps them);
 * (c) GET …/viewers lists exactly the model's sessions by viewer id, and anonymous ones;
 * (d) no viewer id holds more sessions than maxSessionsPerViewer, but those it held when the limit was
 *     set or lowered (README: that ends nobody);
 * (e) counted viewers + leased unused slots ≤ max(cap, viewers);
 * (f) revocations end exactly the sessions they cover (none on an open stream; those at the switch to
 *     "token"), their covered tokens are refused; GET …/revocations lists the model's;
 * (g) a deleted stream refuses (4001), its admin routes 404; created again, it has no revocations
 *     (README: they go with it) and the policy of its PUT (defaults for the rest).
 *
 * SRS_API_URL is unset (this runs in the plain "gate" project): no kicks, no ghosts.
 */
import { env } from "cloudflare:workers";
import fc from "fast-check";
import { describe, expect, it, vi } from "vitest";
import { MAX_CLOCK_SKEW_S, signPlayToken } from "../src/auth/token";
import { viewerSeats, viewerShard } from "../src/object-access";
import { WAIT_HOLD_MS } from "../src/viewers/lease";
import { admin, close, heartbeat, hook, play, stopPlay } from "./srs";
import { beatOrRestart, crash, evictQuietly, keyOf, listViewers, modelFrame, runEveryAlarm, seatsTaken } from "./model-kit";

const TIMEOUT_MS = 30_000; // SERVER_TIMEOUT_S in wrangler.toml
const ENDED_KEPT_MS = 60_000; // src/viewers/seats.ts: a session ended for a newer one is refused a seat again this long
const SERVERS = 3;
const CLIENTS = 3;
const STREAMS = 2;
const SUBS = ["alice", "bob"];
const KEY = "test-token-signing-key-32-chars-or-more"; // TOKEN_SIGNING_KEY in vitest.config.mts

type Mode = "deny" | "replace";
type Auth = "open" | "token";
/** A viewer id's token (index into SUBS), or a token naming nobody, or none, or an expired one (of alice). */
type Tok = number | "nosub" | "none" | "expired";

type Op =
  /** `retry`: SRS's answer to the first was lost, the same on_play (same token) comes again. */
  | { t: "play"; server: number; client: number; stream: number; tok: Tok; age: number; retry: boolean; pass?: boolean }
  | { t: "stop"; server: number; client: number; stream: number; twice: boolean }
  | { t: "close"; server: number; client: number }
  | { t: "heartbeat"; server: number }
  | { t: "restart"; server: number }
  | { t: "silence"; ms: number }
  | { t: "crash"; target: "shard" | "registry" | "stream" | "seats"; server: number; stream: number }
  /** PUT: fields absent (undefined) are left out of the body. */
  | { t: "put"; stream: number; maxViewers?: number | null; auth?: Auth; limit?: number | null; mode?: Mode }
  /** POST …/revocations: {"sub"} (back null), {"before": now - back}, or both. */
  | { t: "revoke"; stream: number; sub: number | null; back: number | null }
  | { t: "delete"; stream: number }
  | { t: "endStream"; stream: number; server: number | null; client: number | null }
  | { t: "endServer"; server: number }
  /**
   * Two actions at once, in no order: a token play and an operator action (a PUT of the limit, mode or cap, a
   * revocation, a DELETE, an end by hand) or a play of the same viewer id on another server. The gate's outcome
   * must be that of one order or the other (README: a viewer decided while a push arrives is checked again).
   */
  | { t: "concurrent"; server: number; client: number; stream: number; sub: number; with: With }
  | { t: "settle" };

type With =
  | { w: "put"; maxViewers?: number | null; limit?: number | null; mode?: Mode }
  | { w: "revoke"; sub: number | null; back: number | null }
  | { w: "delete" }
  | { w: "endStream"; server: number | null }
  | { w: "play"; server: number; client: number }
  /** The play's own on_stop, crossing it (the stop arrives before the play's answer). */
  | { w: "stop" };

const server = fc.integer({ min: 0, max: SERVERS - 1 });
const client = fc.integer({ min: 0, max: CLIENTS - 1 });
const stream = fc.integer({ min: 0, max: STREAMS - 1 });
const tok: fc.Arbitrary<Tok> = fc.oneof(
  { arbitrary: fc.integer({ min: 0, max: SUBS.length - 1 }), weight: 8 },
  { arbitrary: fc.constantFrom<Tok>("nosub", "none", "expired"), weight: 1 },
);
const op: fc.Arbitrary<Op> = fc.oneof(
  {
    arbitrary: fc.record(
      { t: fc.constant("play" as const), server, client, stream, tok, age: fc.constantFrom(0, 0, 0, 30, 100), retry: fc.boolean(), pass: fc.constantFrom(false, false, true) },
      { requiredKeys: ["t", "server", "client", "stream", "tok", "age", "retry"] },
    ),
    weight: 10,
  },
  { arbitrary: fc.record({ t: fc.constant("stop" as const), server, client, stream, twice: fc.boolean() }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant("close" as const), server, client }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant("heartbeat" as const), server }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant("restart" as const), server }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant("silence" as const), ms: fc.constantFrom(5_000, 31_000) }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant("crash" as const), target: fc.constantFrom<"shard" | "registry" | "stream" | "seats">("shard", "registry", "stream", "seats"), server, stream }), weight: 2 },
  {
    arbitrary: fc.record(
      {
        t: fc.constant("put" as const),
        stream,
        maxViewers: fc.constantFrom<number | null>(null, 0, 1, 2, 2, 3),
        auth: fc.constantFrom<Auth>("open", "token", "token"),
        limit: fc.constantFrom<number | null>(null, 1, 1, 2),
        mode: fc.constantFrom<Mode>("deny", "replace"),
      },
      { requiredKeys: ["t", "stream"] },
    ),
    weight: 4,
  },
  { arbitrary: fc.record({ t: fc.constant("revoke" as const), stream, sub: fc.option(fc.integer({ min: 0, max: SUBS.length - 1 }), { nil: null, freq: 3 }), back: fc.constantFrom(null, null, 0, 40) }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant("delete" as const), stream }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant("endStream" as const), stream, server: fc.option(server, { nil: null }), client: fc.option(client, { nil: null }) }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant("endServer" as const), server }), weight: 1 },
  { arbitrary: fc.constant({ t: "settle" as const }), weight: 1 },
  {
    arbitrary: fc.record({
      t: fc.constant("concurrent" as const),
      server,
      client,
      stream,
      sub: fc.integer({ min: 0, max: SUBS.length - 1 }),
      with: fc.oneof(
        fc.record(
          { w: fc.constant("put" as const), maxViewers: fc.constantFrom<number | null>(null, 1, 2), limit: fc.constantFrom<number | null>(null, 1, 2), mode: fc.constantFrom<Mode>("deny", "replace") },
          { requiredKeys: ["w"] },
        ),
        fc.record({ w: fc.constant("revoke" as const), sub: fc.option(fc.integer({ min: 0, max: SUBS.length - 1 }), { nil: null, freq: 3 }), back: fc.constantFrom(null, 0) }),
        fc.constant({ w: "delete" as const }),
        fc.record({ w: fc.constant("endStream" as const), server: fc.option(server, { nil: null }) }),
        fc.record({ w: fc.constant("play" as const), server, client }),
        fc.record({ w: fc.constant("play" as const), server, client }),
        fc.constant({ w: "stop" as const }),
      ),
    }),
    weight: 3,
  },
);

// --- the reference model ----------------------------------------------------------

interface Session {
  server: string;
  service: string;
  client: string;
}

interface Viewer extends Session {
  /** The token's viewer id (null: none, or no valid token). */
  sub: string | null;
  /** The token's issue time (Unix seconds); null without a valid token. */
  iat: number | null;
  since: number;
  /** Holds a seat (src/viewers/seats.ts): admitted under a limit, or took one when a limit was set. */
  seated: boolean;
}

interface ModelServer {
  id: string;
  processes: string[];
  lastHeartbeat: number;
}

interface ModelStream {
  name: string;
  exists: boolean;
  cap: number | null;
  auth: Auth;
  limit: number | null;
  mode: Mode;
  viewers: Viewer[];
  /** Revocations: sub ('' for every viewer) → before. */
  revocations: Map<string, number>;
  /** Per viewer id, sessions held past the limit when it was set or lowered (they may stay, and only leave). */
  grand: Map<string, Set<string>>;
  /** Sessions the seats ended for a newer one (sub and key → when): a late repeat of their on_play is refused 4016 within 60 s. */
  seatEnded: Map<string, number>;
  /** Servers whose shard was refused for the cap, and when (README "Flash crowds": it waits; see test/model-operator.test.ts). */
  waiting: Map<string, number>;
}

type Answer = { allow: true } | { allow: false; code: number };
interface Outcome {
  answer: Answer;
  admit: boolean;
  /** Keys of the model's sessions this play ends (its viewer's, for a seat). */
  ends: string[];
}
const ALLOWED: Answer = { allow: true };
const allow = (admit: boolean): Outcome => ({ answer: ALLOWED, admit, ends: [] });
const deny = (code: number): Outcome => ({ answer: { allow: false, code }, admit: false, ends: [] });

/** Every choice of `k` of `xs` (k ≥ 0), in order. */
function subsets<T>(xs: T[], k: number): T[][] {
  if (k === 0) return [[]];
  return xs.flatMap((x, i) => subsets(xs.slice(i + 1), k - 1).map((rest) => [x, ...rest]));
}

const same = (a: Session, b: Session) => a.server === b.server && a.service === b.service && a.client === b.client;

class Model {
  now = 0;
  /** A silent server was heard from again since the alarms last ran: the shards' view of suspension lags until they run. */
  backSinceSettle = false;
  /**
   * Silent servers whose play for a deleted stream may or may not have told the registry they are back (the shard
   * refuses 4001 on the policy it has: one that read it before the DELETE was pushed checks its server first): their
   * viewers may count or be suspended, until the server is heard from for sure.
   */
  maybeHeard = new Set<string>();
  constructor(
    public servers: ModelServer[],
    public streams: ModelStream[],
    public t0: number,
  ) {}

  /** A copy to try one order of concurrent actions on. */
  clone(): Model {
    const m = new Model(structuredClone(this.servers), structuredClone(this.streams), this.t0);
    m.now = this.now;
    m.backSinceSettle = this.backSinceSettle;
    m.maybeHeard = new Set(this.maybeHeard);
    return m;
  }

  /** Takes the state of `m` (a copy of this one), in place: the runner's references stay valid. */
  adopt(m: Model): void {
    m.servers.forEach((s, i) => Object.assign(this.servers[i], s));
    m.streams.forEach((st, i) => Object.assign(this.streams[i], st));
    this.now = m.now;
    this.backSinceSettle = m.backSinceSettle;
    this.maybeHeard = m.maybeHeard;
  }

  nowS(): number {
    return Math.floor((this.t0 + this.now) / 1000);
  }

  server(id: string): ModelServer {
    return this.servers.find((s) => s.id === id)!;
  }

  silent(s: ModelServer): boolean {
    return this.now - s.lastHeartbeat >= TIMEOUT_MS;
  }

  suspended(x: Session): boolean {
    return this.silent(this.server(x.server));
  }

  heard(x: Session): void {
    const s = this.server(x.server);
    if (s.processes.at(-1) === x.service && this.silent(s)) {
      s.lastHeartbeat = this.now;
      this.backSinceSettle = true;
    }
    if (s.processes.at(-1) === x.service) this.maybeHeard.delete(s.id);
  }

  counted(st: ModelStream): number {
    return st.viewers.filter((v) => !this.suspended(v)).length;
  }

  isRevoked(st: ModelStream, sub: string | null, iat: number): boolean {
    return [...st.revocations].some(([who, before]) => (who === "" || who === sub) && iat < before);
  }

  limitOf(st: ModelStream): number | null {
    return st.exists && st.auth === "token" ? st.limit : null;
  }

  /** Every outcome the gate may give this play. `v` is the session it would start (sub/iat of a valid token). */
  play(v: Viewer, st: ModelStream, token: "valid" | "none" | "expired"): Outcome[] {
    // A deleted stream's policy is read first: nothing else is asked, the server is not heard (a live session's repeat is allowed).
    if (!st.exists) {
      const s = this.server(v.server);
      if (s.processes.at(-1) === v.service && this.silent(s)) this.maybeHeard.add(s.id);
      return [st.viewers.some((x) => same(x, v)) ? allow(false) : deny(4001)];
    }
    this.heard(v);
    if (st.viewers.some((x) => same(x, v))) return [allow(false)];
    if (st.auth === "token") {
      if (token === "none") return [deny(4010)];
      if (token === "expired") return [deny(4013)];
      if (this.isRevoked(st, v.sub, v.iat!)) return [deny(4019)];
      if (st.limit !== null && v.sub === null) return [deny(4018)];
    }
    const limit = st.auth === "token" && v.sub !== null ? st.limit : null;
    v.seated = limit !== null;
    const repeat = limit !== null && this.now - (st.seatEnded.get(`${v.sub}\n${keyOf(v)}`) ?? -Infinity) < ENDED_KEPT_MS;
    if (st.cap !== null && this.counted(st) >= st.cap) return [deny(4005), ...this.inPlaceOf(st, v, limit, repeat)];
    // README "Flash crowds": a shard refused for the cap waits (its viewers refused on the spot) until told of free slots,
    // and rounds (at most once a second, from the stream's alarm, which runs here only when a sequence settles) free the
    // slots the stream still counts for viewers that ended elsewhere: "a viewer is refused while a slot is … on its way
    // back …, for at most about 8 s". So while any shard of the stream was refused lately, a refusal for the cap may come
    // though the model counts a free slot (test/seats-operator-regressions.test.ts holds the bound).
    const waits = st.cap !== null && [...st.waiting.values()].some((at) => this.now - at < WAIT_HOLD_MS);
    // A silent server that may have been heard from (maybeHeard): its viewers may count, and fill the stream.
    const mayBeFull = st.cap !== null && st.viewers.filter((x) => !this.suspended(x) || this.maybeHeard.has(x.server)).length >= st.cap;
    const outcomes = limit === null ? [allow(true)] : repeat ? [deny(4016)] : this.seatOutcomes(st, v.sub!, limit);
    return waits || mayBeFull ? [...outcomes, deny(4005)] : outcomes;
  }

  /**
   * README "One ticket, one screen": at a full stream, a viewer replacing its own sessions plays in the place of the
   * one live session of it that ends (on its slot: src/viewers/seats.ts SeatRequest.handOff); else the cap refuses
   * (4005, nobody ends). A late repeat of a replaced session's on_play is refused 4016 first.
   */
  inPlaceOf(st: ModelStream, v: Viewer, limit: number | null, repeat: boolean): Outcome[] {
    if (limit === null || st.mode !== "replace") return [];
    if (repeat) return [deny(4016)];
    return this.seatOutcomes(st, v.sub!, limit).filter((o) => o.admit && o.ends.length === 1 && st.viewers.some((x) => keyOf(x) === o.ends[0] && !this.suspended(x)));
  }

  /**
   * src/viewers/seats.ts take(): fewer than `limit` held, a seat; else suspended ones end first, then (replace) live ones,
   * oldest first. Sessions admitted at the same moment (two plays at once) have no order between them: at the cut, any
   * of them may be the one that ends (found by this model, seed 1200924632: the gate ended the other of two at once).
   */
  seatOutcomes(st: ModelStream, sub: string, limit: number): Outcome[] {
    const asSuspended = this.seatOutcomesWith(st, sub, limit, (x) => this.suspended(x));
    // A silent server that may have been heard from (maybeHeard: a play of it for a deleted stream told the registry
    // it is back) holds live sessions, not suspended ones: with "deny", a viewer at its limit is refused 4016 (found
    // with `size: "max"`, seed -603374526; the example below).
    const mayBeLive = (x: Viewer) => this.suspended(x) && this.maybeHeard.has(x.server);
    if (!st.viewers.some((x) => x.sub === sub && x.seated && mayBeLive(x))) return asSuspended;
    const asHeard = this.seatOutcomesWith(st, sub, limit, (x) => this.suspended(x) && !mayBeLive(x));
    const seen = new Set(asSuspended.map((o) => JSON.stringify(o)));
    return [...asSuspended, ...asHeard.filter((o) => !seen.has(JSON.stringify(o)))];
  }

  private seatOutcomesWith(st: ModelStream, sub: string, limit: number, suspended: (x: Viewer) => boolean): Outcome[] {
    const held = st.viewers.filter((x) => x.sub === sub && x.seated).sort((a, b) => a.since - b.since || (a.client < b.client ? -1 : a.client > b.client ? 1 : 0));
    if (held.length < limit) return [allow(true)];
    const quiet = held.filter((h) => suspended(h));
    const live = held.filter((h) => !suspended(h));
    if (live.length >= limit && st.mode === "deny") return [deny(4016)];
    const order = [...quiet, ...live];
    const n = held.length + 1 - limit;
    const last = order[n - 1];
    const tiedWith = (x: Viewer) => x.since === last.since && suspended(x) === suspended(last);
    const tied = order.filter(tiedWith);
    const sure = order.slice(0, n).filter((x) => !tiedWith(x));
    return subsets(tied, n - sure.length).map((c) => ({ answer: ALLOWED, admit: true, ends: [...sure, ...c].map(keyOf).sort() }));
  }

  applyPlay(st: ModelStream, v: Viewer, o: Outcome): void {
    for (const k of o.ends) st.seatEnded.set(`${v.sub}\n${k}`, this.now);
    st.viewers = st.viewers.filter((x) => !o.ends.includes(keyOf(x)));
    if (o.admit) st.viewers.push(v);
    if (!o.answer.allow && o.answer.code === 4005) st.waiting.set(v.server, this.now);
    if (o.admit) st.waiting.delete(v.server);
  }

  end(x: Session, st: ModelStream | null): void {
    this.heard(x);
    for (const s of st ? [st] : this.streams) s.viewers = s.viewers.filter((v) => !same(v, x));
  }

  heartbeat(s: ModelServer, service?: string): void {
    if (service !== undefined) {
      const old = s.processes.at(-1)!;
      s.processes.push(service);
      for (const st of this.streams) st.viewers = st.viewers.filter((v) => !(v.server === s.id && v.service === old));
    }
    if (service === undefined && this.silent(s)) this.backSinceSettle = true;
    this.maybeHeard.delete(s.id);
    s.lastHeartbeat = this.now;
  }

  covered(st: ModelStream, sub: string | null, before: number): (v: Viewer) => boolean {
    return (v) => st.auth === "token" && v.iat !== null && v.iat < before && (sub === null || v.sub === sub);
  }

  revoke(st: ModelStream, sub: string | null, before: number): void {
    const who = sub ?? "";
    st.revocations.set(who, Math.max(before, st.revocations.get(who) ?? 0));
    if (sub === null) for (const [x, b] of st.revocations) if (x !== "" && b <= st.revocations.get("")!) st.revocations.delete(x);
    const covered = this.covered(st, sub, before);
    st.viewers = st.viewers.filter((v) => !covered(v));
  }

  /** The sessions a switch to "token" ends: those the active revocations cover. */
  revokedAtSwitch(st: ModelStream): string[] {
    const covers = [...st.revocations].map(([who, before]) => this.covered({ ...st, auth: "token" }, who === "" ? null : who, before));
    return st.viewers.filter((v) => covers.some((c) => c(v))).map(keyOf);
  }

  /**
   * A PUT (or the creation again of a deleted stream, `before` then null): README "One ticket, one screen", changing the
   * limit applies to new sessions, lowering it ends nobody; sessions admitted without one take seats when it is set.
   */
  policyChanged(st: ModelStream, before: number | null): void {
    const after = this.limitOf(st);
    if (after === null) {
      st.grand.clear();
      return;
    }
    for (const v of st.viewers) if (v.sub !== null) v.seated = true;
    for (const sub of SUBS) {
      const held = new Set(st.viewers.filter((v) => v.sub === sub).map(keyOf));
      if (before === null || after < before) st.grand.set(sub, held.size > after ? held : new Set());
      else if (held.size <= after) st.grand.delete(sub);
    }
  }

  shrinkGrand(): void {
    for (const st of this.streams) {
      for (const [sub, keys] of st.grand) {
        const held = new Set(st.viewers.filter((v) => v.sub === sub).map(keyOf));
        for (const k of keys) if (!held.has(k)) keys.delete(k);
      }
    }
  }
}

// --- running a sequence against the Worker -----------------------------------------------

let run = 0;

async function runSequence(ops: Op[]): Promise<void> {
  const started = performance.now();
  try {
    await runOnce(ops);
    if (performance.now() - started > 5_000) console.warn(`slow sequence (${Math.round(performance.now() - started)} ms): ${JSON.stringify(ops)}`);
  } catch (err) {
    console.warn(`failed sequence (${Math.round(performance.now() - started)} ms): ${JSON.stringify(ops)}\n${err}`);
    if (err instanceof Error) err.message += `\nsequence: ${JSON.stringify(ops)}`;
    throw err;
  }
}


async function runOnce(ops: Op[]): Promise<void> {
  run++;
  const t0 = Date.parse("2031-03-01T12:00:00Z"); // in the future: alarms run only when the sequence settles
  vi.setSystemTime(t0);
  const tag = `${run}${crypto.randomUUID().slice(0, 4)}`;
  const servers: ModelServer[] = Array.from({ length: SERVERS }, (_, i) => ({ id: `vid-s${tag}x${i}`, processes: [`svc${tag}x${i}a`], lastHeartbeat: 0 }));
  const streams: ModelStream[] = [];
  for (let i = 0; i < STREAMS; i++) {
    const name = `so-${tag}-${i}`;
    const policy = i === 0 ? { maxViewers: 2, playAuth: "token", maxSessionsPerViewer: 1 } : { playAuth: "token" };
    const res = await admin("PUT", `/streams/live/${name}`, policy);
    expect(res.status).toBe(201);
    streams.push({
      name, exists: true, cap: i === 0 ? 2 : null, auth: "token", limit: i === 0 ? 1 : null, mode: "deny",
      viewers: [], revocations: new Map(), grand: new Map(), seatEnded: new Map(), waiting: new Map(),
    });
  }
  const model = new Model(servers, streams, t0);
  for (const s of servers) expect((await hook(heartbeat({ server: s.id, service: s.processes[0] }), undefined, "/heartbeat")).status).toBe(200);

  let ipCounter = 0;
  const fresh = (body: Record<string, unknown>) => ({ ...body, ip: `2001:db8::${(++ipCounter).toString(16)}` });
  const tick = () => {
    model.now += 1;
    vi.setSystemTime(t0 + model.now);
  };
  const current = (s: ModelServer, c: number): Session => ({ server: s.id, service: s.processes.at(-1)!, client: `c${c}` });
  const who = (x: Session) => ({ server: x.server, service: x.service, client: x.client });
  const answerOf = (res: { status: number; body: any }): Answer => (res.status === 200 && res.body?.code === 0 ? ALLOWED : { allow: false, code: res.body?.code });
  const viewersHeld = async (st: ModelStream): Promise<Set<string>> => {
    const key = `__defaultVhost__/live/${st.name}`;
    const per = await Promise.all(servers.map(async (s) => (await viewerShard(env, s.id).viewersOf(key)).map((v) => keyOf({ server: s.id, service: v.serviceId, client: v.clientId }))));
    return new Set(per.flat());
  };

  const listedOf = (list: Awaited<ReturnType<typeof listViewers>>) => {
    const byKey = new Map<string, { sub: string | null; suspended: boolean }>();
    for (const entry of list.viewers) {
      for (const x of entry.sessions) byKey.set(keyOf({ server: x.serverId, service: x.serviceId, client: x.clientId }), { sub: entry.sub, suspended: x.suspended });
    }
    return byKey;
  };

  /** Waits (at most ~2 s) until none of these sessions is held: ends the gate makes in the background. */
  const goneSoon = async (st: ModelStream, keys: string[]) => {
    for (let i = 0; i < 200 && keys.length > 0; i++) {
      const held = await viewersHeld(st);
      if (!keys.some((k) => held.has(k))) return;
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  const checkEnded = (ended: string[], must: string[], where: string) => {
    expect([...ended].sort(), `${where}: ended (must ${JSON.stringify(must)})`).toEqual([...must].sort());
  };
  /** `pass`: a season pass (README: a v2 token for vhost/app/*; each stream applies its own limit and revocations). */
  const tokenFor = async (st: ModelStream, t: Tok, age: number, pass = false): Promise<{ param: string; sub: string | null; iat: number | null; kind: "valid" | "none" | "expired" }> => {
    const name = { vhost: "__defaultVhost__", app: "live", stream: st.name };
    if (t === "none") return { param: "", sub: null, iat: null, kind: "none" };
    if (t === "expired") {
      const iat = model.nowS() - 7200;
      return { param: `?token=${await signPlayToken(name, iat + 3600, KEY, { sub: SUBS[0], issuedAt: iat })}`, sub: null, iat: null, kind: "expired" };
    }
    const iat = model.nowS() - age;
    const sub = t === "nosub" ? null : SUBS[t];
    return { param: `?token=${await signPlayToken(name, iat + 3600, KEY, { ...(sub === null ? {} : { sub }), issuedAt: iat, wholeApp: pass })}`, sub, iat, kind: "valid" };
  };
  let settledSinceSilence = true;

  for (const [step, o] of [...ops, { t: "settle" } as Op].entries()) {
    const where = `step ${step} ${JSON.stringify(o)}`;
    if (o.t === "play") {
      tick();
      const st = streams[o.stream];
      const x = current(servers[o.server], o.client);
      const t = await tokenFor(st, o.tok, o.age, o.pass ?? false);
      const body = { ...play("live", st.name, who(x)), param: t.param };
      for (const attempt of o.retry ? [1, 2] : [1]) {
        const v: Viewer = { ...x, sub: t.sub, iat: t.iat, since: model.now, seated: false };
        const outcomes = model.play(v, st, t.kind);
        const res = await hook(fresh(body));
        const got = answerOf(res);
        const held = await viewersHeld(st);
        const ends = st.viewers.filter((y) => !same(y, v) && !held.has(keyOf(y))).map(keyOf).sort();
        const outcome = outcomes.find((c) => JSON.stringify(c.answer) === JSON.stringify(got) && JSON.stringify(c.ends) === JSON.stringify(ends));
        expect(outcome, `${where} (attempt ${attempt}): got ${JSON.stringify({ res, ends })}, the model allows ${JSON.stringify(outcomes)}`).toBeDefined();
        expect(res.status, where).toBe(got.allow ? 200 : 403);
        model.applyPlay(st, v, outcome!);
      }
    } else if (o.t === "stop") {
      tick();
      const st = streams[o.stream];
      const x = current(servers[o.server], o.client);
      for (const _ of o.twice ? [1, 2] : [1]) {
        const res = await hook(fresh(stopPlay("live", st.name, who(x))));
        expect(res, where).toEqual({ status: 200, body: { code: 0 } });
        model.end(x, st);
      }
    } else if (o.t === "close") {
      tick();
      const x = current(servers[o.server], o.client);
      expect(await hook(close(who(x))), where).toEqual({ status: 200, body: { code: 0 } });
      model.end(x, null);
    } else if (o.t === "heartbeat" || o.t === "restart") {
      tick();
      const s = servers[o.server];
      model.heartbeat(s, await beatOrRestart(s, o.t === "restart", tag, o.server, where));
    } else if (o.t === "silence") {
      model.now += o.ms;
      vi.setSystemTime(t0 + model.now);
      settledSinceSilence = false;
    } else if (o.t === "crash") {
      // The seats objects of the stream (each viewer id's): what they remember of ended sessions is stored.
      if (o.target === "seats") for (const sub of SUBS) await evictQuietly(viewerSeats(env, `__defaultVhost__/live/${streams[o.stream].name}`, sub), where);
      else await crash(o.target, servers[o.server].id, streams[o.stream].name, where);
    } else if (o.t === "put") {
      tick();
      const st = streams[o.stream];
      const body = {
        ...(o.maxViewers !== undefined ? { maxViewers: o.maxViewers } : {}),
        ...(o.auth !== undefined ? { playAuth: o.auth } : {}),
        ...(o.limit !== undefined ? { maxSessionsPerViewer: o.limit } : {}),
        ...(o.mode !== undefined ? { onExtraViewerSession: o.mode } : {}),
      };
      const res = await admin("PUT", `/streams/live/${st.name}`, body);
      const created = !st.exists;
      expect(res.status, where).toBe(created ? 201 : 200);
      const limitBefore = model.limitOf(st);
      const wasOpen = !created && st.auth === "open";
      if (created) {
        // Created again: the policy of this PUT, defaults for the rest, no revocations (README: they go with the stream).
        st.exists = true;
        st.cap = o.maxViewers ?? null;
        st.auth = o.auth ?? "open";
        st.limit = o.limit ?? null;
        st.mode = o.mode ?? "deny";
        st.revocations.clear();
      } else {
        if (o.maxViewers !== undefined) st.cap = o.maxViewers;
        if (o.auth !== undefined) st.auth = o.auth;
        if (o.limit !== undefined) st.limit = o.limit;
        if (o.mode !== undefined) st.mode = o.mode;
      }
      expect(res.body, where).toMatchObject({ maxViewers: st.cap, playAuth: st.auth, maxSessionsPerViewer: st.limit, onExtraViewerSession: st.mode });
      // README "Revocations": from a switch to "token", the sessions the open stream admitted with revoked tokens end.
      const revoked = wasOpen && st.auth === "token" ? model.revokedAtSwitch(st) : [];
      for (const k of revoked) st.viewers = st.viewers.filter((v) => keyOf(v) !== k);
      await goneSoon(st, revoked);
      const seating = limitBefore === null && model.limitOf(st) !== null;
      model.policyChanged(st, created ? null : limitBefore);
      if (seating) await seatsTaken(st.name, where);
    } else if (o.t === "revoke") {
      tick();
      const st = streams[o.stream];
      const sub = o.sub === null ? null : SUBS[o.sub];
      const back = sub === null && o.back === null ? 0 : o.back;
      const before = back === null ? model.nowS() + 1 + MAX_CLOCK_SKEW_S : model.nowS() - back;
      const res = await admin("POST", `/streams/live/${st.name}/revocations`, { ...(sub === null ? {} : { sub }), ...(back === null ? {} : { before }) });
      if (!st.exists) {
        expect(res.status, where).toBe(404);
      } else {
        expect(res.status, where).toBe(201);
        expect(res.body.revocation, where).toMatchObject({ sub, before: Math.max(before, st.revocations.get(sub ?? "") ?? 0) });
        const ended: string[] = res.body.ended.map((e: any) => keyOf({ server: e.serverId, service: e.serviceId, client: e.clientId }));
        checkEnded(ended, st.viewers.filter(model.covered(st, sub, before)).map(keyOf), where);
        model.revoke(st, sub, before);
      }
    } else if (o.t === "delete") {
      tick();
      const st = streams[o.stream];
      const res = await admin("DELETE", `/streams/live/${st.name}`);
      expect(res.status, where).toBe(st.exists ? 200 : 404);
      st.exists = false;
      st.grand.clear();
    } else if (o.t === "endStream") {
      tick();
      const st = streams[o.stream];
      const serverId = o.server === null ? undefined : servers[o.server].id;
      const clientId = o.client === null ? undefined : `c${o.client}`;
      const query = new URLSearchParams({ ...(serverId ? { server: serverId } : {}), ...(clientId ? { client: clientId } : {}) }).toString();
      const res = await admin("DELETE", `/streams/live/${st.name}/sessions${query ? `?${query}` : ""}`);
      if (!st.exists) {
        expect(res.status, where).toBe(404);
      } else {
        expect(res.status, where).toBe(200);
        expect(res.body.failed, where).toBeUndefined();
        const matches = (x: Session) => (serverId === undefined || x.server === serverId) && (clientId === undefined || x.client === clientId);
        const ended: string[] = res.body.ended.map((e: any) => `${e.role}:${keyOf({ server: e.serverId, service: e.serviceId, client: e.clientId })}`);
        checkEnded(ended, st.viewers.filter(matches).map((v) => `viewer:${keyOf(v)}`), where);
        st.viewers = st.viewers.filter((v) => !matches(v));
      }
    } else if (o.t === "endServer") {
      tick();
      const s = servers[o.server];
      const res = await admin("DELETE", `/servers/${s.id}/sessions`);
      expect(res.status, where).toBe(200);
      expect(res.body.remaining, where).toBe(0);
      expect(res.body.failed, where).toBeUndefined();
      const ended: string[] = res.body.ended.map((e: any) => `${e.stream}:${keyOf({ server: s.id, service: e.serviceId, client: e.clientId })}`);
      const must = streams.flatMap((st) => st.viewers.filter((v) => v.server === s.id).map((v) => `__defaultVhost__/live/${st.name}:${keyOf(v)}`));
      checkEnded(ended, must, where);
      for (const st of streams) st.viewers = st.viewers.filter((v) => v.server !== s.id);
    } else if (o.t === "concurrent") {
      tick();
      const si = o.stream;
      const st = streams[si];
      type Reply = { status: number; body: any };
      type Action = { name: string; send: () => Promise<Reply>; apply: (m: Model, res: Reply) => Model[] };
      const playAction = async (x: Session, subIndex: number): Promise<Action> => {
        const t = await tokenFor(st, subIndex, 0);
        const body = fresh({ ...play("live", st.name, who(x)), param: t.param });
        return {
          name: `play ${keyOf(x)} of ${t.sub}`,
          send: () => hook(body),
          apply: (m, res) => {
            const got = answerOf(res);
            const viewer = (c: Model): Viewer => ({ ...x, sub: t.sub, iat: t.iat, since: c.now, seated: false });
            const outcomes = m.clone().play(viewer(m), m.clone().streams[si], t.kind);
            // Two plays of one viewer id at once on a full capped stream in "replace" mode: the second may pass the
            // slot check before the first's admission used the slot, then replace it (on the same edge its slot is
            // kept for it): both stay within the cap and the limit; the final state must show it.
            if (w.w === "play" && m.streams[si].mode === "replace" && m.streams[si].cap !== null) {
              const free = m.clone();
              free.streams[si].cap = null;
              for (const c of free.play(viewer(free), free.streams[si], t.kind)) if (c.admit && c.ends.length > 0) outcomes.push(c);
            }
            // README "Flash crowds": from a policy change (a PUT, a revocation) until its push reaches a shard, "nobody
            // is granted a slot of that stream (… a refusal too many, never a viewer too many)": a play deciding
            // meanwhile on a capped stream may be refused for the cap, wherever the count stands.
            if (capWindow() && m.streams[si].exists && m.streams[si].cap !== null && !outcomes.some((c) => !c.answer.allow && c.answer.code === 4005)) outcomes.push(deny(4005));
            // README "One ticket, one screen": "Of several screens racing, the last to arrive stays (one overtaken while its
            // seat was still being taken is refused 4016 …, never admitted)": as if admitted, then replaced by the other
            // (the final state must show it ended).
            const overtaken = (c: Outcome) =>
              w.w === "play" && c.admit && m.streams[si].mode === "replace" && !got.allow && got.code === 4016 && /replaced by a newer session/.test(res.body?.reason ?? "");
            // Two plays of one viewer id at once on one edge, the cap and the limit both full after the first: each refuses
            // it, and the seat may be asked before the slot is used (the shard's slot check and its seat take are not one
            // step): 4016 for 4005, as in test/model.test.ts's bursts.
            const eitherRefusal = (c: Outcome) => w.w === "play" && !c.answer.allow && c.answer.code === 4005 && !got.allow && got.code === 4016;
            // README "One ticket, one screen": a DELETE or a revocation arriving while the seat object is already ending
            // the sessions a replacing play makes room for refuses that play, and those sessions end all the same.
            const lateChange = (c: Outcome) =>
              (w.w === "delete" || w.w === "revoke") && c.admit && c.ends.length > 0 && !got.allow && (got.code === 4001 || got.code === 4019);
            // README "One ticket, one screen": a PUT's push takes back every shard's unused slots, also the one a replacing
            // play found before its seat ended the sessions it makes room for (or the one handed to it): refused for the
            // cap, and those sessions end all the same.
            const slotTaken = (c: Outcome) => w.w === "put" && c.admit && c.ends.length > 0 && !got.allow && got.code === 4005;
            // README "One ticket, one screen": two screens of one viewer id starting at once on one edge of a stream with
            // one slot left both pass the edge's slot check; the seat of the one the cap then refuses may already have
            // ended the viewer's sessions on silent servers (as for an admission). Found by this model (seed -2147029284).
            const quietEnded: Outcome[] = [];
            if (w.w === "play" && m.streams[si].cap !== null && !got.allow && got.code === 4005) {
              const free = m.clone();
              free.streams[si].cap = null;
              const quiet = (k: string) => m.streams[si].viewers.some((x) => keyOf(x) === k && m.suspended(x));
              for (const c of free.play(viewer(free), free.streams[si], t.kind)) if (c.admit && c.ends.length > 0 && c.ends.every(quiet)) quietEnded.push({ answer: got, admit: false, ends: c.ends });
            }
            return [
              ...outcomes.flatMap((c): Outcome[] =>
                JSON.stringify(c.answer) === JSON.stringify(got) || overtaken(c) || eitherRefusal(c) ? [c] : lateChange(c) || slotTaken(c) ? [{ answer: got, admit: false, ends: c.ends }] : [],
              ),
              ...quietEnded,
            ]
              .map((c) => {
                const n = m.clone();
                const v = viewer(n);
                n.play(v, n.streams[si], t.kind);
                n.applyPlay(n.streams[si], v, c);
                return n;
              });
          },
        };
      };
      const w = o.with;
      // Two plays at once on a capped stream: README "Flash crowds", a viewer may be refused while a slot is on its way
      // back (a recall for the other's ask crossing this one's), for a bounded time (the model's `waiting`).
      const capWindow = () => w.w === "put" || w.w === "revoke" || w.w === "play";
      let other: Action;
      let seatingPut = false;
      if (w.w === "play") {
        other = await playAction(current(servers[w.server], w.client), o.sub);
      } else if (w.w === "stop") {
        const x = current(servers[o.server], o.client);
        other = {
          name: `stop ${keyOf(x)}`,
          send: () => hook(fresh(stopPlay("live", st.name, who(x)))),
          apply: (m, res) => {
            if (res.status !== 200) return [];
            m.end(x, m.streams[si]);
            return [m];
          },
        };
      } else if (w.w === "put") {
        const body = { ...(w.maxViewers !== undefined ? { maxViewers: w.maxViewers } : {}), ...(w.limit !== undefined ? { maxSessionsPerViewer: w.limit } : {}), ...(w.mode !== undefined ? { onExtraViewerSession: w.mode } : {}) };
        seatingPut = true;
        other = {
          name: `PUT ${JSON.stringify(body)}`,
          send: () => admin("PUT", `/streams/live/${st.name}`, body),
          apply: (m, res) => {
            const mst = m.streams[si];
            const created = !mst.exists;
            if (res.status !== (created ? 201 : 200)) return [];
            const limitBefore = m.limitOf(mst);
            if (created) Object.assign(mst, { exists: true, cap: w.maxViewers ?? null, auth: "open", limit: w.limit ?? null, mode: w.mode ?? "deny" }), mst.revocations.clear();
            else {
              if (w.maxViewers !== undefined) mst.cap = w.maxViewers;
              if (w.limit !== undefined) mst.limit = w.limit;
              if (w.mode !== undefined) mst.mode = w.mode;
            }
            m.policyChanged(mst, created ? null : limitBefore);
            return [m];
          },
        };
      } else if (w.w === "revoke") {
        const sub = w.sub === null ? null : SUBS[w.sub];
        const back = sub === null && w.back === null ? 0 : w.back;
        const before = back === null ? model.nowS() + 1 + MAX_CLOCK_SKEW_S : model.nowS() - back;
        other = {
          name: `revoke ${sub} before ${before}`,
          send: () => admin("POST", `/streams/live/${st.name}/revocations`, { ...(sub === null ? {} : { sub }), ...(back === null ? {} : { before }) }),
          apply: (m, res) => {
            const mst = m.streams[si];
            if (!mst.exists) return res.status === 404 ? [m] : [];
            if (res.status !== 201) return [];
            const ended = res.body.ended.map((e: any) => keyOf({ server: e.serverId, service: e.serviceId, client: e.clientId })).sort();
            // Every covered session must end (the final state says), but the answer may leave out one that a round of
            // recalls for a play at that moment ended first: a known defect, test/seats-operator-regressions.test.ts
            // ("a revocation's answer lists every session it ended"), tolerated here so that the model looks further.
            const covered = mst.viewers.filter(m.covered(mst, sub, before)).map(keyOf);
            if (ended.some((k: string) => !covered.includes(k))) return [];
            m.revoke(mst, sub, before);
            return [m];
          },
        };
      } else if (w.w === "delete") {
        other = {
          name: "DELETE",
          send: () => admin("DELETE", `/streams/live/${st.name}`),
          apply: (m, res) => {
            const mst = m.streams[si];
            if (res.status !== (mst.exists ? 200 : 404)) return [];
            mst.exists = false;
            mst.grand.clear();
            return [m];
          },
        };
      } else {
        const serverId = w.server === null ? undefined : servers[w.server].id;
        other = {
          name: `end sessions ${serverId ?? "(all)"}`,
          send: () => admin("DELETE", `/streams/live/${st.name}/sessions${serverId ? `?server=${serverId}` : ""}`),
          apply: (m, res) => {
            const mst = m.streams[si];
            if (!mst.exists) return res.status === 404 ? [m] : [];
            if (res.status !== 200 || res.body.failed) return [];
            const matches = (x: Session) => serverId === undefined || x.server === serverId;
            const ended = res.body.ended.map((e: any) => keyOf({ server: e.serverId, service: e.serviceId, client: e.clientId })).sort();
            if (JSON.stringify(ended) !== JSON.stringify(mst.viewers.filter(matches).map(keyOf).sort())) return [];
            mst.viewers = mst.viewers.filter((v) => !matches(v));
            return [m];
          },
        };
      }
      const mine = await playAction(current(servers[o.server], o.client), o.sub);
      const [r1, r2] = await Promise.all([mine.send(), other.send()]);
      const held = [...(await viewersHeld(st))].sort();
      const orders: [Action, Reply][][] = [[[mine, r1], [other, r2]], [[other, r2], [mine, r1]]];
      const finals = orders.flatMap((order) => order.reduce<Model[]>((ms, [a, res]) => ms.flatMap((m) => a.apply(m, res)), [model.clone()]));
      // README "One ticket, one screen": sessions admitted while there was no limit take their seats when a PUT sets one,
      // each shard as the push reaches it; "until then, a moment after the PUT …, their viewer may be admitted once more
      // elsewhere". The play decided in that moment: under the PUT's cap and mode, but no limit; seated with the rest
      // after it (all of them held when the limit was set). Found by this model (seed 377, size max).
      if (w.w === "put" && st.exists && model.limitOf(st) === null && w.limit != null && r2.status === 200) {
        const n = model.clone();
        const mst = n.streams[si];
        if (w.maxViewers !== undefined) mst.cap = w.maxViewers;
        if (w.mode !== undefined) mst.mode = w.mode;
        for (const m of mine.apply(n, r1)) {
          m.streams[si].limit = w.limit;
          m.policyChanged(m.streams[si], null);
          finals.push(m);
        }
      }
      const fits = finals.filter((m) => JSON.stringify(m.streams[si].viewers.map(keyOf).sort()) === JSON.stringify(held));
      expect(fits.length, `${where}: ${mine.name} answered ${JSON.stringify(r1)}, ${other.name} answered ${JSON.stringify(r2)}, held ${JSON.stringify(held)}; the model's orders lead to ${JSON.stringify(finals.map((m) => m.streams[si].viewers.map(keyOf).sort()))}`).toBeGreaterThan(0);
      model.adopt(fits[0]);
      if (seatingPut && model.limitOf(st) !== null) await seatsTaken(st.name, where);
    } else {
      await runEveryAlarm(servers.map((s) => s.id), streams.map((st) => st.name));
      settledSinceSilence = true;
      model.backSinceSettle = false;
    }
    model.shrinkGrand();

    // --- checks at every step ---
    const exact = o.t === "settle" || (settledSinceSilence && !model.backSinceSettle);
    for (const st of streams) {
      // (b) The sessions each shard holds are the model's (deleted streams included: SRS keeps those clients).
      const held = await viewersHeld(st);
      expect([...held].sort(), `${where}: ${st.name} viewer sessions`).toEqual(st.viewers.map(keyOf).sort());
      const res = await admin("GET", `/streams/live/${st.name}`);
      if (!st.exists) {
        // (g) A deleted stream: every admin route of it is 404.
        expect(res.status, `${where}: ${st.name} deleted`).toBe(404);
        expect((await admin("GET", `/streams/live/${st.name}/viewers`)).status, where).toBe(404);
        expect((await admin("GET", `/streams/live/${st.name}/revocations`)).status, where).toBe(404);
        continue;
      }
      expect(res.status, where).toBe(200);
      const state = res.body;
      expect(state, where).toMatchObject({ maxViewers: st.cap, playAuth: st.auth, maxSessionsPerViewer: st.limit, onExtraViewerSession: st.mode });
      // (e) The leases' invariant.
      if (st.cap !== null) {
        expect(state.viewers + state.leasedUnused, `${where}: ${st.name} viewers ${state.viewers} + unused leased slots ${state.leasedUnused}, cap ${st.cap}`).toBeLessThanOrEqual(Math.max(st.cap, state.viewers));
      }
      expect(state.leasedUnused, where).toBeGreaterThanOrEqual(0);
      expect(state.viewers + state.suspendedViewers, `${where}: ${st.name} viewers and suspended viewers`).toBe(st.viewers.length);
      if (exact && !st.viewers.some((v) => model.maybeHeard.has(v.server))) {
        expect({ viewers: state.viewers, suspendedViewers: state.suspendedViewers }, `${where}: ${st.name} counts`).toEqual({
          viewers: model.counted(st),
          suspendedViewers: st.viewers.length - model.counted(st),
        });
        const distinct = new Set(st.viewers.filter((v) => v.sub !== null && !model.suspended(v)).map((v) => v.sub));
        expect(state.distinctViewerIds, `${where}: ${st.name} distinct viewer ids`).toBe(distinct.size);
      }
      // (f) The active revocations.
      const revs = (await admin("GET", `/streams/live/${st.name}/revocations`)).body.revocations.map((r: any) => `${r.sub ?? ""}:${r.before}`).sort();
      expect(revs, `${where}: ${st.name} revocations`).toEqual([...st.revocations].map(([w, b]) => `${w}:${b}`).sort());
      // (c) What GET …/viewers lists is the model's.
      const list = await listViewers(st.name);
      expect(list.unreachable, where).toBeUndefined();
      const listed = listedOf(list);
      const named = st.viewers.filter((v) => v.sub !== null);
      expect([...listed].map(([k, l]) => `${l.sub}:${k}`).sort(), `${where}: ${st.name} listed`).toEqual(named.map((v) => `${v.sub}:${keyOf(v)}`).sort());
      expect(list.anonymous, `${where}: ${st.name} anonymous`).toBe(st.viewers.length - named.length);
      if (exact) for (const v of named.filter((x) => !model.maybeHeard.has(x.server))) expect(listed.get(keyOf(v))!.suspended, `${where}: ${keyOf(v)} suspended`).toBe(model.suspended(v));
      // (d) No viewer id over the limit, but with sessions it held when the limit was set or lowered.
      const limitNow = model.limitOf(st);
      for (const entry of list.viewers) {
        expect(entry.live, where).toBe(entry.sessions.filter((x: any) => !x.suspended).length);
        if (limitNow === null) continue;
        const grand = st.grand.get(entry.sub) ?? new Set<string>();
        const keys = entry.sessions.map((x: any) => keyOf({ server: x.serverId, service: x.serviceId, client: x.clientId }));
        const over = keys.length > limitNow ? keys.filter((k: string) => !grand.has(k)) : [];
        expect(over, `${where}: ${st.name}: ${keys.length} sessions of ${entry.sub} (limit ${limitNow}), not held when it was set or lowered`).toEqual([]);
      }
    }
  }
}

/** Sequences per run of the file (about 1 s each). */
const NUM_RUNS = 60;

/** A sequence to replay alone (a counterexample being studied); empty: skipped. */
const REPLAY: Op[] = [];

describe("viewer identity interleaved with operator actions", () => {
  modelFrame(REPLAY, runSequence);

  it("answers, seats, revocations, deleted and re-created streams, ends by hand: the model's", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    await fc.assert(fc.asyncProperty(fc.array(op, { minLength: 10, maxLength: 30 }), runSequence), {
      numRuns: NUM_RUNS,
      examples: [
        // Found with `size: "max"` (seed -603374526): a gap of the model, not of the gate. alice's session on server 0
        // takes its seat, the server falls silent, and its play for the stream as the stream is deleted reaches the
        // registry first (server 0 is back: maybeHeard); her play on server 1 under limit 1, "deny", is refused 4016.
        [
          [
            { t: "play", server: 0, client: 1, stream: 1, tok: 0, age: 0, retry: false },
            { t: "put", stream: 1, limit: 1 },
            { t: "silence", ms: 31000 },
            { t: "concurrent", server: 0, client: 0, stream: 1, sub: 0, with: { w: "delete" } },
            { t: "put", stream: 1, auth: "token", limit: 1 },
            { t: "play", server: 1, client: 0, stream: 1, tok: 0, age: 0, retry: false },
          ],
        ],
        // Found by this model (seed 1200924632): two plays of one viewer id at once on two edges are admitted at the same
        // moment; at the limit, a third replaces either of them (no order between the two), not always the model's first.
        [
          [
            { t: "put", stream: 1, limit: 2, mode: "replace" },
            { t: "concurrent", server: 1, client: 2, stream: 1, sub: 0, with: { w: "play", server: 0, client: 2 } },
            { t: "play", server: 0, client: 0, stream: 0, tok: 0, age: 0, retry: false },
            { t: "play", server: 0, client: 0, stream: 0, tok: 0, age: 0, retry: false },
            { t: "play", server: 0, client: 0, stream: 0, tok: 0, age: 0, retry: false },
            { t: "play", server: 0, client: 0, stream: 0, tok: 0, age: 0, retry: false },
            { t: "put", stream: 0 },
            { t: "play", server: 0, client: 0, stream: 1, tok: 0, age: 0, retry: false },
            { t: "silence", ms: 5000 },
            { t: "play", server: 0, client: 0, stream: 0, tok: 0, age: 0, retry: false },
            { t: "concurrent", server: 0, client: 0, stream: 0, sub: 0, with: { w: "delete" } },
            { t: "put", stream: 0 },
          ],
        ],
        // Found by this model (seed 7, size max): a play for a deleted stream from a silent edge may tell the registry it is
        // back (maybeHeard); that edge's viewer on another stream then counts, and fills it: a play there is refused 4005.
        [
          [
            { t: "play", server: 0, client: 0, stream: 0, tok: 0, age: 0, retry: false },
            { t: "put", stream: 1, maxViewers: 2 },
            { t: "play", server: 1, client: 0, stream: 1, tok: 0, age: 0, retry: false },
            { t: "play", server: 1, client: 0, stream: 0, tok: 0, age: 0, retry: false },
            { t: "silence", ms: 5000 },
            { t: "silence", ms: 31000 },
            { t: "concurrent", server: 1, client: 0, stream: 0, sub: 0, with: { w: "delete" } },
            { t: "play", server: 0, client: 0, stream: 0, tok: 0, age: 0, retry: false },
            { t: "concurrent", server: 0, client: 0, stream: 0, sub: 0, with: { w: "stop" } },
            { t: "play", server: 0, client: 0, stream: 0, tok: 0, age: 0, retry: false },
            { t: "settle" },
            { t: "play", server: 0, client: 0, stream: 1, tok: 0, age: 0, retry: false },
            { t: "play", server: 0, client: 0, stream: 0, tok: 0, age: 0, retry: false },
            { t: "concurrent", server: 2, client: 0, stream: 1, sub: 0, with: { w: "stop" } },
          ],
        ],
        // Found by this model (seed 377, size max): a play racing the PUT that first sets a limit, decided before alice's
        // sessions on another edge took their seats, is admitted beside them (README: "until then … their viewer may be
        // admitted once more elsewhere"); the model had no such order.
        [
          [
            { t: "play", server: 1, client: 2, stream: 1, tok: 0, age: 0, retry: false },
            { t: "play", server: 1, client: 0, stream: 1, tok: 0, age: 0, retry: false },
            { t: "put", stream: 1, maxViewers: 0, mode: "deny" },
            { t: "concurrent", server: 0, client: 2, stream: 1, sub: 0, with: { w: "put", maxViewers: null, limit: 1, mode: "replace" } },
            { t: "play", server: 2, client: 1, stream: 1, tok: 0, age: 0, retry: false },
          ],
        ],
        // Found by this model (test/seats-operator-regressions.test.ts): alice's three sessions admitted without a
        // limit took seats dated from the PUT, ordered by client id, and her next screen in "replace" mode ended
        // her newest ones instead of her oldest.
        [
          [
            { t: "play", server: 0, client: 2, stream: 1, tok: 0, age: 0, retry: false },
            { t: "play", server: 1, client: 1, stream: 1, tok: 0, age: 0, retry: false },
            { t: "play", server: 2, client: 0, stream: 1, tok: 0, age: 0, retry: false },
            { t: "put", stream: 1, limit: 2, mode: "replace" },
            { t: "play", server: 0, client: 0, stream: 1, tok: 0, age: 0, retry: false },
          ],
        ],
        // Found by this model (adversarial pass h4): a cap lowered to 0 under two viewers; a third viewer's play on the
        // edge of one of them waits for slots while an operator ends every session: the slot of the viewer ended
        // meanwhile came back with the answer and the play was admitted at a cap of 0 (src/viewers/shard-leases.ts
        // freedWhileAsking).
        [
          [
            { t: "play", server: 2, client: 0, stream: 1, tok: 0, age: 0, retry: false },
            { t: "play", server: 0, client: 0, stream: 1, tok: 0, age: 0, retry: false },
            { t: "concurrent", server: 2, client: 0, stream: 0, sub: 0, with: { w: "put" } },
            { t: "put", stream: 1, maxViewers: 0 },
            { t: "play", server: 0, client: 0, stream: 0, tok: 0, age: 0, retry: false },
            { t: "concurrent", server: 2, client: 1, stream: 1, sub: 0, with: { w: "endStream", server: null } },
          ],
        ],
      ],
    });
    console.warn(`model-seats-operator: ${run} sequences run`);
  }, 240_000);
});
