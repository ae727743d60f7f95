/**
 * Model-based property test of the gate WITH SRS's HTTP API (project "srs-api": SRS_API_URL =
 * https://{device_id}.srs.test:1985): ghost checks at refusals and in the background, kicks (key
 * rotation, ends by hand) and publisher takeovers (onDuplicatePublish "replace"), in a small fleet
 * that loses stop hooks, restarts and is partitioned from Cloudflare.
 *
 * The truth of who SRS serves is the fakes' client sets (test/fake-srs.ts): an admitted client joins its
 * server's FakeSrs, a refused one does not; a stop (hook sent) or a LOST stop (no hook) takes it out;
 * a restart clears it; a kick (the gate's DELETE) takes it out, and SRS then sends its stop hook, which
 * the model sends at the next step. Every connection has a fresh client id (SRS's ids are unique per
 * process), RTMP or HLS (so WebRTC's 12 s rule does not apply). A partition: the server's API unreachable
 * and its heartbeats (and hooks) cut off; its clients stay connected to SRS.
 *
 * HLS viewers as SRS 7 treats them (README "SRS caveats": "HLS viewers are counted only with hls_ctx on", "SRS serves a
 * refused HLS viewer that chose its own session id"; "Kicks"): the client id is the hls_ctx the player chose, the on_play
 * is test/srs.ts hlsPlay ("<name>.m3u8", param "?hls_ctx=<id>"); SRS registers the session before the hook and keeps it
 * whatever the answer, so a refused one stays in its FakeSrs (served) until the gate's kick (in the background, 0.3 s after
 * the answer, through the registry's outbox) takes it out; no on_close, its on_stop when SRS expires it (the "stop" op,
 * sometimes lost). A player may come back with the hls_ctx of an earlier session SRS no longer has ("hlsBack"): a new
 * session for SRS, a repeat for the gate if it still holds the earlier one (its stop lost).
 * Slow and hanging APIs (op "api", for 1 to 3 operations): each answer of one server's API takes 1.5 s (every call within
 * its 2 s, a refusal's check with its versions call not) or 2.5 s (no call in time, but SRS carries the call out all the
 * same: a DELETE the gate gave up on still kicks, FakeSrs.lateEffects), or never comes. These delays are real time (a
 * refusal's 2 s and a call's 2 s are real timers) while the fake clock stands still: the model's time is not the gate's
 * during them, so nothing here is about durations, and an API is back only once the calls it held are over.
 *
 * Invariants, checked at every step (README is the contract):
 * (1) Exact cap as SRS sees it: when the gate admits a viewer, the viewers of that stream SRS serves
 *     and the gate admitted (and did not end) on servers not silent are fewer than maxViewers.
 *     Checked at admission, not as a standing bound: README "Fleet state you can trust", "Viewers over
 *     the cap after a heal all count" (a partitioned server's viewers are suspended and count again
 *     when it returns, possibly over the cap), and a cap lowered under the count keeps every viewer.
 * (2) One publisher: when the gate admits a publisher, no other publisher of that stream that SRS
 *     serves and the gate admitted is on a server not silent (a takeover's kicked publisher is gone
 *     from SRS before the new one is admitted). After a heal two may be served (README "Two publishers
 *     after a heal: the one holding the stream keeps it"): then the gate's view has at most one "live",
 *     and the holder is the one live the longest (admission or return), the returning one in conflict.
 * (3) Never refused by a ghost, while every server is reachable and heartbeating and none came back
 *     within 5 s (README "Bounds": a server whose API failed is left alone for 5 s): a play refused
 *     4005 rests on viewers SRS serves, save ghosts README lets stand: ghosts that left SRS less than
 *     3 s ago (an answer is kept 3 s), and ghosts on OTHER edges (found by background rounds, "it keeps
 *     its slot at most about 8 s ... past the refusals that rest on it"); a shard refused within the
 *     last 30 s waits (README "Flash crowds": "A shard still refused waits", WAIT_HOLD_MS) and may be
 *     refused while a slot is free elsewhere, but not while a ghost of its own edge holds one. At most
 *     8 clients per server here, so a refusal asks about all of them (at most 20). A publish refused
 *     4004 or 4009 rests on a publisher SRS serves (or one gone less than 3 s ago).
 * (4) After time passes and alarms run: GET /admin/streams/{app}/{stream} viewers and suspendedViewers
 *     are the model's admitted viewers on live / silent servers; after 61 s, the background walk has
 *     ended every ghost (viewer or publisher) of a reachable live server older than 12 s.
 * (5) The gate never ends a session SRS still serves (except by an operator's end, a restart, a takeover:
 *     the model follows these), and holds no session the model did not admit (but of a retired process,
 *     until the registry's notice reaches the stream).
 * (6) Once its kick window has passed, SRS serves no HLS session the gate refused: 3 s after the refusal when its
 *     server's API answered in time since, or 31 s after it answers again (the outbox's backoff is 30 s at most; a kick
 *     is given up after 5 minutes). (1) counts served admitted HLS viewers like the RTMP ones; a refused HLS session is no
 *     admission.
 * (7) A play or publish whose answer needs no API call makes none ("Bounds": "Never on the path of an admitted hook"):
 *     counted in test/fake-srs.ts allCalls once earlier steps' calls are over, for an admission while the gate holds
 *     fewer viewers than the cap (or none is set) but of servers silent for a while, a repeat, or a publish while it
 *     holds no publisher but of servers silent for a while. With slow APIs,
 *     (1) and (2) say that no admission goes beside a session whose status was not confirmed gone; (3) and (4)'s walk
 *     are checked only while every API answers at once (and 5.5 s after it is back, as after a heal).
 *
 * Run: `npx vitest run --project srs-api test/srs-api/model-api.test.ts` (16 runs, 40 to 60 s: the slow APIs wait in real time). A longer
 * hunt: edit RUNS, MAX_OPS and SEED below (workerd's test runner does not see the shell's environment);
 * STATS = true prints what the runs exercised (refusals checked, takeovers, conflicts, ghosts the gate
 * ended). Hunted so far, all passing: 150 runs with 40 ops (random seeds), 200 runs with 40 ops, and
 * 150 runs with 60 ops at seeds 4242 and 777 (about 170 s each). Split thousands of runs over several
 * processes (SQLite files stay open per file, see test/model.test.ts). With HLS viewers and slow APIs: 60 runs with
 * 40 ops (seed 101) and 60 with 60 ops (seed 202) passed on the code before 7d0b7ac; a targeted sequence then found
 * its defect (below). After it: 60 runs with 40 ops and 50 with 60 ops at seeds 505/606, 707/808, 707/909 (the
 * second of each with hlsBack weighing 4 and api 3), and 60 runs with 40 ops at seeds 1111 and 1212 (the second with
 * takeovers: publish weighing 8, every put "replace", hlsBack 5, api 4), all passing once the model gaps below were fixed
 * (2 to 3 minutes each, two processes at a time).
 *
 * Defects found with HLS viewers and slow APIs: a player refused again with its hls_ctx, while the kick of its earlier
 * refused session still waited for its edge with a backoff of up to 30 s, was served until that backoff ran out, its
 * edge's API answering all along (7d0b7ac, test/srs-api/hls-kick-outbox.test.ts; seeded below).
 *
 * Model gaps resolved by reading README (not defects of the gate), each encoded where it is checked:
 * over-cap counts after a heal or a lowered cap ("Viewers over the cap after a heal all count": (1) is
 * checked at admission only); two publishers SRS serves after a heal ("Two publishers after a heal");
 * a waiting shard's refusals while a slot is free elsewhere ("Flash crowds", "A shard still refused
 * waits"); ghosts on other edges found by the stream's rounds, not the refusal ("a ghost on *another*
 * edge is found by those background checks"); answers kept 3 s and a failed API left alone 5 s ("Bounds").
 * With HLS viewers and slow APIs: a refused HLS session served until its kick, and longer while its edge's API cannot
 * answer ("Kicks": retried after 1 s doubling to 30 s, for 5 minutes: (6) waits 31 s after the API is back); an HLS
 * player back with the hls_ctx of a session the gate still holds is a repeat, admitted whatever the count ("How it
 * decides": "A repeat of a live session is always allowed"), so (1) is not checked for it; an API answering in 1.5 s
 * makes a refusal's check unknown (its "not found" needs the versions call too: 3 s, past the refusal's 2 s), so (3)
 * waits for every API to answer at once; a call to a hanging API fails 2 s of real time after it was sent, when the
 * model's clock may have moved on, and leaves its server alone 5 s from then ("Bounds"), so an API is back once its calls
 * are over. Model bugs found by hunts: an operator's end marked the first of a player's sessions under a reused hls_ctx,
 * not the admitted one.
 *
 * Not covered: WebRTC viewers, viewer identity and seats, revocations, deleting a stream; an HLS player back with its
 * hls_ctx on ANOTHER stream (SRS serves that with no hook while the id is live: README "Beyond any hook"); durations
 * (a refusal's 2 s bound, the kick outbox's 5 s contract: test/srs-api/bounds.test.ts and neighbours measure those).
 */
import { env } from "cloudflare:workers";
import fc from "fast-check";
import { describe, expect, it, vi } from "vitest";
import { serverRegistry, viewerShard } from "../../src/object-access";
import { admin, heartbeat, hlsPlay, hook, play, publish, stopPlay, unpublish } from "../srs";
import { allCalls, FakeSrs, hosts, installFakeSrs, network } from "../fake-srs";
import { keyOf, modelFrame, runEveryAlarm, streamObjectOf } from "../model-kit";
import { fireDue } from "../fleet";

installFakeSrs();

const RUNS = 16;
const MAX_OPS = 40;
const SEED: number | undefined = undefined;

const TIMEOUT_MS = 30_000; // SERVER_TIMEOUT_S
const SERVERS = 3;
const STREAMS = 2;
const MAX_CLIENTS = 8;

type ApiMode = "slow1500" | "slow2500" | "hang" | "ok";

/** `dt`: how long before the operation (ms), so that kept answers (3 s) and rounds (1 s) expire between operations. */
type Op = { dt?: number } & (
  | { t: "play"; server: number; stream: number }
  /** An HLS player that chose its hls_ctx (its client id): SRS registers the session before on_play and keeps it whatever the answer. */
  | { t: "hls"; server: number; stream: number }
  /** An HLS player back with the hls_ctx of one of its earlier sessions on that stream that SRS no longer has (expired or kicked). */
  | { t: "hlsBack"; server: number; pick: number }
  /**
   * One server's API: each answer takes 1.5 s or 2.5 s (under and over a call's 2 s), or never comes, for the next `steps`
   * operations (their real time is the API's: a few steps keep the runs short), or back to normal.
   */
  | { t: "api"; server: number; mode: ApiMode; steps?: number }
  | { t: "stop"; server: number; pick: number; lost: boolean }
  | { t: "publish"; server: number; stream: number }
  | { t: "unpublish"; server: number; pick: number; lost: boolean }
  | { t: "restart"; server: number }
  | { t: "partition"; server: number }
  | { t: "heal"; server: number }
  | { t: "wait"; ms: number }
  | { t: "put"; stream: number; maxViewers?: number | null; dup?: "deny" | "replace"; rotate: boolean }
  | { t: "end"; stream: number }
  /** New viewers on one server, one a second for `seconds`. */
  | { t: "crowd"; server: number; stream: number; seconds: number }
);

const server = fc.integer({ min: 0, max: SERVERS - 1 });
const stream = fc.integer({ min: 0, max: STREAMS - 1 });
const pick = fc.nat(7);
const bare: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ t: fc.constant("play" as const), server, stream }), weight: 8 },
  { arbitrary: fc.record({ t: fc.constant("hls" as const), server, stream }), weight: 5 },
  { arbitrary: fc.record({ t: fc.constant("hlsBack" as const), server, pick }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant("api" as const), server, mode: fc.constantFrom<ApiMode>("slow1500", "slow2500", "hang"), steps: fc.integer({ min: 1, max: 3 }) }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant("stop" as const), server, pick, lost: fc.boolean() }), weight: 4 },
  { arbitrary: fc.record({ t: fc.constant("publish" as const), server, stream }), weight: 4 },
  { arbitrary: fc.record({ t: fc.constant("unpublish" as const), server, pick, lost: fc.boolean() }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant("restart" as const), server }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant("partition" as const), server }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant("heal" as const), server }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant("wait" as const), ms: fc.constantFrom(4_000, 4_000, 31_000, 61_000) }), weight: 3 },
  {
    arbitrary: fc.record(
      { t: fc.constant("put" as const), stream, maxViewers: fc.constantFrom<number | null>(1, 2, 2, 3, null), dup: fc.constantFrom<"deny" | "replace">("deny", "replace", "replace"), rotate: fc.boolean() },
      { requiredKeys: ["t", "stream", "rotate"] },
    ),
    weight: 2,
  },
  { arbitrary: fc.record({ t: fc.constant("end" as const), stream }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant("crowd" as const), server, stream, seconds: fc.constantFrom(5, 15) }), weight: 1 },
);
const op: fc.Arbitrary<Op> = fc.tuple(bare, fc.constantFrom(1, 1, 1, 700, 3_200)).map(([o, dt]) => (dt === 1 ? o : { ...o, dt }));

interface Srv {
  id: string;
  device: string;
  service: string;
  retired: string[];
  fake: FakeSrs;
  partitioned: boolean;
  lastBeat: number;
  /** When its API last came back to answering at once (a heal, a restart after a partition, a slow or hanging API back). */
  healedAt: number;
  /** Since when its API answers each call within its 2 s (null: it does not now; partitioned, hanging or 2.5 s slow). */
  apiOkSince: number | null;
}

interface Conn {
  server: number;
  service: string;
  client: string;
  stream: number;
  role: "viewer" | "publisher";
  /** The gate admitted it and the model knows of no end (stop, restart, end by hand, takeover). */
  admitted: boolean;
  /** When it left SRS (stop, lost stop, kick); null while SRS serves it. */
  leftAt: number | null;
  /** Admission, or its server's return after a silence: for the holder among publishers. */
  liveSince: number;
  admittedAt: number;
  /** An HLS session (client id = its hls_ctx, on_play stream "<name>.m3u8"): its stop is an expiry, no on_close. */
  hls: boolean;
  /** An HLS session the gate refused, which SRS serves until the gate's kick (README "SRS serves a refused HLS viewer ..."). */
  refusedAt: number | null;
}

interface Str {
  name: string;
  key: string;
  cap: number | null;
  dup: "deny" | "replace";
  /** Per server: the last refusal for the cap (a shard refused waits, WAIT_HOLD_MS). */
  refusedAt: Map<number, number>;
  /** Every refusal for the cap, in order (the stream's background rounds run while refused edges wait). */
  refusals: number[];
  /** When the gate last let go of a slot the model knows of (a viewer's stop, an end, a restart, a ghost's end seen, a cap raised). */
  freedAt: number;
}

let run = 0;
let failed = false;
/** What the runs exercised (printed at the end with STATS = true). */
const stats: Record<string, number> = {};
const count = (k: string) => void (stats[k] = (stats[k] ?? 0) + 1);
const STATS = false;

async function runSequence(ops: Op[]): Promise<void> {
  try {
    await runOnce(ops);
  } catch (err) {
    if (err instanceof Error) err.message += `\nsequence: ${JSON.stringify(ops)}`;
    // The first failure, at once (a shrink that runs out of the test's time would hide it).
    if (!failed) console.error(`FIRST FAILURE: ${err instanceof Error ? err.message : String(err)}`);
    failed = true;
    throw err;
  }
}

async function runOnce(ops: Op[]): Promise<void> {
  run++;
  const t0 = Date.parse("2031-03-01T12:00:00Z");
  let now = 0;
  vi.setSystemTime(t0);
  const tag = `${run}${crypto.randomUUID().slice(0, 4)}`;
  const setClock = (ms: number) => {
    now = ms;
    vi.setSystemTime(t0 + now);
  };
  let ipCounter = 0;
  const fresh = (body: Record<string, unknown>) => ({ ...body, ip: `2001:db8::${(++ipCounter).toString(16)}` });
  let clientCounter = 0;

  const servers: Srv[] = [];
  for (let i = 0; i < SERVERS; i++) {
    const id = `vid-m${tag}x${i}`;
    const device = `dev-m${tag}x${i}`;
    const service = `svc${tag}x${i}a`;
    const fake = new FakeSrs(id, service);
    // A slow SRS carries out a call whose caller gave up (a DELETE past its 2 s still kicks).
    fake.lateEffects = true;
    hosts.set(`${device}.srs.test:1985`, fake);
    servers.push({ id, device, service, retired: [], fake, partitioned: false, lastBeat: 0, healedAt: -Infinity, apiOkSince: 0 });
  }
  const beat = async (s: Srv) => {
    expect((await hook({ ...heartbeat({ server: s.id, service: s.service }), device_id: s.device }, undefined, "/heartbeat")).status).toBe(200);
    s.lastBeat = now;
  };
  for (const s of servers) await beat(s);
  const streams: Str[] = [];
  for (let i = 0; i < STREAMS; i++) {
    const name = `mapi-${tag}-${i}`;
    const res = await admin("PUT", `/streams/live/${name}`, { maxViewers: 2 });
    expect(res.status).toBe(201);
    streams.push({ name, key: res.body.publishKey, cap: 2, dup: "deny", refusedAt: new Map(), refusals: [], freedAt: 0 });
  }
  const conns: Conn[] = [];

  // Silence as the gate sees it, with a band around SERVER_TIMEOUT_S where the model does not know.
  const surelySilent = (s: Srv) => now - s.lastBeat > TIMEOUT_MS + 1_000;
  const surelyLive = (s: Srv) => now - s.lastBeat < TIMEOUT_MS - 1_000;
  /** Its API answers every call at once (the model's checks of ghosts found and refusals that rest on none hold only then). */
  const apiNormal = (s: Srv) => !s.partitioned && !s.fake.hang && s.fake.delayMs === 0;
  /** Its API answers each call within a call's 2 s (a kick goes through, slowly). */
  const apiAnswers = (s: Srv) => !s.partitioned && !s.fake.hang && s.fake.delayMs < 2_000;
  /** After any change of a server's reachability or API speed: when its API came back (healedAt) or began to answer in time (apiOkSince). */
  const apiChanged = (s: Srv, wasNormal: boolean) => {
    if (!wasNormal && apiNormal(s)) s.healedAt = now;
    if (!apiAnswers(s)) s.apiOkSince = null;
    else if (s.apiOkSince === null) s.apiOkSince = now;
  };
  const served = (c: Conn) => c.leftAt === null;
  const who = (c: Conn) => ({ server: servers[c.server].id, service: c.service, client: c.client });
  const keyOfConn = (c: Conn) => keyOf(who(c));
  const connected = (s: number) => conns.filter((c) => c.server === s && served(c));
  const codeOf = (r: { status: number; body: any }) => (r.status === 200 && r.body?.code === 0 ? 0 : r.body?.code);
  const pendingStops: Conn[] = [];

  /** Clients the gate kicked (gone from their FakeSrs): SRS sends their stop hooks. */
  const noticeKicks = () => {
    for (const c of conns) {
      if (!served(c) || servers[c.server].fake.clients.has(c.client)) continue;
      if (c.refusedAt !== null) count(`refused hls kicked ${now - c.refusedAt < 3_000 ? "within 3 s" : "later"}`);
      c.leftAt = now;
      pendingStops.push(c);
    }
  };
  const sendStop = async (c: Conn, where: string) => {
    const st = streams[c.stream];
    // An HLS session's on_stop, when SRS expires it (2 × hls_window after its last request) or after a kick, names "<name>.m3u8".
    const body = c.role === "viewer" ? { ...stopPlay("live", st.name, who(c)), ...(c.hls ? { stream: `${st.name}.m3u8` } : {}) } : unpublish("live", st.name, who(c));
    expect((await hook(fresh(body))).status, where).toBe(200);
    if (c.admitted && c.role === "viewer") st.freedAt = now;
    c.admitted = false;
  };
  const deliverKickStops = async (where: string) => {
    noticeKicks();
    while (pendingStops.length > 0) {
      const c = pendingStops.shift()!;
      if (servers[c.server].partitioned || c.service !== servers[c.server].service) continue; // its hook cannot reach the gate
      await sendStop(c, `${where}: stop of a kicked client`);
    }
  };

  const viewersHeld = async (st: Str) => {
    const key = `__defaultVhost__/live/${st.name}`;
    const per = await Promise.all(servers.map(async (s) => (await viewerShard(env, s.id).viewersOf(key)).map((v) => keyOf({ server: s.id, service: v.serviceId, client: v.clientId }))));
    return new Set(per.flat());
  };
  const publishersHeld = async (st: Str) =>
    new Set((await streamObjectOf(st.name).publisherSessions()).map((p) => keyOf({ server: p.serverId, service: p.serviceId, client: p.clientId })));

  /** (5): only sessions SRS no longer serves leave the gate unbeknown to the model; the model follows the gate's ghost ends. */
  const sync = async (where: string) => {
    for (const [i, st] of streams.entries()) {
      const held = new Set([...(await viewersHeld(st)), ...(await publishersHeld(st))]);
      for (const c of conns.filter((c) => c.stream === i && c.admitted)) {
        if (held.has(keyOfConn(c))) continue;
        expect(served(c), `${where}: ${c.role} ${keyOfConn(c)} of ${st.name} ended by the gate while SRS serves it`).toBe(false);
        c.admitted = false;
        if (c.role === "viewer") st.freedAt = now;
        count(`gate ended a ghost ${c.role}`);
      }
      const admittedKeys = new Set(conns.filter((c) => c.stream === i && c.admitted).map(keyOfConn));
      const retired = new Set(servers.flatMap((s) => s.retired.map((svc) => `${s.id}/${svc}/`)));
      const extra = [...held].filter((k) => !admittedKeys.has(k) && ![...retired].some((r) => k.startsWith(r)));
      expect(extra, `${where}: ${st.name}: sessions the gate holds that the model never admitted (or saw end)`).toEqual([]);
    }
  };

  /** The objects' alarms that are due by the fake clock run, as the platform would run them. */
  const dueAlarms = async () => {
    for (const s of servers) await fireDue(serverRegistry(env, s.id));
    for (const st of streams) await fireDue(streamObjectOf(st.name));
    for (const s of servers) await fireDue(viewerShard(env, s.id));
  };
  /** A server by id cut off and silent for a while (its silence told to the objects that hold its sessions). */
  const longSilent = (serverId: string) => servers.some((s) => s.id === serverId && s.partitioned && now - s.lastBeat > TIMEOUT_MS + 5_000);
  const allReachableAndLive = () => servers.every((s) => apiNormal(s) && surelyLive(s) && now - s.healedAt > 5_500);

  /**
   * API calls a hook makes (allCalls, pushed as each call is sent), counted once the background calls of earlier steps are
   * over (late answers of a refusal's check, kicks started at once): null when some are still on their way after 8 s.
   */
  const quiet = async () => {
    for (let i = 0; i < 400; i++) {
      if (network.inFlight === 0) {
        await new Promise((r) => setTimeout(r, 2));
        if (network.inFlight === 0) return true;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    return false;
  };

  /** An on_play of a new client on server `srv` for stream `si`, as SRS sends it, and the checks of its answer. */
  const doPlay = async (srv: number, si: number, where: string, hls = false, reuse?: string) => {
    const s = servers[srv];
    if (s.partitioned || connected(srv).length >= MAX_CLIENTS) return;
    const st = streams[si];
    const c: Conn = { server: srv, service: s.service, client: reuse ?? `${hls ? "h" : "v"}${++clientCounter}`, stream: si, role: "viewer", admitted: false, leftAt: null, liveSince: now, admittedAt: now, hls, refusedAt: null };
    const viewersOf = () => conns.filter((x) => x.stream === si && x.role === "viewer" && x.admitted);
    // An HLS player back with its hls_ctx while the gate still holds that session (its stop was lost): a repeat of its on_play,
    // "always allowed" and "not counted twice" (README "How it decides", "A repeat of a live session is always allowed").
    const same = conns.find((x) => x.admitted && x.role === "viewer" && x.stream === si && x.server === srv && x.service === c.service && x.client === c.client);
    // Before: counts as SRS sees them.
    const before = viewersOf();
    const uncertain = servers.some((x) => !surelyLive(x) && !surelySilent(x));
    const servedLive = before.filter((x) => served(x) && !surelySilent(servers[x.server])).length;
    // (7) An admission that needs no API call makes none (README "Bounds": "Never on the path of an admitted hook"): a slot free
    // as the gate counts (its sessions, but those of servers silent for a while: "suspended viewers do not count"), or a repeat.
    const counted = [...(await viewersHeld(st))].filter((k) => !longSilent(k.slice(0, k.indexOf("/"))));
    const noApi = same !== undefined || st.cap === null || (!uncertain && counted.length < st.cap);
    const calm = await quiet();
    const calls0 = allCalls.length;
    // SRS registers an HLS session before it sends on_play, and keeps it whatever the answer when the player chose its hls_ctx
    // (README "SRS caveats": "SRS serves a refused HLS viewer that chose its own session id").
    if (hls) s.fake.clients.add(c.client);
    const res = await hook(fresh(hls ? hlsPlay(st.name, who(c), `?hls_ctx=${c.client}`) : play("live", st.name, who(c))));
    const made = allCalls.slice(calls0).map((x) => `${x.method} ${x.host}${x.path}`);
    const code = codeOf(res);
    expect([0, 4005], `${where}: answered ${JSON.stringify(res)}`).toContain(code);
    if (same) expect(code, `${where}: a repeat of the on_play of ${keyOfConn(same)}, which the gate holds, refused`).toBe(0);
    if (code === 0) {
      if (calm && noApi) expect(made, `${where}: an admission that needed no API call made some`).toEqual([]);
      if (calm && noApi && servers.some((x) => !apiNormal(x))) count("play admitted, no API call, while an API is slow or cut off");
      if (!calm) count("hook's calls not counted: earlier calls still on their way");
      s.fake.clients.add(c.client);
      c.admitted = true;
      conns.push(c);
      count(hls ? "hls admitted" : "play admitted");
      if (same) {
        // One session in the gate and in SRS: the earlier conn's session is this one now.
        same.admitted = false;
        count("hls repeat");
        return;
      }
      if (st.cap !== null && before.filter((x) => !surelySilent(servers[x.server])).length >= st.cap) count("admitted in a ghost's slot");
      // (1) Admitted only under the cap, as SRS sees it.
      if (st.cap !== null && !uncertain) expect(servedLive, `${where}: admitted with ${servedLive} viewers SRS serves at cap ${st.cap}`).toBeLessThan(st.cap);
    } else {
      if (hls) {
        // Served until the gate's kick (README "Kicks": in the background, 0.3 s after the answer).
        c.refusedAt = now;
        conns.push(c);
        count(`hls refused${apiNormal(s) ? "" : " (API slow or cut off)"}`);
      }
      expect(st.cap, `${where}: refused for the cap of an unlimited stream`).not.toBeNull();
      // (3) Never refused by a ghost.
      count(`play refused ${allReachableAndLive() ? "checked" : "unchecked"}`);
      if (allReachableAndLive()) {
        const servedAll = before.filter(served).length;
        const ghosts = before.filter((x) => !served(x));
        const ghostsHere = ghosts.filter((x) => x.server === srv && now - x.leftAt! >= 3_100);
        const otherGhosts = ghosts.length - ghostsHere.length;
        const waiting = now - (st.refusedAt.get(srv) ?? -Infinity) < 30_000;
        const detail = `${where}: refused 4005 at cap ${st.cap}; SRS serves ${servedAll} admitted viewers; ghosts here (gone ≥3 s) ${JSON.stringify(ghostsHere.map(keyOfConn))}, other ghosts ${otherGhosts}, waiting ${waiting}`;
        if (ghostsHere.length > 0) count("refusal with an old ghost here");
        // (3b) A ghost on another edge keeps its slot at most about 8 s (plus the 3 s an answer is kept) past the
        // refusals that rest on it: the stream's rounds, 1 s after a refusal then at gaps doubling up to 8 s while a
        // refused edge waits (40 s after its last refusal). The model's alarms run when due at each step (2 s apart at most).
        const overdue = ghosts.filter((g) => {
          if (g.server === srv || servers[g.server].healedAt >= g.leftAt!) return false;
          const rs = [...st.refusals, now];
          const first = rs.findIndex((f) => f >= g.leftAt!);
          if (first < 0 || first === rs.length - 1) return false;
          for (let k = first + 1; k < rs.length; k++) if (rs[k] - rs[k - 1] > 30_000) return false;
          return now >= Math.max(rs[first] + 1_000, g.leftAt! + 3_100) + 8_000 + 2_500;
        });
        if (overdue.length > 0) count("refusal with an overdue ghost elsewhere");
        const legit = servedAll + otherGhosts - overdue.length;
        const othersWaiting = [...st.refusedAt].some(([x, at]) => x !== srv && now - at < 30_000);
        const why = `${detail}; overdue ghosts elsewhere ${JSON.stringify(overdue.map((g) => [keyOfConn(g), g.leftAt]))}, refusals ${JSON.stringify(st.refusals)}, slot last freed at ${st.freedAt}`;
        if (legit < st.cap!) {
          if (!waiting) expect(legit, why).toBeGreaterThanOrEqual(st.cap!);
          else if (!othersWaiting) {
            // README "Flash crowds": a shard still refused waits until the stream tells it that slots are free, "a viewer is
            // refused while a slot is unused somewhere only if ... that slot is on its way back ..., and for at most about 8 s"
            // (plus a round or two of the word, and the 3 s an answer is kept for a ghost's slot); its own ghosts are found at
            // its refusal.
            expect(ghostsHere, why).toEqual([]);
            expect(now - st.freedAt, why).toBeLessThan(14_000);
          }
        }
      }
      st.refusedAt.set(srv, now);
      st.refusals.push(now);
    }
  };

  // At the end every API is back, and a last minute passes.
  const last: Op[] = [...servers.map((_, i) => ({ t: "api", server: i, mode: "ok" }) as Op), { t: "wait", ms: 61_000 }];
  const slowUntil = new Map<number, number>();
  for (const [step, o] of [...ops, ...last].entries()) {
    const where = `step ${step} ${JSON.stringify(o)}`;
    // A slow or hanging API back once its steps are over.
    for (const [i, until] of slowUntil) {
      if (step <= until) continue;
      const s = servers[i];
      // Calls it holds end first (a call's 2 s are real time, the model's clock stands still meanwhile): their failures
      // leave its server alone for 5 s from when they are told ("Bounds"), so its API is back only once they are over.
      await quiet();
      const wasNormal = apiNormal(s);
      s.fake.hang = false;
      s.fake.delayMs = 0;
      apiChanged(s, wasNormal);
      slowUntil.delete(i);
    }
    setClock(now + (o.dt ?? 1));
    // Heartbeats every 10 s of every server not cut off.
    for (const s of servers) if (!s.partitioned && now - s.lastBeat >= 10_000) await beat(s);
    await dueAlarms();
    await deliverKickStops(where);

    if (o.t === "play" || o.t === "hls") {
      await doPlay(o.server, o.stream, where, o.t === "hls");
    } else if (o.t === "hlsBack") {
      // Its earlier sessions SRS no longer has (an id SRS has is served with no hook), the newest process's or an older one's.
      const back = conns.filter((c) => c.hls && c.server === o.server && !served(c) && !conns.some((x) => x.server === o.server && x.client === c.client && served(x)));
      if (back.length === 0) continue;
      const c = back[o.pick % back.length];
      await doPlay(o.server, c.stream, where, true, c.client);
    } else if (o.t === "api") {
      const s = servers[o.server];
      await quiet();
      const wasNormal = apiNormal(s);
      s.fake.hang = o.mode === "hang";
      s.fake.delayMs = o.mode === "slow1500" ? 1_500 : o.mode === "slow2500" ? 2_500 : 0;
      apiChanged(s, wasNormal);
      slowUntil.set(o.server, step + (o.steps ?? Infinity));
    } else if (o.t === "crowd") {
      // Viewers keep coming, one a second: refusals at a full stream go on (the stream's rounds run meanwhile).
      for (let k = 0; k < o.seconds; k++) {
        setClock(now + 1_000);
        for (const s of servers) if (!s.partitioned && now - s.lastBeat >= 10_000) await beat(s);
        await dueAlarms();
        await deliverKickStops(where);
        await doPlay(o.server, o.stream, `${where} (second ${k})`);
      }
    } else if (o.t === "stop" || o.t === "unpublish") {
      const role = o.t === "stop" ? "viewer" : "publisher";
      const mine = connected(o.server).filter((c) => c.role === role);
      if (mine.length === 0) continue;
      const c = mine[o.pick % mine.length];
      servers[o.server].fake.clients.delete(c.client);
      c.leftAt = now;
      if (!o.lost && !servers[o.server].partitioned) await sendStop(c, where);
    } else if (o.t === "publish") {
      const s = servers[o.server];
      if (s.partitioned || connected(o.server).length >= MAX_CLIENTS) continue;
      const st = streams[o.stream];
      const c: Conn = { server: o.server, service: s.service, client: `p${++clientCounter}`, stream: o.stream, role: "publisher", admitted: false, leftAt: null, liveSince: now, admittedAt: now, hls: false, refusedAt: null };
      // (7) With no publisher held but on servers silent for a while (no ghost check asks about those: README "Publisher
      // busy", after asking the registry whether that publisher's server is alive), the admission needs no API call, and makes none.
      const noApi = [...(await publishersHeld(st))].every((k) => longSilent(k.slice(0, k.indexOf("/"))));
      const calm = await quiet();
      s.fake.clients.add(c.client); // SRS holds the connection while it asks
      const uncertain = servers.some((x) => !surelyLive(x) && !surelySilent(x));
      const calls0 = allCalls.length;
      const res = await hook(fresh(publish("live", st.name, st.key, who(c))));
      const made = allCalls.slice(calls0).map((x) => `${x.method} ${x.host}${x.path}`);
      const code = codeOf(res);
      expect([0, 4004, 4009], `${where}: answered ${JSON.stringify(res)}`).toContain(code);
      const others = () => conns.filter((x) => x.stream === o.stream && x.role === "publisher" && x.admitted);
      if (code === 0) {
        if (calm && noApi) expect(made, `${where}: an admission that needed no API call made some`).toEqual([]);
        c.admitted = true;
        count("publish admitted");
        if (others().some((x) => x.admitted && served(x))) count("takeover");
        // A takeover's kick happened inside the hook: the kicked publisher is gone from SRS now.
        noticeKicks();
        const rivals = others().filter((x) => served(x) && !surelySilent(servers[x.server]));
        if (!uncertain) expect(rivals.map(keyOfConn), `${where}: admitted beside publishers SRS serves on live servers`).toEqual([]);
        conns.push(c);
      } else {
        s.fake.clients.delete(c.client);
        count(`publish refused ${code}`);
        if (allReachableAndLive()) {
          const holders = others().filter((x) => served(x) || now - x.leftAt! < 3_100);
          expect(holders.length, `${where}: refused ${code} (${JSON.stringify(res.body)}) with no publisher SRS serves (admitted: ${JSON.stringify(others().map((x) => [keyOfConn(x), x.leftAt]))})`).toBeGreaterThan(0);
          // README "Publisher takeover": with every edge reachable, the takeover kicks the old publisher and admits the new.
          expect(code, `${where}: takeover refused though every edge is reachable: ${JSON.stringify(res.body)} (admitted: ${JSON.stringify(others().map((x) => [keyOfConn(x), x.leftAt]))})`).not.toBe(4009);
        }
      }
    } else if (o.t === "restart") {
      const s = servers[o.server];
      s.retired.push(s.service);
      s.service = `svc${tag}x${o.server}${String.fromCharCode(98 + s.retired.length)}`;
      s.fake.clients.clear();
      s.fake.service = s.service;
      const wasNormal = apiNormal(s);
      if (s.partitioned) s.healedAt = now;
      s.partitioned = false;
      s.fake.reachable = true;
      apiChanged(s, wasNormal);
      for (const c of conns.filter((c) => c.server === o.server)) {
        if (c.admitted && c.role === "viewer") streams[c.stream].freedAt = now;
        c.admitted = false;
        if (c.leftAt === null) c.leftAt = now;
      }
      await beat(s);
    } else if (o.t === "partition") {
      const s = servers[o.server];
      const wasNormal = apiNormal(s);
      s.partitioned = true;
      s.fake.reachable = false;
      apiChanged(s, wasNormal);
    } else if (o.t === "heal") {
      const s = servers[o.server];
      if (!s.partitioned) continue;
      const wasSilent = surelySilent(s);
      const wasNormal = apiNormal(s);
      s.partitioned = false;
      s.fake.reachable = true;
      s.healedAt = now;
      apiChanged(s, wasNormal);
      // Back after a silence: its sessions are live again from now; in the band around SERVER_TIMEOUT_S the model does not know.
      const known = wasSilent || surelyLive(s);
      for (const c of conns.filter((c) => c.server === o.server && c.admitted)) if (!known || wasSilent) c.liveSince = known ? now : NaN;
      await beat(s);
    } else if (o.t === "wait") {
      const end = now + o.ms;
      while (now < end) {
        setClock(Math.min(end, now + 2_000));
        for (const s of servers) if (!s.partitioned && now - s.lastBeat >= 10_000) await beat(s);
        await dueAlarms();
      }
      await new Promise((r) => setTimeout(r, 20));
      await deliverKickStops(where);
      await runEveryAlarm(servers.map((s) => s.id), streams.map((st) => st.name));
      await new Promise((r) => setTimeout(r, 20));
      await deliverKickStops(where);
    } else if (o.t === "put") {
      const st = streams[o.stream];
      const body = { ...(o.maxViewers !== undefined ? { maxViewers: o.maxViewers } : {}), ...(o.dup !== undefined ? { onDuplicatePublish: o.dup } : {}), ...(o.rotate ? { rotateKey: true } : {}) };
      const res = await admin("PUT", `/streams/live/${st.name}`, body);
      expect(res.status, where).toBe(200);
      if (o.maxViewers !== undefined) st.freedAt = now;
      if (o.maxViewers !== undefined) st.cap = o.maxViewers;
      if (o.dup !== undefined) st.dup = o.dup;
      if (o.rotate) st.key = res.body.publishKey;
    } else if (o.t === "end") {
      const st = streams[o.stream];
      const res = await admin("DELETE", `/streams/live/${st.name}/sessions`);
      expect(res.status, where).toBe(200);
      for (const e of res.body.ended) {
        // The admitted one of its sessions (an HLS player back with its hls_ctx has earlier ones under the same id).
        const c = conns.find((c) => c.admitted && c.stream === o.stream && servers[c.server].id === e.serverId && c.service === e.serviceId && c.client === e.clientId);
        if (c?.admitted && c.role === "viewer") st.freedAt = now;
        if (c) c.admitted = false;
      }
    }

    await deliverKickStops(where);
    await sync(where);

    // (6) Once its kick window has passed, SRS serves no HLS session the gate refused (README "SRS caveats": "streamgate kicks
    // every on_play it does not admit whose param mentions hls_ctx"; "Kicks": 0.3 s after the answer, retried after 1 s
    // doubling to 30 s while the API cannot be reached, for 5 minutes): 3 s after the refusal with its API answering since,
    // or 31 s after its API answers again.
    for (const c of conns) {
      if (c.refusedAt === null || !served(c)) continue;
      const since = servers[c.server].apiOkSince;
      if (since === null) continue;
      const due = since <= c.refusedAt ? c.refusedAt + 3_000 : since - c.refusedAt < 290_000 ? since + 31_000 : Infinity;
      expect(now < due, `${where}: SRS still serves HLS session ${keyOfConn(c)} of ${streams[c.stream].name}, refused at ${c.refusedAt}, its API answering since ${since}`).toBe(true);
    }

    // --- the gate's view ---
    for (const [i, st] of streams.entries()) {
      const state = (await admin("GET", `/streams/live/${st.name}`)).body;
      const live = [state.publisher, ...state.conflicts].filter((p: any) => p?.state === "live");
      // (2) At most one publisher holds the stream; the holder is the one live the longest.
      expect(live.length, `${where}: ${st.name} live publishers ${JSON.stringify(live)}`).toBeLessThanOrEqual(1);
      // README "Two publishers after a heal": "Among live publishers the holder is the one live the longest, counted from
      // its admission or its server's return"; the returning one is in conflict.
      const listed = [state.publisher, ...state.conflicts].filter((p: any) => p && (p.state === "live" || p.state === "conflict"));
      if (live.length === 1 && listed.length > 1) {
        count("conflict");
        const since = (p: any) => conns.find((c) => c.stream === i && servers[c.server].id === p.serverId && c.service === p.serviceId && c.client === p.clientId)?.liveSince ?? NaN;
        const times = listed.map(since);
        if (times.every((x: number) => !Number.isNaN(x))) {
          expect(since(live[0]), `${where}: ${st.name} holder ${JSON.stringify(live[0])} of ${JSON.stringify(listed)} (live since ${JSON.stringify(times)})`).toBe(Math.min(...times));
        }
      }
      if (st.cap !== null) {
        expect(state.viewers + state.leasedUnused, `${where}: ${st.name} viewers ${state.viewers} + unused leased ${state.leasedUnused}, cap ${st.cap}`).toBeLessThanOrEqual(Math.max(st.cap, state.viewers));
      }
      if (o.t === "wait" && servers.every((s) => surelyLive(s) || surelySilent(s))) {
        const vs = conns.filter((c) => c.stream === i && c.role === "viewer" && c.admitted);
        // (4) The counts are the model's.
        expect({ viewers: state.viewers, suspendedViewers: state.suspendedViewers }, `${where}: ${st.name} counts`).toEqual({
          viewers: vs.filter((c) => !surelySilent(servers[c.server])).length,
          suspendedViewers: vs.filter((c) => surelySilent(servers[c.server])).length,
        });
        if (o.ms >= 61_000) {
          const stale = conns.filter(
            (c) => c.stream === i && c.admitted && !served(c) && apiNormal(servers[c.server]) && surelyLive(servers[c.server]) && now - c.admittedAt > 12_000 + o.ms && now - servers[c.server].healedAt > o.ms,
          );
          expect(stale.map((c) => `${c.role} ${keyOfConn(c)} left at ${c.leftAt}`), `${where}: ${st.name} ghosts the background walk left`).toEqual([]);
        }
      }
    }
  }
}

/** A sequence to replay alone (a counterexample being studied); empty: skipped. */
const REPLAY: Op[] = [];

describe("with SRS's API: ghosts, kicks and takeovers in a fleet that loses stops, restarts and is partitioned", () => {
  modelFrame(REPLAY, runSequence, 120_000);

  it("the cap and one publisher hold as SRS sees them, no refusal rests on a ghost, counts are the model's", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    await fc.assert(fc.asyncProperty(fc.array(op, { minLength: 5, maxLength: MAX_OPS, size: "max" }), runSequence), {
      numRuns: RUNS,
      ...(SEED !== undefined ? { seed: SEED } : {}),
      examples: [
        // HLS players at a full stream, one of them refused while its edge's API hangs: SRS serves the refused sessions until
        // the gate's kick, 0.3 s after the answer, or once the API answers again (README "Kicks").
        [
          [
            { t: "play", server: 0, stream: 0 },
            { t: "hls", server: 1, stream: 0 },
            { t: "hls", server: 1, stream: 0 },
            { t: "wait", ms: 4_000 },
            { t: "api", server: 1, mode: "hang", steps: 2 },
            { t: "hls", server: 1, stream: 0 },
            { t: "wait", ms: 4_000 },
            { t: "wait", ms: 31_000 },
            { t: "hlsBack", server: 1, pick: 0 },
          ],
        ],
        // Found by this model: a player refused again with its hls_ctx after SRS let its refused session go, its edge's API back,
        // was served until the backoff of the earlier session's kick (up to 30 s) ran out (test/srs-api/hls-kick-outbox.test.ts).
        [
          [
            { t: "play", server: 0, stream: 0 },
            { t: "play", server: 0, stream: 0 },
            { t: "api", server: 1, mode: "hang", steps: 5 },
            { t: "hls", server: 1, stream: 0 },
            { t: "wait", ms: 61_000 },
            { t: "wait", ms: 4_000 },
            { t: "stop", server: 1, pick: 0, lost: false },
            { t: "wait", ms: 4_000 },
            { t: "hlsBack", server: 1, pick: 0 },
            { t: "wait", ms: 4_000 },
          ],
        ],
        // A ghost at a full stream whose edge's API answers in 1.5 s (its "not found" and the versions call take 3 s, past a
        // refusal's 2 s: unknown, the refusal stands, the answer is kept), then one that hangs; a takeover of a publisher whose
        // edge answers in 2.5 s (refused 4009, never admitted beside it), and again once the edge answers.
        [
          [
            { t: "play", server: 0, stream: 0 },
            { t: "play", server: 0, stream: 0 },
            { t: "stop", server: 0, pick: 0, lost: true },
            { t: "api", server: 0, mode: "slow1500", steps: 3 },
            { t: "play", server: 0, stream: 0, dt: 3_200 },
            { t: "play", server: 0, stream: 0, dt: 700 },
            { t: "publish", server: 2, stream: 1 },
            { t: "put", stream: 1, dup: "replace", rotate: false },
            { t: "api", server: 2, mode: "slow2500", steps: 2 },
            { t: "publish", server: 1, stream: 1 },
            { t: "api", server: 2, mode: "hang", steps: 2 },
            { t: "publish", server: 0, stream: 1 },
            { t: "wait", ms: 4_000, dt: 3_200 },
            { t: "publish", server: 0, stream: 1 },
          ],
        ],
        // Seeded scenarios random runs reach rarely. A publisher comes back after a partition into a stream another took
        // meanwhile: the one holding it keeps it, the returning one in conflict (README "Two publishers after a heal");
        // then a takeover (onDuplicatePublish "replace") kicks both before its publisher is admitted.
        [
          [
            { t: "publish", server: 0, stream: 0 },
            { t: "partition", server: 0 },
            { t: "wait", ms: 31_000 },
            { t: "publish", server: 1, stream: 0 },
            { t: "heal", server: 0 },
            { t: "wait", ms: 4_000 },
            { t: "put", stream: 0, dup: "replace", rotate: false },
            { t: "publish", server: 2, stream: 0 },
          ],
        ],
        // The same takeover at once after the heal, before the registry's notice reached the stream; then the holder leaves.
        [
          [
            { t: "publish", server: 0, stream: 0 },
            { t: "put", stream: 0, dup: "replace", rotate: false },
            { t: "partition", server: 0 },
            { t: "wait", ms: 31_000 },
            { t: "publish", server: 1, stream: 0 },
            { t: "heal", server: 0 },
            { t: "publish", server: 2, stream: 0 },
            { t: "unpublish", server: 2, pick: 0, lost: false },
            { t: "publish", server: 2, stream: 0 },
          ],
        ],
        // A key rotated while the publisher's edge is cut off: its kick waits, and goes when the edge is back; ghosts of
        // viewers on the edge that was cut off, and a crowd at the cap.
        [
          [
            { t: "publish", server: 0, stream: 1 },
            { t: "play", server: 0, stream: 1 },
            { t: "play", server: 0, stream: 1 },
            { t: "partition", server: 0 },
            { t: "put", stream: 1, rotate: true },
            { t: "stop", server: 0, pick: 0, lost: true },
            { t: "wait", ms: 31_000 },
            { t: "publish", server: 1, stream: 1 },
            { t: "heal", server: 0 },
            { t: "wait", ms: 4_000 },
            { t: "crowd", server: 1, stream: 1, seconds: 15 },
          ],
        ],
        // A ghost on one edge, a crowd at the cap on another: the stream's rounds find it (README: a ghost on another edge
        // keeps its slot at most about 8 s, plus the 3 s an answer is kept, past the refusals that rest on it).
        [
          [
            { t: "play", server: 0, stream: 0 },
            { t: "play", server: 1, stream: 0 },
            { t: "play", server: 1, stream: 0 },
            { t: "stop", server: 0, pick: 0, lost: true },
            { t: "crowd", server: 1, stream: 0, seconds: 15 },
            { t: "crowd", server: 2, stream: 0, seconds: 15 },
          ],
        ],
      ],
    });
    if (STATS) console.error(JSON.stringify(stats));
  }, 240_000);
});
