/**
 * Property (adversarial pass h6): whatever a fleet of SRS edges and an operator do to a stream, every
 * publish session the gate admitted gets exactly one `stream.started` and, once it ended, exactly one
 * `stream.ended` with the reason README "Events" gives for how it ended, its `started` and a `duration` that
 * ends where "Usage" says (a fence or a timeout: its server's last heartbeat), and nothing more; a
 * `webhook-id` never comes with two bodies; `stream.viewer_limit_reached` comes at most once a minute, and
 * within a minute of every refusal for the cap; `stream.ended`'s `peakViewers` is no more than the viewers
 * its servers held in the minutes the publish spans; and the stream's `publishSeconds` is the sum of the
 * modelled sessions' lengths.
 *
 * Interleavings of: on_publish (right or wrong key), on_unpublish (some lost: never sent), on_close, on_play,
 * on_stop, heartbeats, waits (every edge that is not cut off heartbeats), a silence of one edge (35 s: its
 * registry's alarm suspends it), a silence of the whole fleet past SESSION_GRACE_S (86400 s in the tests: the
 * registries' alarms end its sessions), restarts (a heartbeat with a new service_id, the registry's notices
 * to the stream delivered at once or later; or the new process's hooks first, a candidate until its first heartbeat), the stream's sweep, ends by hand (the stream's, a server's),
 * key rotations, the stream deleted and created again, objects evicted, and the events queue refusing sends
 * (or taking them and answering an error). Project "webhooks" (EVENTS_WEBHOOK_URL set, no SRS API: nothing
 * is kicked, so a rotated key or a deleted stream leaves its publisher to stop on its own: `stop`).
 *
 * The model is the fleet's truth: an edge cut off sends nothing until it heartbeats again (the gate
 * hears of it only then), so every hook of an edge cut off is preceded by its heartbeat, as a partition that
 * heals. Times fall on multiples of 7 s, so that no wait equals SERVER_TIMEOUT_S.
 */
import { env } from "cloudflare:workers";
import { evictDurableObject, runDurableObjectAlarm } from "cloudflare:test";
import fc from "fast-check";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { admin, close, createStream, hook, newEdge, play, publish, stopPlay, uniqueStream, unpublish, type Edge } from "../srs";
import { at, beat, deliverNotices, fireDue, iso, restarted, serverStub, shardStub, streamStub, T0, until, useFakeClock } from "../fleet";
import { Receiver } from "../receiver";
import { StreamObject } from "../../src/stream/object";
import { ShardActivity } from "../../src/usage/shard-activity";

const SERVERS = 2;
const CLIENTS = 2;
const STEP = 7_000;
/** Past SESSION_GRACE_S (86400 s in vitest.config.mts, from wrangler.toml), on the 7 s grid. */
const GRACE_WAIT = Math.ceil(86_400_001 / STEP) * STEP;
const MIN = 60_000;

type Op =
  | { t: "publish"; s: number; c: number; right: boolean }
  | { t: "unpublish"; s: number; c: number; lost: boolean }
  | { t: "close"; s: number; c: number }
  | { t: "play" | "stop"; s: number; c: number }
  | { t: "wait"; steps: number }
  | { t: "silence"; s: number }
  | { t: "grace" }
  | { t: "beat"; s: number }
  | { t: "restart"; s: number; deliver: boolean }
  | { t: "restartLate"; s: number }
  | { t: "deliver" }
  | { t: "sweep" }
  | { t: "endAll" }
  | { t: "endServer"; s: number }
  | { t: "rotate" }
  | { t: "delete" }
  | { t: "recreate" }
  | { t: "evict"; what: "stream" | "registry" | "shard"; s: number }
  | { t: "queue"; mode: QueueMode };

type QueueMode = "ok" | "refuse" | "lostAck";

const s = fc.integer({ min: 0, max: SERVERS - 1 });
const c = fc.integer({ min: 0, max: CLIENTS - 1 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ t: fc.constant("publish" as const), s, c, right: fc.oneof({ arbitrary: fc.constant(true), weight: 3 }, { arbitrary: fc.constant(false), weight: 1 }) }), weight: 6 },
  { arbitrary: fc.record({ t: fc.constant("unpublish" as const), s, c, lost: fc.boolean() }), weight: 4 },
  { arbitrary: fc.record({ t: fc.constant("close" as const), s, c }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant("play" as const), s, c: fc.integer({ min: 0, max: 2 }) }), weight: 6 },
  { arbitrary: fc.record({ t: fc.constant("stop" as const), s, c: fc.integer({ min: 0, max: 2 }) }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant("wait" as const), steps: fc.integer({ min: 1, max: 4 }) }), weight: 5 },
  { arbitrary: fc.record({ t: fc.constant("silence" as const), s }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant("grace" as const) }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant("beat" as const), s }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant("restart" as const), s, deliver: fc.boolean() }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant("restartLate" as const), s }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant("deliver" as const) }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant("sweep" as const) }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant("endAll" as const) }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant("endServer" as const), s }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant("rotate" as const) }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant("delete" as const) }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant("recreate" as const) }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant("evict" as const), what: fc.constantFrom("stream" as const, "registry" as const, "shard" as const), s }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant("queue" as const), mode: fc.constantFrom<QueueMode>("ok", "refuse", "lostAck") }), weight: 1 },
);

export interface Scenario {
  cap: number | null;
  ops: Op[];
}
const scenarioArb: fc.Arbitrary<Scenario> = fc.record({
  cap: fc.constantFrom(null, 1, 2),
  ops: fc.array(opArb, { minLength: 10, maxLength: 45, size: "max" }),
});

/** A session as the model knows it: `end` is when it ended for the gate's accounting (a fence's: the last heartbeat). */
interface Session {
  s: number;
  service: string;
  client: string;
  since: number;
  end?: number;
  reason?: string;
  /** When the gate could learn of the end at the latest (for viewers' held time, peaks). */
  seenEnd?: number;
}

/** What the tests of a file share: the receiver, and the spies on the queue and on the refusals' reports. */
export interface Harness {
  receiver: Receiver;
  queue: { mode: QueueMode };
  tells: { expected: number; done: number };
}

/** Installs the spies (once per test: useFakeClock restores them after it). */
export function harness(receiver: Receiver): Harness {
  const queue = { mode: "ok" as QueueMode };
  const realSend = env.EVENTS.sendBatch.bind(env.EVENTS);
  vi.spyOn(env.EVENTS, "sendBatch").mockImplementation(async (messages, options) => {
    if (queue.mode === "refuse") throw new Error("queue unavailable (test)");
    const sent = await realSend(messages, options);
    if (queue.mode === "lostAck") throw new Error("queue send timed out (test)");
    return sent;
  });
  // A refusal for the cap that the shard reports to the stream (in the background): the test waits for the stream to take it.
  const tells = { expected: 0, done: 0 };
  const realCap = ShardActivity.prototype.capRefused;
  vi.spyOn(ShardActivity.prototype, "capRefused").mockImplementation(function (this: ShardActivity, streamKey, serverId, maxViewers) {
    if (!(this as any).toldAt.has(streamKey, Date.now())) tells.expected++;
    return realCap.call(this, streamKey, serverId, maxViewers);
  });
  const realLimit = StreamObject.prototype.viewerLimitReached;
  vi.spyOn(StreamObject.prototype, "viewerLimitReached").mockImplementation(function (this: StreamObject, serverId, maxViewers) {
    try {
      return realLimit.call(this, serverId, maxViewers);
    } finally {
      tells.done++;
    }
  });
  return { receiver, queue, tells };
}

export async function runScenario(h: Harness, { cap, ops }: Scenario): Promise<void> {
  const { receiver, queue, tells } = h;
  queue.mode = "ok";
  at(0);
  let now = 0;
  const stream = uniqueStream("evm");
  const policy = { maxViewers: cap };
  let key = await createStream(stream, policy);
  let oldKey: string | null = null;
  let exists = true;
  /** `pending`: the process a restart replaced, whose new process sends hooks before its first heartbeat (a candidate until then). */
  const servers = Array.from({ length: SERVERS }, () => ({ edge: newEdge() as Edge, lastBeat: 0, cut: false, pending: null as string | null }));
  for (const sv of servers) expect((await beat(sv.edge)).status).toBe(200);
  const pubs: Session[] = [];
  const viewers: Session[] = [];
  const refusals: number[] = [];
  /** Publisher sessions ended by an operator (session.ended_by_operator, role publisher), and viewers. */
  let operatorPublishers = 0;
  let operatorViewers = 0;
  const log: string[] = [];
  /** Servers whose viewers' peaks a fence may take back or an eviction may lose: no lower bound for them. */
  const unsure = new Set<number>();

  const open = (list: Session[]) => list.filter((x) => x.end === undefined);
  const pubClient = (c: number) => `p${c}`;
  const viewClient = (c: number) => `v${c}`;
  const endSession = (x: Session, end: number, reason: string) => {
    x.end = Math.max(x.since, end);
    x.reason = reason;
    x.seenEnd = now;
  };
  /** Server i heartbeats (its new process's first heartbeat completes a restart: the old one's sessions end). */
  const sendBeat = async (i: number) => {
    const sv = servers[i];
    if (sv.pending !== null) {
      fence(i, sv.pending, "restart");
      unsure.add(i);
      sv.pending = null;
    }
    expect((await beat(sv.edge)).status).toBe(200);
    sv.cut = false;
    sv.lastBeat = now;
  };
  const heal = async (i: number) => {
    if (servers[i].cut) await sendBeat(i);
  };
  const beatOthers = async (except: number | null) => {
    for (let i = 0; i < SERVERS; i++) if (i !== except && !servers[i].cut) await sendBeat(i);
  };
  const who = (i: number, client: string) => ({ ...servers[i].edge, client });
  /** Ends, in the model, the open sessions of process `service` of server i: a restart's fence or the grace. */
  const fence = (i: number, service: string, reason: string) => {
    for (const x of [...open(pubs), ...open(viewers)]) if (x.s === i && x.service === service) endSession(x, servers[i].lastBeat, reason);
  };

  for (const o of ops) {
    log.push(JSON.stringify(o));
    switch (o.t) {
      case "publish": {
        await heal(o.s);
        const client = pubClient(o.c);
        const sv = servers[o.s];
        const presented = o.right ? key : (oldKey ?? "wrong-key-0000000000000000");
        const res = await hook(publish("live", stream, presented, who(o.s, client)));
        const mine = open(pubs).find((x) => x.s === o.s && x.service === sv.edge.service && x.client === client);
        const blocked = open(pubs).some((x) => x !== mine && !servers[x.s].cut);
        const admit = !mine && exists && o.right && !blocked;
        expect(res.status, `on_publish of ${client} on server ${o.s}: ${JSON.stringify(res.body)}`).toBe(mine || admit ? 200 : 403);
        if (admit) pubs.push({ s: o.s, service: sv.edge.service, client, since: now });
        break;
      }
      case "unpublish": {
        if (o.lost) break;
        await heal(o.s);
        const client = pubClient(o.c);
        expect((await hook(unpublish("live", stream, who(o.s, client)))).status).toBe(200);
        const mine = open(pubs).find((x) => x.s === o.s && x.service === servers[o.s].edge.service && x.client === client);
        if (mine) endSession(mine, now, "stop");
        break;
      }
      case "close": {
        await heal(o.s);
        const client = pubClient(o.c);
        expect((await hook(close(who(o.s, client)))).status).toBe(200);
        const mine = open(pubs).find((x) => x.s === o.s && x.service === servers[o.s].edge.service && x.client === client);
        if (mine) endSession(mine, now, "stop");
        break;
      }
      case "play": {
        await heal(o.s);
        const client = viewClient(o.c);
        const res = await hook(play("live", stream, who(o.s, client)));
        const mine = open(viewers).find((x) => x.s === o.s && x.service === servers[o.s].edge.service && x.client === client);
        if (res.status === 200) {
          if (!mine) viewers.push({ s: o.s, service: servers[o.s].edge.service, client, since: now });
        } else {
          expect(mine, `a viewer already watching refused: ${JSON.stringify(res.body)}`).toBeUndefined();
          if (res.body.code === 4005) refusals.push(now);
          else expect(exists, `play refused with ${JSON.stringify(res.body)}`).toBe(false);
          // The shard tells the stream in the background: taken before the clock moves on.
          await until(() => tells.done >= tells.expected);
        }
        break;
      }
      case "stop": {
        await heal(o.s);
        const client = viewClient(o.c);
        await hook(stopPlay("live", stream, who(o.s, client)));
        const mine = open(viewers).find((x) => x.s === o.s && x.service === servers[o.s].edge.service && x.client === client);
        if (mine) endSession(mine, now, "stop");
        break;
      }
      case "wait":
        at((now += o.steps * STEP));
        await beatOthers(null);
        break;
      case "silence": {
        if (servers[o.s].pending !== null) await sendBeat(o.s);
        // Cut off for 35 s (the others heartbeat on); its registry's alarm notices the silence.
        const first = servers[o.s].cut;
        servers[o.s].cut = true;
        at((now += 3 * STEP));
        await beatOthers(o.s);
        at((now += 2 * STEP));
        await beatOthers(o.s);
        if (!first) await fireDue(serverStub(servers[o.s].edge));
        break;
      }
      case "grace": {
        for (let i = 0; i < SERVERS; i++) if (servers[i].pending !== null) await sendBeat(i);
        // The whole fleet silent past SESSION_GRACE_S: the registries' alarms end every session it held.
        at((now += GRACE_WAIT));
        for (let i = 0; i < SERVERS; i++) {
          servers[i].cut = true;
          fence(i, servers[i].edge.service, "timeout");
          unsure.add(i);
        }
        for (const sv of servers) {
          await fireDue(serverStub(sv.edge));
          await deliverNotices(sv.edge);
        }
        break;
      }
      case "beat":
        await sendBeat(o.s);
        break;
      case "restartLate": {
        // The new process's hooks come before its first heartbeat (the next one of this server).
        const sv = servers[o.s];
        if (sv.pending !== null) await sendBeat(o.s);
        sv.pending = sv.edge.service;
        sv.edge = restarted(sv.edge);
        break;
      }
      case "restart": {
        const sv = servers[o.s];
        if (sv.pending !== null) await sendBeat(o.s);
        fence(o.s, sv.edge.service, "restart");
        unsure.add(o.s);
        sv.edge = restarted(sv.edge);
        expect((await beat(sv.edge)).status).toBe(200);
        sv.cut = false;
        sv.lastBeat = now;
        if (o.deliver) await deliverNotices(sv.edge);
        break;
      }
      case "deliver":
        for (const sv of servers) await deliverNotices(sv.edge);
        break;
      case "sweep":
        await runDurableObjectAlarm(streamStub(stream));
        break;
      case "endAll": {
        const res = await admin("DELETE", `/streams/live/${stream}/sessions`);
        expect(res.status).toBe(exists ? 200 : 404);
        if (!exists) break;
        for (const x of open(pubs)) endSession(x, now, "operator"), operatorPublishers++;
        for (const x of open(viewers)) endSession(x, now, "operator"), operatorViewers++;
        break;
      }
      case "endServer": {
        const res = await admin("DELETE", `/servers/${servers[o.s].edge.server}/sessions`);
        expect(res.status).toBe(200);
        for (const x of open(pubs)) if (x.s === o.s) endSession(x, now, "operator"), operatorPublishers++;
        for (const x of open(viewers)) if (x.s === o.s) endSession(x, now, "operator"), operatorViewers++;
        break;
      }
      case "rotate":
        if (!exists) break;
        {
          const res = await admin("PUT", `/streams/live/${stream}`, { rotateKey: true });
          expect(res.status).toBe(200);
          oldKey = key;
          key = res.body.publishKey;
        }
        break;
      case "delete":
        if (!exists) break;
        expect((await admin("DELETE", `/streams/live/${stream}`)).status).toBe(200);
        exists = false;
        break;
      case "recreate":
        if (exists) break;
        oldKey = key;
        key = await createStream(stream, policy);
        exists = true;
        break;
      case "evict": {
 if (o.what === "shard") unsure.add(o.s);
        const stub = o.what === "stream" ? streamStub(stream) : o.what === "registry" ? serverStub(servers[o.s].edge) : shardStub(servers[o.s].edge);
        // An object not running has nothing in memory to lose.
        await evictDurableObject(stub as any).catch((err: Error) => expect(err.message).toMatch(/not currently running/));
        break;
      }
      case "queue":
        queue.mode = o.mode;
        break;
    }
  }

  // --- drain: the queue takes sends again, the cut-off edges heartbeat again, notices and the stream's outbox go out.
  queue.mode = "ok";
  for (let i = 0; i < SERVERS; i++) await heal(i);
  for (const sv of servers) await deliverNotices(sv.edge);
  await runDurableObjectAlarm(streamStub(stream));

  const started = pubs.length;
  const ended = pubs.filter((x) => x.end !== undefined).length;
  const expectedEvents = started + ended + operatorPublishers + operatorViewers;
  const mineOf = () => receiver.of(stream).filter((d) => d.body.type !== "stream.viewer_limit_reached");
  // Polled in real time (vi.waitFor would move the faked Date on), up to 15 s.
  const limitTimes = () => receiver.of(stream).filter((d) => d.body.type === "stream.viewer_limit_reached").map((d) => Date.parse(d.body.timestamp) - T0);
  const covered = () => refusals.every((r) => limitTimes().some((l) => l <= r && l > r - MIN));
  for (let i = 0; i < 300 && (mineOf().length < expectedEvents || !covered()); i++) await scheduler.wait(50);
  // Whatever would come twice or too many comes within this.
  await scheduler.wait(300);
  const context = `\nops:\n${log.join("\n")}\nsessions: ${JSON.stringify(pubs)}\nreceived: ${JSON.stringify(receiver.of(stream).map((d) => d.body))}`;

  // --- one webhook-id, one body
  const bodies = new Map<string, string>();
  for (const a of receiver.attempts.filter((a) => a.body.data.stream === stream)) {
    expect(a.signatureValid).toBe(true);
    const b = JSON.stringify(a.body);
    expect(bodies.get(a.id) ?? b, `webhook-id ${a.id} delivered with two bodies${context}`).toBe(b);
    bodies.set(a.id, b);
  }

  const events = receiver.of(stream);
  const sortKey = (x: string[]) => x.sort();
  // --- stream.started: one per admitted session, at its admission
  const gotStarted = events.filter((d) => d.body.type === "stream.started").map((d) => `${d.body.data.server_id}/${d.body.data.client_id}@${d.body.timestamp}`);
  const wantStarted = pubs.map((x) => `${servers[x.s].edge.server}/${x.client}@${iso(x.since)}`);
  expect(sortKey(gotStarted), `stream.started${context}`).toEqual(sortKey(wantStarted));
  // --- stream.ended: one per ended session, with its reason, start, duration and time
  const gotEnded = events.filter((d) => d.body.type === "stream.ended").map((d) => {
    const x = d.body.data;
    return `${x.server_id}/${x.client_id} ${x.reason} started ${x.started} duration ${x.duration} @${d.body.timestamp}`;
  });
  const wantEnded = pubs.filter((x) => x.end !== undefined).map((x) => `${servers[x.s].edge.server}/${x.client} ${x.reason} started ${iso(x.since)} duration ${(x.end! - x.since) / 1000} @${iso(x.end!)}`);
  expect(sortKey(gotEnded), `stream.ended${context}`).toEqual(sortKey(wantEnded));
  // --- session.ended_by_operator: one per session an operator ended
  const operatorEvents = events.filter((d) => d.body.type === "session.ended_by_operator");
  expect(operatorEvents.filter((d) => d.body.data.role === "publisher").length, `publisher session.ended_by_operator${context}`).toBe(operatorPublishers);
  expect(operatorEvents.filter((d) => d.body.data.role === "viewer").length, `viewer session.ended_by_operator${context}`).toBe(operatorViewers);
  // --- peakViewers: at most what the stream's servers held in the minutes the publish spans (each server's own peak, summed)
  for (const d of events.filter((d) => d.body.type === "stream.ended")) {
    const from = Math.floor((Date.parse(d.body.data.started) - T0) / MIN) * MIN - 1;
    const to = Math.floor((Date.parse(d.body.timestamp) - T0) / MIN) * MIN + MIN;
    let bound = 0;
    for (let i = 0; i < SERVERS; i++) bound += heldPeak(viewers.filter((v) => v.s === i), from, to, now);
    expect(d.body.data.peakViewers, `peakViewers of ${JSON.stringify(d.body.data)}${context}`).toBeLessThanOrEqual(bound);
    // And at least the most viewers one server held at once during the publish, of the servers whose viewers no fence
    // took back (a restart, the grace) and whose shard lost no unwritten peaks (an eviction).
    const since = Date.parse(d.body.data.started) - T0;
    const end = Date.parse(d.body.timestamp) - T0;
    let least = 0;
    for (let i = 0; i < SERVERS; i++) {
      if (unsure.has(i)) continue;
      const held = viewers.filter((v) => v.s === i);
      for (const p of new Set([since, ...held.map((v) => v.since)])) {
        if (p < since || p >= end) continue;
        least = Math.max(least, held.filter((v) => v.since <= p && (v.seenEnd ?? Infinity) > p).length);
      }
    }
    expect(d.body.data.peakViewers, `peakViewers of ${JSON.stringify(d.body.data)} (at least ${least})${context}`).toBeGreaterThanOrEqual(least);
  }
  // --- stream.viewer_limit_reached: at most one a minute, and one within the minute before every refusal
  const limits = events.filter((d) => d.body.type === "stream.viewer_limit_reached").map((d) => Date.parse(d.body.timestamp) - T0).sort((a, b) => a - b);
  for (let i = 1; i < limits.length; i++) expect(limits[i] - limits[i - 1], `viewer_limit_reached twice within a minute${context}`).toBeGreaterThanOrEqual(MIN);
  for (const r of refusals) expect(limits.some((l) => l <= r && l > r - MIN), `a refusal at ${r} ms without stream.viewer_limit_reached${context}`).toBe(true);
  if (cap === null) expect(limits).toEqual([]);

  // --- usage: publishSeconds is the modelled sessions' lengths (open ones up to now); a deleted stream is created again
  // to be asked (README, "Usage": created again under the same name, it reports its earlier life's usage too).
  at(now);
  if (!exists) await createStream(stream, policy);
  const res = await admin("GET", `/streams/live/${stream}/usage?from=${iso(0)}&to=${iso(now + 1)}`);
  expect(res.status).toBe(200);
  const publishSeconds = res.body.buckets.reduce((a: number, b: any) => a + b.publishSeconds, 0);
  const want = pubs.reduce((a, x) => a + ((x.end ?? now) - x.since), 0) / 1000;
  expect(publishSeconds, `publishSeconds${context}`).toBeCloseTo(want, 2);
}

/** The most sessions of `list` held at once in [from, to) (ms since T0), each from its start until the gate learnt its end. */
function heldPeak(list: Session[], from: number, to: number, now: number): number {
  const points = new Set<number>([from]);
  for (const v of list) points.add(v.since);
  let best = 0;
  for (const p of points) {
    if (p < from || p >= to) continue;
    const n = list.filter((v) => v.since <= p && (v.seenEnd ?? now) >= p).length;
    best = Math.max(best, n);
  }
  return best;
}

useFakeClock();

let receiver: Receiver;
beforeEach(() => {
  receiver = new Receiver().install();
  vi.spyOn(console, "error").mockImplementation(() => {});
});

describe("events model: every admitted publish gets one stream.started and one stream.ended, with the right reason and numbers", () => {
  it("whatever the fleet, the operator and the queue do", { timeout: 170_000 }, async () => {
    const h = harness(receiver);
    await fc.assert(fc.asyncProperty(scenarioArb, (sc) => runScenario(h, sc)), { numRuns: 60, endOnFailure: true });
  });
});
