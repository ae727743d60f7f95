/**
 * Model-based property test of operator actions interleaved with a fleet that
 * restarts, falls silent, and loses, repeats or reorders its hooks: the
 * companion of test/model.test.ts (which generates no operator action but
 * policy changes of viewer identity and revocations).
 *
 * Operator actions: PUT of maxViewers (raised, lowered below the viewers
 * counted, to null and back), onDuplicatePublish ("replace" without SRS's API:
 * a takeover is refused 4009), rotateKey, DELETE of the stream and its
 * creation again, and the ends by hand (DELETE …/sessions of a stream, with or
 * without ?server= and ?client=, and DELETE /admin/servers/{id}/sessions).
 * Hooks that SRS or the network lose, repeat or reorder: a stop sent twice, an
 * on_play sent again after its answer was lost, an on_play and its on_stop at
 * once (the stop arriving before the play's answer), late hooks of a process
 * its server's restart replaced, a stop arriving before its start hook.
 *
 * Checked at every step against a small reference model (README is the
 * contract):
 * (a) every hook's answer is the model's;
 * (b) never two publishers that count (state "live") on one stream;
 * (c) counted viewers + slots leased but unused ≤ maxViewers (README "Flash
 *     crowds": after a lowered cap, every connected viewer keeps its slot and
 *     no new one is admitted until the count is under the cap, so then no
 *     slot is left unused);
 * (d) a deleted stream refuses every new session (4001), its admin routes
 *     answer 404; sessions live through the DELETE stay (SRS keeps them: their
 *     repeats are allowed, their stops still count), and a stream created
 *     again starts with a new key and the policy of its PUT (defaults for the
 *     rest), its old key refused;
 * (e) a session ended by hand is gone for good: its server's heartbeats, a
 *     silence and a return, late or repeated stops bring nothing back.
 * Besides: each viewer shard holds exactly the model's viewer sessions, each
 * stream exactly the model's publisher sessions (allowing those of a replaced
 * process until the registry's notice reaches it), and once the alarms ran the
 * admin API's counts are the model's.
 *
 * SRS_API_URL is unset (this runs in the plain "gate" project): no kicks.
 */
import { env } from "cloudflare:workers";
import fc from "fast-check";
import { describe, expect, it, vi } from "vitest";
import { viewerShard } from "../src/object-access";
import { WAIT_HOLD_MS } from "../src/viewers/lease";
import { admin, close, heartbeat, hook, play, publish, stopPlay, unpublish } from "./srs";
import { beatOrRestart, crash, keyOf, modelFrame, runEveryAlarm, streamObjectOf } from "./model-kit";

const TIMEOUT_MS = 30_000; // SERVER_TIMEOUT_S in wrangler.toml
const SERVERS = 3;
const CLIENTS = 3;
const STREAMS = 2;

type Dup = "deny" | "replace";
type KeyKind = "good" | "old" | "wrong";

type Op =
  | { t: "publish"; server: number; client: number; stream: number; key: KeyKind; retry: boolean }
  | { t: "unpublish"; server: number; client: number; stream: number; twice: boolean }
  /** `retry`: SRS's answer to the first was lost, the same on_play comes again. */
  | { t: "play"; server: number; client: number; stream: number; retry: boolean }
  | { t: "stop"; server: number; client: number; stream: number; twice: boolean }
  /** An on_play and its on_stop at once: the stop arrives before the play's answer. */
  | { t: "race"; server: number; client: number; stream: number }
  | { t: "close"; server: number; client: number }
  /** A hook of the process the server's last restart replaced, arriving late. */
  | { t: "late"; server: number; client: number; stream: number; kind: "publish" | "play" | "unpublish" | "stop" | "close" }
  | { t: "heartbeat"; server: number }
  /** A new process of the server, and its first heartbeat. */
  | { t: "restart"; server: number }
  | { t: "silence"; ms: number }
  | { t: "crash"; target: "shard" | "registry" | "stream"; server: number; stream: number }
  /** PUT /admin/streams/…: fields absent (undefined) are left out of the body. */
  | { t: "put"; stream: number; maxViewers?: number | null; dup?: Dup; rotate: boolean }
  | { t: "delete"; stream: number }
  | { t: "endStream"; stream: number; server: number | null; client: number | null }
  | { t: "endServer"; server: number }
  | { t: "settle" };

const server = fc.integer({ min: 0, max: SERVERS - 1 });
const client = fc.integer({ min: 0, max: CLIENTS - 1 });
const stream = fc.integer({ min: 0, max: STREAMS - 1 });
const cap = fc.constantFrom<number | null>(null, 0, 1, 1, 2, 2, 3);
const op: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ t: fc.constant("publish" as const), server, client, stream, key: fc.constantFrom<KeyKind>("good", "good", "good", "old", "wrong"), retry: fc.boolean() }), weight: 4 },
  { arbitrary: fc.record({ t: fc.constant("unpublish" as const), server, client, stream, twice: fc.boolean() }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant("play" as const), server, client, stream, retry: fc.boolean() }), weight: 7 },
  { arbitrary: fc.record({ t: fc.constant("stop" as const), server, client, stream, twice: fc.boolean() }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant("race" as const), server, client, stream }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant("close" as const), server, client }), weight: 1 },
  {
    arbitrary: fc.record({ t: fc.constant("late" as const), server, client, stream, kind: fc.constantFrom<"publish" | "play" | "unpublish" | "stop" | "close">("publish", "play", "unpublish", "stop", "close") }),
    weight: 1,
  },
  { arbitrary: fc.record({ t: fc.constant("heartbeat" as const), server }), weight: 3 },
  { arbitrary: fc.record({ t: fc.constant("restart" as const), server }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant("silence" as const), ms: fc.constantFrom(5_000, 31_000) }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant("crash" as const), target: fc.constantFrom<"shard" | "registry" | "stream">("shard", "registry", "stream"), server, stream }), weight: 1 },
  {
    arbitrary: fc.record(
      { t: fc.constant("put" as const), stream, maxViewers: cap, dup: fc.constantFrom<Dup>("deny", "replace"), rotate: fc.boolean() },
      { requiredKeys: ["t", "stream", "rotate"] },
    ),
    weight: 4,
  },
  { arbitrary: fc.record({ t: fc.constant("delete" as const), stream }), weight: 2 },
  {
    arbitrary: fc.record({ t: fc.constant("endStream" as const), stream, server: fc.option(server, { nil: null }), client: fc.option(client, { nil: null }) }),
    weight: 2,
  },
  { arbitrary: fc.record({ t: fc.constant("endServer" as const), server }), weight: 1 },
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
  /** Every service_id it ran, oldest first; the last one runs (and heartbeated at its start). */
  processes: string[];
  lastHeartbeat: number;
}

interface ModelStream {
  name: string;
  exists: boolean;
  /** The key in force (null while deleted), and every key it had before (rotated, or of an earlier life). */
  key: string | null;
  oldKeys: string[];
  cap: number | null;
  dup: Dup;
  /** Publisher sessions that received no stop event, in order of admission. */
  publishers: Session[];
  /**
   * Publishers of a process a restart replaced: ended in the model, and at the stream once the
   * registry's notice reaches it (its alarm) or a decision asks the registry about them.
   */
  zombies: Session[];
  viewers: Session[];
  /**
   * Servers whose viewer shard was refused for the cap (4005), and when last: README "Flash crowds", a
   * shard still refused waits (its viewers refused on the spot) until the stream tells it of free slots,
   * which it does for as many waiting shards as slots are free, in rounds from its alarm (which runs here
   * only when a sequence settles), or until it asks again after WAIT_HOLD_MS anyway. So while it waits,
   * a viewer may be refused though the model counts a free slot (a raised cap, a viewer gone elsewhere).
   */
  waiting: Map<string, number>;
}

type Answer = { allow: true } | { allow: false; code: number };
interface Outcome {
  answer: Answer;
  admit: boolean;
}
const ALLOWED: Answer = { allow: true };
const denied = (code: number): Answer => ({ allow: false, code });

const same = (a: Session, b: Session) => a.server === b.server && a.service === b.service && a.client === b.client;

class Model {
  now = 0;
  /**
   * A silent server was heard from again since the alarms last ran: its sessions count again at once for every
   * decision (the registry is asked), but the admin API's counts follow when its notices are delivered (an alarm).
   */
  backSinceSettle = false;
  constructor(
    public servers: ModelServer[],
    public streams: ModelStream[],
  ) {}

  server(id: string): ModelServer {
    return this.servers.find((s) => s.id === id)!;
  }

  silent(s: ModelServer): boolean {
    return this.now - s.lastHeartbeat >= TIMEOUT_MS;
  }

  suspended(x: Session): boolean {
    return this.silent(this.server(x.server));
  }

  retired(x: Session): boolean {
    return this.server(x.server).processes.at(-1) !== x.service;
  }

  /** A message of the current process: a silent server is back. */
  heard(x: Session): void {
    const s = this.server(x.server);
    if (!this.retired(x) && this.silent(s)) {
      s.lastHeartbeat = this.now;
      this.backSinceSettle = true;
    }
  }

  counted(st: ModelStream): number {
    return st.viewers.filter((v) => !this.suspended(v)).length;
  }

  publish(x: Session, st: ModelStream, presented: string): Answer {
    if (this.retired(x)) return denied(4006);
    this.heard(x);
    if (st.publishers.some((p) => same(p, x))) return ALLOWED;
    if (!st.exists) return denied(4001);
    if (presented !== st.key) return denied(4003);
    if (st.publishers.some((p) => !this.suspended(p))) return denied(st.dup === "replace" ? 4009 : 4004);
    st.publishers.push(x);
    return ALLOWED;
  }

  /** What an on_play may get (the first outcome, or while its shard waits for slots, a refusal for the cap); `admit` says whether it starts a session. */
  play(x: Session, st: ModelStream): Outcome[] {
    // A deleted stream's policy is read first (src/viewers/shard.ts): nothing else is asked, the server is not heard.
    if (!st.exists) return [{ answer: st.viewers.some((v) => same(v, x)) ? ALLOWED : denied(4001), admit: false }];
    if (this.retired(x)) return [{ answer: denied(4006), admit: false }];
    this.heard(x);
    if (st.viewers.some((v) => same(v, x))) return [{ answer: ALLOWED, admit: false }];
    if (st.cap !== null && this.counted(st) >= st.cap) return [{ answer: denied(4005), admit: false }];
    const waits = st.cap !== null && this.now - (st.waiting.get(x.server) ?? -Infinity) < WAIT_HOLD_MS;
    return [{ answer: ALLOWED, admit: true }, ...(waits ? [{ answer: denied(4005), admit: false }] : [])];
  }

  /** Applies the outcome of a play that got `got`: undefined if the model allows no such answer. */
  played(x: Session, st: ModelStream, outcomes: Outcome[], got: Answer): Outcome | undefined {
    const outcome = outcomes.find((o) => JSON.stringify(o.answer) === JSON.stringify(got));
    if (outcome?.admit) st.viewers.push(x);
    if (outcome && !outcome.answer.allow && outcome.answer.code === 4005) st.waiting.set(x.server, this.now);
    if (outcome?.admit) st.waiting.delete(x.server);
    return outcome;
  }

  end(x: Session, st: ModelStream | null, role: "publisher" | "viewer" | null): void {
    this.heard(x);
    for (const s of st ? [st] : this.streams) {
      if (role !== "viewer") {
        s.publishers = s.publishers.filter((p) => !same(p, x));
        s.zombies = s.zombies.filter((p) => !same(p, x));
      }
      if (role !== "publisher") s.viewers = s.viewers.filter((v) => !same(v, x));
    }
  }

  /** A heartbeat of the server's current process; with `service`, a new process (a restart). */
  heartbeat(s: ModelServer, service?: string): void {
    if (service !== undefined) {
      const old = s.processes.at(-1)!;
      s.processes.push(service);
      for (const st of this.streams) {
        const of = (x: Session) => x.server === s.id && x.service === old;
        st.zombies.push(...st.publishers.filter(of));
        st.publishers = st.publishers.filter((p) => !of(p));
        st.viewers = st.viewers.filter((v) => !of(v));
      }
    }
    if (service === undefined && this.silent(s)) this.backSinceSettle = true;
    s.lastHeartbeat = this.now;
  }
}

// --- running a sequence against the Worker -----------------------------------------------

let run = 0;

async function runSequence(ops: Op[]): Promise<void> {
  try {
    await runOnce(ops);
  } catch (err) {
    // fast-check's report of a failure in workerd leaves the counterexample out: name it here.
    if (err instanceof Error) err.message += `\nsequence: ${JSON.stringify(ops)}`;
    throw err;
  }
}


async function runOnce(ops: Op[]): Promise<void> {
  run++;
  const t0 = Date.parse("2031-03-01T12:00:00Z"); // in the future: alarms run only when the sequence settles
  vi.setSystemTime(t0);
  const tag = `${run}${crypto.randomUUID().slice(0, 4)}`;
  const servers: ModelServer[] = Array.from({ length: SERVERS }, (_, i) => ({ id: `vid-o${tag}x${i}`, processes: [`svc${tag}x${i}a`], lastHeartbeat: 0 }));
  const streams: ModelStream[] = [];
  for (let i = 0; i < STREAMS; i++) {
    const name = `op-${tag}-${i}`;
    const res = await admin("PUT", `/streams/live/${name}`, { maxViewers: i === 0 ? 2 : null });
    expect(res.status).toBe(201);
    streams.push({ name, exists: true, key: res.body.publishKey, oldKeys: [], cap: i === 0 ? 2 : null, dup: "deny", publishers: [], zombies: [], viewers: [], waiting: new Map() });
  }
  const model = new Model(servers, streams);
  // Every server heartbeats from its start (a restart is a heartbeat of its new process): no candidates here.
  for (const s of servers) expect((await hook(heartbeat({ server: s.id, service: s.processes[0] }), undefined, "/heartbeat")).status).toBe(200);

  let ipCounter = 0;
  // A fresh client ip per hook keeps the brute-force limit (tested on its own) out of the model.
  const fresh = (body: Record<string, unknown>) => ({ ...body, ip: `2001:db8::${(++ipCounter).toString(16)}` });
  const tick = () => {
    model.now += 1;
    vi.setSystemTime(t0 + model.now);
  };
  const current = (s: ModelServer, c: number): Session => ({ server: s.id, service: s.processes.at(-1)!, client: `c${c}` });
  const who = (x: Session) => ({ server: x.server, service: x.service, client: x.client });
  const expectAnswer = (got: { status: number; body: any }, want: Answer, where: string) => {
    expect({ status: got.status, code: got.body?.code }, where).toEqual(want.allow ? { status: 200, code: 0 } : { status: want.code === 4015 ? 500 : 403, code: want.code });
  };
  const answerOf = (res: { status: number; body: any }): Answer => (res.status === 200 && res.body?.code === 0 ? ALLOWED : { allow: false, code: res.body?.code });
  const expectOneOf = (res: { status: number; body: any }, outcomes: Outcome[], outcome: Outcome | undefined, where: string) => {
    expect(outcome, `${where}: answered ${JSON.stringify(res)}, the model allows ${JSON.stringify(outcomes.map((o) => o.answer))}`).toBeDefined();
    expectAnswer(res, outcome!.answer, where);
  };
  const viewersHeld = async (st: ModelStream): Promise<Set<string>> => {
    const key = `__defaultVhost__/live/${st.name}`;
    const per = await Promise.all(servers.map(async (s) => (await viewerShard(env, s.id).viewersOf(key)).map((v) => keyOf({ server: s.id, service: v.serviceId, client: v.clientId }))));
    return new Set(per.flat());
  };
  const publishersHeld = async (st: ModelStream): Promise<Set<string>> =>
    new Set((await streamObjectOf(st.name).publisherSessions()).map((p) => keyOf({ server: p.serverId, service: p.serviceId, client: p.clientId })));
  const keyFor = (st: ModelStream, kind: KeyKind) => (kind === "good" && st.key ? st.key : kind === "old" && st.oldKeys.length > 0 ? st.oldKeys.at(-1)! : "wrong-key-0123456789");
  /** Checks an end by hand's `ended` against the model: every session it must end, and only those (or zombies). */
  const checkEnded = (ended: string[], must: string[], may: string[], where: string) => {
    const allowed = new Set([...must, ...may]);
    expect(ended.filter((k) => !allowed.has(k)), `${where}: ended sessions the model does not hold (ended ${JSON.stringify(ended)}, must ${JSON.stringify(must)})`).toEqual([]);
    expect(must.filter((k) => !ended.includes(k)), `${where}: sessions not ended`).toEqual([]);
    expect(new Set(ended).size, `${where}: a session ended twice`).toBe(ended.length);
  };
  /** Sessions ended by hand, by role and stream (a client id may publish another stream too): checked at every later step (e). */
  const endedByHand = new Set<string>();
  const handKey = (role: "publisher" | "viewer", st: ModelStream, x: Session | string) => `${role}:${st.name}:${typeof x === "string" ? x : keyOf(x)}`;
  const endedByHandIn = (st: ModelStream, which: (x: Session) => boolean) => {
    for (const p of st.publishers.filter(which)) endedByHand.add(handKey("publisher", st, p));
    for (const v of st.viewers.filter(which)) endedByHand.add(handKey("viewer", st, v));
  };
  let settledSinceSilence = true;

  for (const [step, o] of [...ops, { t: "settle" } as Op].entries()) {
    const where = `step ${step} ${JSON.stringify(o)}`;
    if (o.t === "publish") {
      tick();
      const st = streams[o.stream];
      const x = current(servers[o.server], o.client);
      const presented = keyFor(st, o.key);
      const body = publish("live", st.name, presented, who(x));
      const want = model.publish(x, st, presented);
      expectAnswer(await hook(fresh(body)), want, where);
      // Its answer lost, SRS's retry (a repeat of the client's on_publish): the session it admitted is live.
      if (o.retry) expectAnswer(await hook(fresh(body)), model.publish(x, st, presented), `${where} (again)`);
    } else if (o.t === "play") {
      tick();
      const st = streams[o.stream];
      const x = current(servers[o.server], o.client);
      const body = play("live", st.name, who(x));
      for (const attempt of o.retry ? [1, 2] : [1]) {
        const outcomes = model.play(x, st);
        const res = await hook(fresh(body));
        expectOneOf(res, outcomes, model.played(x, st, outcomes, answerOf(res)), `${where} (attempt ${attempt})`);
      }
    } else if (o.t === "race") {
      tick();
      const st = streams[o.stream];
      const x = current(servers[o.server], o.client);
      // Either order: the play decided first (then stopped), or the stop first (ending the session if it was held) and
      // the play decided on what is left. A stop that lands while the play is decided voids it (README, "Platform
      // errors"): nothing is admitted, whatever the answer.
      const playFirst = model.play(x, st);
      const stopFirst = model.play(x, { ...st, viewers: st.viewers.filter((v) => !same(v, x)) });
      const [p, s] = await Promise.all([hook(fresh(play("live", st.name, who(x)))), hook(fresh(stopPlay("live", st.name, who(x))))]);
      expect(s.status, `${where}: stop`).toBe(200);
      const held = (await viewersHeld(st)).has(keyOf(x));
      const got = answerOf(p);
      const outcomes = [...playFirst, ...stopFirst];
      expect(outcomes.some((o) => JSON.stringify(o.answer) === JSON.stringify(got)), `${where}: play answered ${JSON.stringify(p)}, the model allows ${JSON.stringify(outcomes)}`).toBe(true);
      // Held afterwards only if the stop came first and the play then admitted it.
      if (held) expect(stopFirst.some((o) => o.admit) && got.allow, `${where}: held after the race, answered ${JSON.stringify(p)}`).toBe(true);
      if (!got.allow && got.code === 4005) st.waiting.set(x.server, model.now);
      model.end(x, st, "viewer");
      if (held) st.viewers.push(x);
    } else if (o.t === "unpublish" || o.t === "stop") {
      tick();
      const st = streams[o.stream];
      const x = current(servers[o.server], o.client);
      const body = o.t === "unpublish" ? unpublish("live", st.name, who(x)) : stopPlay("live", st.name, who(x));
      for (const _ of o.twice ? [1, 2] : [1]) {
        expectAnswer(await hook(fresh(body)), ALLOWED, where);
        model.end(x, st, o.t === "unpublish" ? "publisher" : "viewer");
      }
    } else if (o.t === "close") {
      tick();
      const x = current(servers[o.server], o.client);
      expectAnswer(await hook(close(who(x))), ALLOWED, where);
      model.end(x, null, null);
    } else if (o.t === "late") {
      tick();
      const s = servers[o.server];
      if (s.processes.length < 2) continue;
      const st = streams[o.stream];
      const x: Session = { server: s.id, service: s.processes.at(-2)!, client: `c${o.client}` };
      if (o.kind === "publish") {
        expectAnswer(await hook(fresh(publish("live", st.name, st.key ?? "wrong-key-0123456789", who(x)))), model.publish(x, st, st.key ?? ""), where);
      } else if (o.kind === "play") {
        const want = model.play(x, st);
        expect(want.length, where).toBe(1);
        expectAnswer(await hook(fresh(play("live", st.name, who(x)))), want[0].answer, where);
        expect(want[0].admit, where).toBe(false);
      } else {
        const body = o.kind === "unpublish" ? unpublish("live", st.name, who(x)) : o.kind === "stop" ? stopPlay("live", st.name, who(x)) : close(who(x));
        expectAnswer(await hook(o.kind === "close" ? body : fresh(body)), ALLOWED, where);
        // Its sessions ended with the restart already: nothing of the current process changes.
        model.end(x, o.kind === "close" ? null : st, o.kind === "unpublish" ? "publisher" : o.kind === "stop" ? "viewer" : null);
      }
    } else if (o.t === "heartbeat" || o.t === "restart") {
      tick();
      const s = servers[o.server];
      model.heartbeat(s, await beatOrRestart(s, o.t === "restart", tag, o.server, where));
    } else if (o.t === "silence") {
      model.now += o.ms;
      vi.setSystemTime(t0 + model.now);
      settledSinceSilence = false;
    } else if (o.t === "crash") {
      await crash(o.target, servers[o.server].id, streams[o.stream].name, where);
    } else if (o.t === "put") {
      tick();
      const st = streams[o.stream];
      const body = { ...(o.maxViewers !== undefined ? { maxViewers: o.maxViewers } : {}), ...(o.dup !== undefined ? { onDuplicatePublish: o.dup } : {}), ...(o.rotate ? { rotateKey: true } : {}) };
      const res = await admin("PUT", `/streams/live/${st.name}`, body);
      const created = !st.exists;
      expect(res.status, where).toBe(created ? 201 : 200);
      if (created) {
        // Created again: the policy of this PUT, defaults for the rest (README "Admin API").
        st.cap = o.maxViewers ?? null;
        st.dup = o.dup ?? "deny";
        st.exists = true;
      } else {
        if (o.maxViewers !== undefined) st.cap = o.maxViewers;
        if (o.dup !== undefined) st.dup = o.dup;
      }
      expect(res.body, where).toMatchObject({ maxViewers: st.cap, onDuplicatePublish: st.dup, playAuth: "open", maxSessionsPerViewer: null });
      if (created || o.rotate) {
        expect(typeof res.body.publishKey, where).toBe("string");
        if (st.key) st.oldKeys.push(st.key);
        st.key = res.body.publishKey;
      } else expect(res.body.publishKey, where).toBeUndefined();
    } else if (o.t === "delete") {
      tick();
      const st = streams[o.stream];
      const res = await admin("DELETE", `/streams/live/${st.name}`);
      expect(res.status, where).toBe(st.exists ? 200 : 404);
      if (st.exists) {
        st.exists = false;
        st.oldKeys.push(st.key!);
        st.key = null;
      }
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
        const must = [...st.publishers.filter(matches).map((p) => `publisher:${keyOf(p)}`), ...st.viewers.filter(matches).map((v) => `viewer:${keyOf(v)}`)];
        checkEnded(ended, must, st.zombies.filter(matches).map((p) => `publisher:${keyOf(p)}`), where);
        endedByHandIn(st, matches);
        st.publishers = st.publishers.filter((p) => !matches(p));
        st.zombies = st.zombies.filter((p) => !matches(p));
        st.viewers = st.viewers.filter((v) => !matches(v));
      }
    } else if (o.t === "endServer") {
      tick();
      const s = servers[o.server];
      const res = await admin("DELETE", `/servers/${s.id}/sessions`);
      expect(res.status, where).toBe(200);
      expect(res.body.remaining, where).toBe(0);
      expect(res.body.failed, where).toBeUndefined();
      const of = (x: Session) => x.server === s.id;
      const ended: string[] = res.body.ended.map((e: any) => `${e.role}:${e.stream}:${keyOf({ server: s.id, service: e.serviceId, client: e.clientId })}`);
      const tagged = (st: ModelStream, role: string, x: Session) => `${role}:__defaultVhost__/live/${st.name}:${keyOf(x)}`;
      const must = streams.flatMap((st) => [...st.publishers.filter(of).map((p) => tagged(st, "publisher", p)), ...st.viewers.filter(of).map((v) => tagged(st, "viewer", v))]);
      checkEnded(ended, must, streams.flatMap((st) => st.zombies.filter(of).map((p) => tagged(st, "publisher", p))), where);
      for (const st of streams) {
        endedByHandIn(st, of);
        st.publishers = st.publishers.filter((p) => !of(p));
        st.zombies = st.zombies.filter((p) => !of(p));
        st.viewers = st.viewers.filter((v) => !of(v));
      }
    } else {
      // Every alarm runs: registry shards suspend silent servers and deliver their notices; streams sweep.
      await runEveryAlarm(servers.map((s) => s.id), streams.map((st) => st.name));
      for (const st of streams) st.zombies = [];
      settledSinceSilence = true;
      model.backSinceSettle = false;
    }

    // --- checks at every step ---
    for (const st of streams) {
      // The sessions each object holds are the model's (deleted streams included: SRS keeps those clients).
      const viewers = await viewersHeld(st);
      expect([...viewers].sort(), `${where}: ${st.name} viewer sessions`).toEqual(st.viewers.map(keyOf).sort());
      const publishers = await publishersHeld(st);
      const zombies = new Set(st.zombies.map(keyOf));
      const held = st.publishers.map(keyOf);
      expect(held.filter((k) => !publishers.has(k)), `${where}: ${st.name} publishers missing`).toEqual([]);
      expect([...publishers].filter((k) => !held.includes(k) && !zombies.has(k)), `${where}: ${st.name} publishers the model does not hold`).toEqual([]);
      // A zombie the stream let go is gone for good.
      st.zombies = st.zombies.filter((z) => publishers.has(keyOf(z)));
      // (e) Nothing ended by hand comes back. A zombie is not back: the model admitted it again after the end by hand
      // (a new on_publish of that client id: SRS's client ids repeat here), and its process's restart is fencing it.
      const heldAgain = [
        ...[...viewers].filter((v) => !st.viewers.some((x) => keyOf(x) === v)).map((v) => handKey("viewer", st, v)),
        ...[...publishers].filter((p) => !held.includes(p) && !zombies.has(p)).map((p) => handKey("publisher", st, p)),
      ];
      expect(heldAgain.filter((k) => endedByHand.has(k)), `${where}: ended by hand, held again`).toEqual([]);
      const res = await admin("GET", `/streams/live/${st.name}`);
      if (!st.exists) {
        // (d) A deleted stream: every admin route of it is 404.
        expect(res.status, `${where}: ${st.name} deleted`).toBe(404);
        expect((await admin("GET", `/streams/live/${st.name}/viewers`)).status, where).toBe(404);
        continue;
      }
      expect(res.status, where).toBe(200);
      const state = res.body;
      expect(state, where).toMatchObject({ maxViewers: st.cap, onDuplicatePublish: st.dup });
      // (b) At most one publisher holds the stream.
      expect([state.publisher, ...state.conflicts].filter((p: any) => p?.state === "live").length, `${where}: ${st.name} live publishers`).toBeLessThanOrEqual(1);
      // (c) The leases' invariant: counted viewers plus unused leased slots within the cap (all of them kept after a lowered cap or a heal, none unused then).
      if (st.cap !== null) {
        expect(state.viewers + state.leasedUnused, `${where}: ${st.name} viewers ${state.viewers} + unused leased slots ${state.leasedUnused}, cap ${st.cap}`).toBeLessThanOrEqual(
          Math.max(st.cap, state.viewers),
        );
      }
      expect(state.leasedUnused, where).toBeGreaterThanOrEqual(0);
      // Once the alarms ran (or with no silence, and no silent server back, since they last did), the admin API's counts are the model's.
      if (o.t === "settle" || (settledSinceSilence && !model.backSinceSettle)) {
        expect({ viewers: state.viewers, suspendedViewers: state.suspendedViewers }, `${where}: ${st.name} counts`).toEqual({
          viewers: model.counted(st),
          suspendedViewers: st.viewers.length - model.counted(st),
        });
      }
      if (o.t === "settle") {
        const view = (p: any) => keyOf({ server: p.serverId, service: p.serviceId, client: p.clientId });
        const states = [state.publisher, ...state.conflicts].filter(Boolean);
        const seen = (wanted: string[]) => states.filter((p: any) => wanted.includes(p.state)).map(view).sort();
        expect(seen(["live", "conflict"]), `${where}: ${st.name} live publishers`).toEqual(st.publishers.filter((p) => !model.suspended(p)).map(keyOf).sort());
        expect(seen(["suspended"]), `${where}: ${st.name} suspended publishers`).toEqual(st.publishers.filter((p) => model.suspended(p)).map(keyOf).sort());
      }
    }
  }
}

/** A sequence to replay alone (a counterexample being studied); empty: skipped. */
const REPLAY: Op[] = [];

describe("operator actions interleaved with a fleet that restarts, retries and loses hooks", () => {
  modelFrame(REPLAY, runSequence);

  it("every hook gets the model's answer, ends by hand are for good, deleted streams refuse, the cap and one publisher hold", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    await fc.assert(fc.asyncProperty(fc.array(op, { minLength: 10, maxLength: 30 }), runSequence), {
      numRuns: 40,
      examples: [
        // Found by 900 runs (seed 1307180883): a gap of the model, not of the gate. A client ended by hand on one stream
        // publishes another stream; its process restarts, and that publisher is held a moment longer (a zombie, fenced
        // in the background): the model kept what was ended by hand without its stream, and took it for the one it ended.
        [
          [
            { t: "publish", server: 1, client: 1, stream: 1, key: "good", retry: false },
            { t: "endStream", stream: 1, server: null, client: null },
            { t: "publish", server: 1, client: 1, stream: 0, key: "good", retry: false },
            { t: "put", stream: 0, rotate: false },
            { t: "unpublish", server: 0, client: 0, stream: 0, twice: false },
            { t: "endStream", stream: 0, server: 0, client: null },
            { t: "endStream", stream: 0, server: null, client: 0 },
            { t: "play", server: 0, client: 0, stream: 0, retry: false },
            { t: "restart", server: 1 },
            { t: "late", server: 0, client: 0, stream: 0, kind: "publish" },
            { t: "put", stream: 0, rotate: false },
            { t: "stop", server: 0, client: 0, stream: 0, twice: false },
            { t: "restart", server: 0 },
          ],
        ],
        // Found by 200 runs (seed 921593768): the same gap on one stream. c2, ended by hand, publishes the stream again
        // (a new on_publish of that client id, admitted by the model and the gate); its process restarts, and that
        // publisher is a zombie a moment: the model took it for the one ended by hand, come back.
        [
          [
            { t: "publish", server: 2, client: 2, stream: 0, key: "good", retry: false },
            { t: "endStream", stream: 0, server: null, client: null },
            { t: "endServer", server: 0 },
            { t: "stop", server: 0, client: 0, stream: 0, twice: false },
            { t: "put", stream: 0, rotate: false },
            { t: "endServer", server: 0 },
            { t: "publish", server: 2, client: 2, stream: 0, key: "good", retry: false },
            { t: "endStream", stream: 0, server: 0, client: null },
            { t: "endStream", stream: 0, server: null, client: 0 },
            { t: "restart", server: 2 },
            { t: "put", stream: 0, rotate: false },
          ],
        ],
      ],
    });
  }, 240_000);
});
