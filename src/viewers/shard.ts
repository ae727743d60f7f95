import { DurableObject } from "cloudflare:workers";
import { serverTimeoutMs } from "../config";
import type { Env } from "../env";
import { callsOf, countCalls, type LoadCount } from "../platform/load";
import type { Unreachable } from "../platform/retry";
import type { ProcessStatus, NoticeAnswer } from "../server/registry";
import type { SessionId } from "../srs/hook";
import { VoidedHooks } from "../session/voided-hooks";
import type { StreamEvent } from "../stream/decision-log";
import type { Decision } from "../stream/rules";
import type { SeatState } from "./seats";
import { ViewerAdmission, type PlayRequest } from "./admission";
import { LEASE_IDLE_MS, viewerIdHash, type Place, type RecallAnswer, type RecallCheck, type ViewerPolicy } from "./lease";
import { ShardActivity } from "../usage/shard-activity";
import type { HourUsage } from "../usage/book";
import { ViewerCounts } from "./counts";
import { ShardProcesses } from "./processes";
import { logError, ShardLog } from "./shard-log";
import { ShardGhosts, GHOST_WAIT_MS } from "./shard-ghosts";
import { ShardLeases } from "./shard-leases";
import { seatKey, ShardSeats } from "./shard-seats";
import { ShardLiveness } from "./shard-liveness";
import { ShardTables } from "./tables";
import { SEAT_RETRY_MS, UnseatedSeats } from "./unseated";
import { KeptAnswers } from "../platform/kept-answers";

export type { PlayRequest } from "./admission";

/** A viewer session ended here, as the admin API answers it. */
export interface EndedViewer {
  streamKey: string;
  serviceId: string;
  clientId: string;
}

/** What a shard holds of one stream, for the admin API. */
export interface ShardAudience {
  serverId: string;
  colo: string;
  country: string;
  viewers: number;
  suspendedViewers: number;
  /** Slots leased from the stream (0 for an unlimited stream). */
  leased: number;
  /** Hashes of the distinct viewer ids (token `sub`) among the counted viewers (src/viewers/lease.ts viewerIdHash). */
  viewerIds?: number[];
}

/** A viewer session here, as GET /admin/streams/{app}/{stream}/viewers lists it. */
export interface ViewerSession {
  sub: string | null;
  serverId: string;
  serviceId: string;
  clientId: string;
  since: string;
  suspended: boolean;
}

/** Why a viewer session ends, for the shard's log (voidHook: see PlayRequest.hookId). */
export interface EndCause {
  action: string;
  ip?: string;
  reason?: string;
  voidHook?: string;
}

/**
 * The viewer shard of one SRS server: it admits and ends that server's viewers
 * of every stream, near the server (an object lives where it was first called:
 * here, the Worker that ran that server's first hook). One call and one write
 * per on_play or on_stop, whatever the audience elsewhere; the stream's own
 * object is asked only when a lease runs out (lease.ts), for the policy, and
 * for the brute-force count of failed tokens.
 *
 * The viewers belong to processes of this one server (server_id + service_id).
 * What happens to a process (silence, return, restart, SESSION_GRACE_S) comes
 * from the server registry as for the stream objects: a notice per process
 * (the registry indexes this shard once per process, never per viewer), or an
 * answer to the shard's own question, asked before it trusts a process it has
 * not seen (a restart or a late hook) or holds suspended.
 *
 * Every decision is synchronous from its last read to its write, as in the
 * stream object: no other hook interleaves, so a lease of N slots admits N.
 *
 * This class holds the calls other objects and the Worker make, the alarm, and
 * the wiring; each concern is its own module: where a viewer is admitted
 * (admission.ts), the slots leased from each stream (shard-leases.ts), the
 * seats of viewer ids with a session limit (shard-seats.ts, unseated.ts), the
 * registry's word on the server's processes (shard-liveness.ts), ghosts of
 * lost stops (shard-ghosts.ts), the decision log (shard-log.ts), and the state
 * they share (tables.ts, counts.ts, processes.ts).
 */
export class ViewerShard extends DurableObject<Env> {
  private sql: SqlStorage;
  private tables: ShardTables;
  private serverId = "";
  /** The server_id is stored (from the first hook on a stream that exists). */
  private hasMeta = false;
  private place: Place = { colo: "", country: "" };
  private alarmAt: number | null = null;
  private processes: ShardProcesses;
  private counts: ViewerCounts;
  /** The start hooks the Worker undid (src/session/voided-hooks.ts). */
  private voidHooks = new VoidedHooks();
  /** Where a viewer is admitted: the on_play's steps (src/viewers/admission.ts). */
  private admission: ViewerAdmission;
  private leases: ShardLeases;
  /** The seats of this shard's viewers: admissions under way with one, the seats object's questions, seats given back (src/viewers/shard-seats.ts). */
  private seats: ShardSeats;
  /** Seats for the sessions admitted here before their stream limited sessions per viewer (src/viewers/unseated.ts). */
  private unseated: UnseatedSeats;
  /** The registry's word on this server's processes, asked for and applied (src/viewers/shard-liveness.ts). */
  private liveness: ShardLiveness;
  /** Ghosts of lost on_stop events among the viewers here, asked about through SRS's API (src/viewers/shard-ghosts.ts). */
  private ghosts: ShardGhosts;
  private log: ShardLog;
  /** Usage of this server's viewers, and cap refusals for the streams' events (src/usage/shard-activity.ts). */
  private activity: ShardActivity;
  /** Answers of the calls that end sessions by hand, for their retries (src/platform/kept-answers.ts). */
  private kept: KeptAnswers;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.tables = new ShardTables(this.sql);
    this.kept = new KeptAnswers(this.sql);
    this.activity = new ShardActivity(this.sql, env, ctx);
    this.processes = new ShardProcesses(this.tables);
    this.log = new ShardLog(this.tables, this.activity.usage);
    this.leases = new ShardLeases(env, this.tables, {
      counts: {
        live: (streamKey) => this.counts.live(streamKey),
        suspended: (streamKey) => this.counts.suspended(streamKey),
      },
      whereabouts: () => ({ serverId: this.serverId, place: this.place }),
      armAlarm: (at) => this.armAlarm(at),
      policyChanged: (streamKey, policy) => this.unseated.policyChanged(streamKey, policy),
      waitUntil: (work) => ctx.waitUntil(work),
    });
    this.counts = new ViewerCounts(
      (id) => this.processes.isSuspended(id),
      (streamKey, held) => {
        this.activity.usage.held(streamKey, held);
        this.log.flushSoon(); // usage peaks wait with the log's lines
      },
    );
    // What the shard's modules below all read: its settings, tables and counts, its server, whether a process is suspended.
    const shard = {
      env,
      tables: this.tables,
      counts: this.counts,
      serverId: () => this.serverId,
      isSuspended: (id: string) => this.processes.isSuspended(id),
    };
    this.ghosts = new ShardGhosts(env, {
      ...shard,
      endViewer: (streamKey, session, cause, keepSlot) => this.endViewer(streamKey, session, cause, keepSlot),
      giveBackIfTight: (streamKey) => this.leases.giveBackIfTight(streamKey),
    });
    this.liveness = new ShardLiveness({
      ...shard,
      processes: this.processes,
      log: this.log,
      activity: this.activity,
      leases: this.leases,
      releaseSeats: (streamKey, sub, sessions) => this.seats.release(streamKey, sub, sessions),
      withSeatsBatched: (end) => this.seats.batched(end),
    });
    this.seats = new ShardSeats({
      ...shard,
      leases: this.leases,
      ghosts: this.ghosts,
      liveness: this.liveness,
      kept: this.kept,
      isViewing: (streamKey, session) => this.isViewing(streamKey, session),
      endViewer: (streamKey, session, cause, keepSlot) => this.endViewer(streamKey, session, cause, keepSlot),
      waitUntil: (work) => ctx.waitUntil(work),
    });
    this.admission = new ViewerAdmission({
      ...shard,
      processes: this.processes,
      leases: this.leases,
      liveness: this.liveness,
      ghosts: this.ghosts,
      seats: this.seats,
      voidHooks: this.voidHooks,
      log: this.log,
      activity: this.activity,
      identify: (serverId, place) => this.identify(serverId, place),
      isViewing: (streamKey, session) => this.isViewing(streamKey, session),
      armAlarm: (at) => this.armAlarm(at),
    });
    this.unseated = new UnseatedSeats({
      ...shard,
      policy: (streamKey) => this.leases.policy(streamKey),
      askPolicy: (streamKey) => this.leases.policyOf(streamKey),
      keepSeat: (streamKey, session) => this.seats.keep(streamKey, session),
      releaseSeats: (streamKey, sub, sessions, grant) => this.seats.release(streamKey, sub, sessions, grant),
      armAlarm: (at) => this.armAlarm(at),
      waitUntil: (work) => ctx.waitUntil(work),
    });
    countCalls(this, env, ["play", "stop", "close", "recall", "sweepGhosts", "slotsFree", "seatState", "endSeat", "endRevoked", "viewerSessions", "applyStatus", "audience", "viewerUsage", "viewersPerMinute", "peakViewers", "events", "viewersOf", "endSessions", "endAll", "sessionCount", "holdsClient"]);
    if (this.tables.open()) this.load();
    ctx.blockConcurrencyWhile(async () => {
      this.alarmAt = await ctx.storage.getAlarm();
      if (this.unseated.pending()) this.armAlarm(Date.now() + SEAT_RETRY_MS);
    });
  }

  /** Loads the stored state into memory. */
  private load(): void {
    for (const r of this.sql.exec<{ key: string; value: string }>("SELECT key, value FROM meta")) {
      if (r.key === "server_id") (this.serverId = r.value), (this.hasMeta = true);
      if (r.key === "colo") this.place.colo = r.value;
      if (r.key === "country") this.place.country = r.value;
      this.ghosts.loadRow(r.key, r.value);
      this.unseated.loadRow(r.key);
    }
    this.processes.load();
    for (const r of this.sql.exec<{ stream_key: string; service_id: string; n: number }>(
      "SELECT stream_key, service_id, COUNT(*) AS n FROM viewers GROUP BY stream_key, service_id",
    )) {
      this.counts.set(r.stream_key, r.service_id, r.n);
    }
    this.leases.load();
    this.log.load();
    this.voidHooks.load(this.sql);
    // Usage peaks not flushed before the restart: the counts held now hold from the newest admission still held on.
    const newest = new Map(
      this.sql.exec<{ stream_key: string; since: number }>("SELECT stream_key, MAX(since) AS since FROM viewers GROUP BY stream_key").toArray().map((r) => [r.stream_key, r.since]),
    );
    this.activity.usage.reconcile(this.counts.held(), (streamKey) => newest.get(streamKey));
  }

  /** Calls this object received since its isolate started, by method, and its starts (bench only: LOAD_COUNTERS). */
  loadCount(): LoadCount {
    return callsOf(this);
  }

  // --- hooks ------------------------------------------------------------------------

  /** on_play: where a viewer is admitted (src/viewers/admission.ts). */
  play(req: PlayRequest): Promise<Decision | Unreachable> {
    // The shard's server is the one its hooks name, until the first on a stream that exists stores it (identify).
    if (!this.serverId) this.serverId = req.session.serverId;
    return this.admission.play(req);
  }

  /**
   * on_stop of a viewer, or the Worker undoing an admission whose answer was
   * lost (voidHook). Idempotent; a slot it frees goes back to a tight stream.
   */
  async stop(streamKey: string, session: SessionId, cause: EndCause): Promise<number> {
    const ended = this.endViewer(streamKey, session, cause);
    // Any message of a process brings its silent server back (a stop too: it never moves the epoch), also
    // of a process with no viewer here (it publishes, or its viewers were refused).
    const p = this.processes.get(session.serviceId);
    if (!this.processes.isReplaced(session.serviceId) && (p?.suspended || this.processes.mayThinkSilent(session.serviceId, serverTimeoutMs(this.env)))) {
      await this.liveness.speakFor(session, "stop").catch((err) => logError("registry not told of a stop", streamKey, err));
    }
    return ended;
  }

  /** `keepSlot`: a slot freed here is about to be used or recalled, not given back. */
  private endViewer(streamKey: string, session: SessionId, cause: EndCause, keepSlot = false): number {
    if (cause.voidHook) this.tables.prepare(); // an undo is rare: it may create the tables of a shard that holds nothing yet
    // An undo that arrives after SRS sent the client's on_play again, and that hook was allowed, leaves the session.
    if (!this.voidHooks.ending(seatKey(streamKey, session), cause.voidHook, this.sql)) return 0;
    if (!this.tables.ready) return 0;
    // A WebRTC session is the hook's that admitted it (webrtc_hook; a twin's hook is refused): an undo of another hook
    // leaves it, also when this shard no longer remembers which hook confirmed it (evicted, or past CONFIRMED_KEPT).
    const voidHook = cause.voidHook ?? null;
    const removed = this.sql.exec<{ sub: string; seat: number; since: number }>(
      "DELETE FROM viewers WHERE stream_key = ? AND service_id = ? AND client_id = ? AND (? IS NULL OR webrtc_hook IS NULL OR webrtc_hook = ?) RETURNING sub, seat, since",
      streamKey, session.serviceId, session.clientId, voidHook, voidHook,
    ).toArray();
    if (removed.length === 0) return 0;
    this.ghosts.ended(seatKey(streamKey, session));
    for (const g of removed) this.activity.viewerEnded(streamKey, g.since, Date.now());
    this.counts.add(streamKey, session.serviceId, -1);
    const viewer = removed[0].sub ? ` (viewer ${removed[0].sub})` : "";
    this.log.record(streamKey, cause.action, session.clientId, cause.ip ?? "", "end", (cause.reason ?? "session ended") + viewer);
    if (removed[0].seat === 1) this.seats.release(streamKey, removed[0].sub, [{ ...session, serverId: this.serverId || session.serverId }]);
    if (!keepSlot) this.leases.giveBackIfTight(streamKey);
    return removed.length;
  }

  /** on_close names no stream: ends every viewer session of the client here. */
  async close(session: SessionId): Promise<number> {
    let ended = 0;
    for (const r of this.tables.rows<{ stream_key: string }>("SELECT stream_key FROM viewers WHERE service_id = ? AND client_id = ?", session.serviceId, session.clientId)) {
      ended += this.endViewer(r.stream_key, session, { action: "on_close" });
    }
    return ended;
  }

  // --- from the stream ---------------------------------------------------------------

  /**
   * The stream takes back the slots this shard does not use, but `keep` (it
   * ran short), or all of them (its policy changed: `policy` is the new one). First, as `check` says
   * (src/viewers/lease.ts RecallCheck), the shard asks the registry whether its own processes still
   * live (a silent server's viewers then stop holding slots the stream needs) and its server's SRS
   * API which of its viewers are ghosts.
   */
  async recall(streamKey: string, policy: ViewerPolicy | null, version: number, check: RecallCheck, keep: number | "all" = 0): Promise<RecallAnswer> {
    if (check !== "none" && this.counts.live(streamKey) + this.counts.suspended(streamKey) > 0) await this.liveness.refresh(null);
    // Only for a hook about to be refused, within the time the stream waits for this answer; and only if this
    // shard has no unused slot to hand back at once (the stream's record of it may be older than that slot).
    const unused = this.leases.granted(streamKey) > this.counts.live(streamKey) + (keep === "all" ? Infinity : keep);
    if (check === "ghosts" && !unused) await this.ghosts.endGhosts(streamKey, GHOST_WAIT_MS);
    return this.leases.recalled(streamKey, policy, version, keep);
  }

  /** The stream's shards wait for slots: the ghosts among this stream's viewers here end, and their slots go back. */
  async sweepGhosts(streamKey: string): Promise<number> {
    return this.ghosts.endGivingBack(streamKey);
  }

  /** The stream has free slots again: a shard refused for want of them may ask at once. */
  slotsFree(streamKey: string): void {
    this.leases.slotsFree(streamKey);
  }

  /**
   * A revocation (src/stream/revocations.ts): ends the viewers here whose
   * tokens it covers, those of viewer `sub` (null: every viewer) issued
   * before `before`. Returns them, for the kicks. None on an open stream (as
   * the stream's push, which comes first, told this shard): its viewers need
   * no token and would play again at once.
   */
  endRevoked(streamKey: string, sub: string | null, before: number, callId?: string): EndedViewer[] {
    return this.kept.once(callId, () => this.endRevokedNow(streamKey, sub, before));
  }

  private endRevokedNow(streamKey: string, sub: string | null, before: number): EndedViewer[] {
    if (this.leases.policy(streamKey)?.playAuth === "open") return [];
    const rows = this.tables.rows<{ service_id: string; client_id: string }>(
      `SELECT service_id, client_id FROM viewers WHERE stream_key = ? AND iat IS NOT NULL AND iat < ?${sub === null ? "" : " AND sub = ?"}`,
      ...(sub === null ? [streamKey, before] : [streamKey, before, sub]),
    );
    this.seats.batched(() => {
      for (const r of rows) {
        this.endViewer(streamKey, { serverId: this.serverId, serviceId: r.service_id, clientId: r.client_id }, { action: "revoke", reason: "token revoked" });
      }
    });
    return rows.map((r) => ({ streamKey, serviceId: r.service_id, clientId: r.client_id }));
  }

  // --- from the seats objects (src/viewers/seats.ts) ---------------------------------------------

  /** For the seats object, before it ends other sessions for this hook: whether the hook still stands (src/viewers/admission.ts hookLive). */
  hookLive(hookId: string): boolean {
    return this.admission.hookLive(hookId);
  }

  /** Where each of these sessions stands here: being admitted or admitted (live), of a silent server (suspended), or gone. */
  seatState(streamKey: string, sessions: SessionId[], askApi = true): Promise<SeatState[]> {
    return this.seats.stateOf(streamKey, sessions, askApi);
  }

  /**
   * Ends a viewer session for the seats object (its viewer id plays
   * elsewhere); a session still being admitted is refused instead (and ended, if it is live: a repeat). True if
   * a session ended (the caller kicks it), false if it was gone already.
   *
   * `handOffFor`: the newer session, at a full stream (no slot on its edge): the session ends
   * only if its slot can go there (it is live, and this shard's lease holds its slot), and the slot goes there before
   * the answer ("kept": it cannot, and the session plays on).
   */
  endSeat(streamKey: string, session: SessionId, why: string, callId?: string, handOffFor?: SessionId): Promise<boolean | "kept"> {
    return this.seats.end(streamKey, session, why, callId, handOffFor);
  }

  // --- from the registry (src/server/registry.ts) ---------------------------------------------

  /** What the registry knows about one of this server's processes (a notice, or the answer to a question). */
  applyStatus(news: ProcessStatus): NoticeAnswer {
    return this.seats.batched(() => this.liveness.apply(news));
  }

  // --- admin ---------------------------------------------------------------------------

  audience(streamKey: string): ShardAudience {
    return {
      serverId: this.serverId,
      colo: this.place.colo,
      country: this.place.country,
      viewers: this.counts.live(streamKey),
      suspendedViewers: this.counts.suspended(streamKey),
      leased: this.leases.granted(streamKey),
      viewerIds: this.viewerIdsOf(streamKey),
    };
  }

  private viewerIdsOf(streamKey: string): number[] {
    const live = this.tables.rows<{ sub: string; service_id: string }>("SELECT DISTINCT sub, service_id FROM viewers WHERE stream_key = ? AND sub != ''", streamKey)
      .filter((r) => !this.processes.isSuspended(r.service_id));
    return [...new Set(live.map((r) => viewerIdHash(r.sub)))];
  }

  /** A stream's viewer sessions here with their viewer ids (GET /admin/streams/{app}/{stream}/viewers). */
  viewerSessions(streamKey: string, limit: number): ViewerSession[] {
    return this.tables.rows<{ sub: string; service_id: string; client_id: string; since: number }>(
      "SELECT sub, service_id, client_id, since FROM viewers WHERE stream_key = ? ORDER BY sub, since LIMIT ?", streamKey, limit,
    ).map((r) => ({
      sub: r.sub === "" ? null : r.sub,
      serverId: this.serverId,
      serviceId: r.service_id,
      clientId: r.client_id,
      since: new Date(r.since).toISOString(),
      suspended: this.processes.isSuspended(r.service_id),
    }));
  }

  /** This server's viewer usage of a stream in [from, to): open sessions of processes not suspended count up to now. */
  viewerUsage(streamKey: string, from: number, to: number): HourUsage[] {
    const open = this.tables.rows<{ since: number; service_id: string }>("SELECT since, service_id FROM viewers WHERE stream_key = ?", streamKey).filter((r) => !this.processes.isSuspended(r.service_id));
    return this.activity.usage.hours(streamKey, from, to, "viewer", open);
  }

  /** Viewers of a stream held here, the peak of each minute in [from, to). */
  viewersPerMinute(streamKey: string, from: number, to: number): number[] {
    return this.activity.usage.minutes(streamKey, from, to);
  }

  /** The most viewers of a stream held here at once between from and to (a publish's peak). */
  peakViewers(streamKey: string, from: number, to: number): number {
    return this.activity.usage.peakDuring(streamKey, from, to);
  }

  events(streamKey: string): StreamEvent[] {
    return this.log.list(streamKey, this.serverId);
  }

  /** A stream's viewer sessions here (a deleted stream's viewers are kicked). */
  viewersOf(streamKey: string): { serviceId: string; clientId: string }[] {
    return this.tables.rows<{ service_id: string; client_id: string }>("SELECT service_id, client_id FROM viewers WHERE stream_key = ?", streamKey).map((r) => ({
      serviceId: r.service_id,
      clientId: r.client_id,
    }));
  }

  /** Ends a stream's viewers here by hand (all, or one client id's). */
  endSessions(streamKey: string, clientId: string | undefined, reason: string, callId?: string): EndedViewer[] {
    return this.kept.once(callId, () => this.endSessionsNow(streamKey, clientId, reason));
  }

  private endSessionsNow(streamKey: string, clientId: string | undefined, reason: string): EndedViewer[] {
    const rows = this.tables.rows<{ service_id: string; client_id: string }>(
      `SELECT service_id, client_id FROM viewers WHERE stream_key = ?${clientId === undefined ? "" : " AND client_id = ?"}`,
      ...(clientId === undefined ? [streamKey] : [streamKey, clientId]),
    );
    this.seats.batched(() => {
      for (const r of rows) this.endViewer(streamKey, { serverId: this.serverId, serviceId: r.service_id, clientId: r.client_id }, { action: "admin", reason });
    });
    return rows.map((r) => ({ streamKey, serviceId: r.service_id, clientId: r.client_id }));
  }

  /** Ends up to `limit` viewer sessions of this server, whatever the stream; `remaining` says how many are left. */
  endAll(limit: number, reason: string, callId?: string): { ended: EndedViewer[]; remaining: number } {
    return this.kept.once(callId, () => this.endAllNow(limit, reason), (a) => a.ended.length === 0);
  }

  private endAllNow(limit: number, reason: string): { ended: EndedViewer[]; remaining: number } {
    const rows = this.tables.rows<{ stream_key: string; service_id: string; client_id: string }>("SELECT stream_key, service_id, client_id FROM viewers LIMIT ?", limit);
    this.seats.batched(() => {
      for (const r of rows) this.endViewer(r.stream_key, { serverId: this.serverId, serviceId: r.service_id, clientId: r.client_id }, { action: "admin", reason });
    });
    const remaining = this.tables.rows<{ n: number }>("SELECT COUNT(*) AS n FROM viewers")[0]?.n ?? 0;
    return { ended: rows.map((r) => ({ streamKey: r.stream_key, serviceId: r.service_id, clientId: r.client_id })), remaining };
  }

  /** Every viewer session here, over all streams (the admin server view counts them). */
  sessionCount(): number {
    return this.counts.total();
  }

  /** Background: gives back slots idle since LEASE_IDLE_MS, and checks suspended processes now and then. */
  async alarm(): Promise<void> {
    this.alarmAt = null;
    const now = Date.now();
    await this.unseated.runDue();
    await this.leases.giveBackIdle(now);
    // The registry tells the shard of silences and restarts itself; this slower check catches what its notices missed.
    if (this.sessionCount() > 0) await this.liveness.refresh(null);
    // Never holds back the rest of the alarm: an API or registry failure leaves the viewers as they are until the next one.
    await this.ghosts.sweepInTurn().catch((err) => logError("ghost sweep failed", this.ghosts.sweptStream, err));
    await this.leases.reportChanged(now);
    this.processes.forgetReplaced(now);
    this.activity.usage.prune(now);
    this.log.forgetIdle(now, (streamKey) => this.counts.live(streamKey) + this.counts.suspended(streamKey) > 0 || this.leases.granted(streamKey) > 0);
    const work = this.leases.pendingWork();
    if (work.idle) this.armAlarm(now + LEASE_IDLE_MS);
    else if (this.sessionCount() > 0 || work.leaving) this.armAlarm(now + 2 * serverTimeoutMs(this.env));
  }

  // --- viewer rows ------------------------------------------------------------------------------

  /**
   * The client is a live or suspended viewer here, of any stream: a refused client's kick is dropped
   * if so (SRS forgot the refused session and the player came back with its id, maybe on another
   * stream; SRS's API names a client by id alone). A scan of this server's viewers, for kicks only.
   */
  holdsClient(serviceId: string, clientId: string): boolean {
    return this.tables.rows("SELECT 1 AS x FROM viewers WHERE service_id = ? AND client_id = ? LIMIT 1", serviceId, clientId).length > 0;
  }

  private isViewing(streamKey: string, session: SessionId): boolean {
    return this.tables.rows("SELECT 1 AS x FROM viewers WHERE stream_key = ? AND service_id = ? AND client_id = ?", streamKey, session.serviceId, session.clientId).length > 0;
  }

  // --- the rest ---------------------------------------------------------------------------------

  /** The shard learns its server's id and place from its first hook (and the place again if it changes). */
  private identify(serverId: string, place: Place): void {
    if (!this.hasMeta) {
      this.hasMeta = true;
      this.serverId = serverId;
      this.tables.prepare();
      this.sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES ('server_id', ?)", serverId);
    }
    if (place.colo && (place.colo !== this.place.colo || place.country !== this.place.country)) {
      this.place = { ...place };
      this.sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES ('colo', ?), ('country', ?)", place.colo, place.country);
    }
  }

  private armAlarm(at: number): void {
    if (this.alarmAt !== null && this.alarmAt <= at) return;
    this.alarmAt = at;
    void this.ctx.storage.setAlarm(at);
  }
}
