import { DurableObject } from "cloudflare:workers";
import { serverRetentionMs, serverTimeoutMs, sessionGraceMs } from "../config";
import type { Env } from "../env";
import type { Heartbeat, Role } from "../srs/hook";
import { callsOf, countCalls, type LoadCount } from "../platform/load";
import { addColumns } from "../platform/sql";
import { HOOK_DEADLINE_MS } from "../platform/retry";
import { VIEWER_SHARD_ENTRY } from "../viewers/lease";
import type { ApiTarget } from "../srs/api";
import { KickOutbox } from "../srs/kick-outbox";
import { NoticeOutbox } from "./notices";
import { VoidedHooks } from "../session/voided-hooks";
import type { Kick } from "../srs/kicks";
import { graceOver, isSilent, ProcessEpochs } from "./epochs";
import type { Epoch, ProcessId, ProcessStatus } from "./process-status";
import { apiOf, type ServerRow } from "./server-row";
import { serverFacts, serverState, type ServerState } from "./server-view";

// What the registry tells streams (src/server/process-status.ts) and the admin API (src/server/server-view.ts):
// exported from here too, where the rest of the code imports them.
export type { Epoch, NoticeAnswer, ProcessId, ProcessStatus } from "./process-status";
export type { ServerState } from "./server-view";

/** A stream on which a client of a server holds (or asked for) a session. */
export interface ClientStream {
  streamKey: string;
  role: Role;
}

/** A session in the client index, as the admin API's "end this server's sessions" needs it. */
export interface IndexedSession extends ClientStream {
  serviceId: string;
  clientId: string;
}

/** Servers are spread over this many registry objects by a hash of their server_id. */
export const REGISTRY_SHARDS = 16;

/** The registry shard (0 … REGISTRY_SHARDS-1) that owns a server: FNV-1a of its server_id. */
export function shardOf(serverId: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < serverId.length; i++) {
    hash ^= serverId.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) % REGISTRY_SHARDS;
}

/**
 * The server registry: each object owns the servers whose server_id hashes to
 * it, with each server's current process, its liveness, and which streams
 * each of its clients holds sessions on.
 *
 * Which process of a server is current, and how its sessions stand (live,
 * suspended, ended), is decided by the epoch rules (src/server/epochs.ts):
 * every message from a server passes there first.
 *
 * Streams learn of these changes two ways. Pull: before a stream refuses a
 * client because of other sessions, or admits one only because others are
 * suspended, it asks (liveness()). Push: every change is written to an outbox
 * of notices, one per (stream, process) (src/server/notices.ts), delivered NOTICE_BATCH at a time by
 * the alarm, so that a restart of a server that touched thousands of streams
 * is answered at once and the counts operators see still converge.
 *
 * The client index exists because on_close names no stream, and because the
 * notices must know which streams to tell. An index entry goes only after the
 * stream has ended the session, so a lost stop can always be recovered.
 */
export class ServerRegistry extends DurableObject<Env> {
  /**
   * A notice's delivery waits this long for its object; then it counts as not delivered (and is sent
   * again later). Half a hook's deadline: a restart's heartbeat waits for its shard's notice and must
   * still answer SRS in time.
   */
  static noticeTimeoutMs = HOOK_DEADLINE_MS / 2;
  private sql: SqlStorage;
  private servers = new Map<string, ServerRow>();
  private alarmAt: number | null = null;
  /** Start hooks whose admission the Worker undid: their late tracks write nothing (src/session/voided-hooks.ts). */
  private voidHooks = new VoidedHooks();
  /** Changes of the servers' processes, told to their streams and viewer shards (src/server/notices.ts). */
  private notices: NoticeOutbox;
  /** Kicks waiting to be sent to this shard's servers (src/srs/kick-outbox.ts). */
  private kicks: KickOutbox;
  /** Which process of each server is current, and how its sessions stand (src/server/epochs.ts). */
  private epochs: ProcessEpochs;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    countCalls(this, env, ["heartbeat", "track", "shardHeard", "heard", "forget", "held", "liveness", "state", "list", "sessionsOf", "forgetSessions", "setApi", "apiTarget", "apiCalled", "queueKicks"]);
    this.sql.exec(`
      CREATE TABLE IF NOT EXISTS servers (
        server_id TEXT PRIMARY KEY, service_id TEXT NOT NULL, device_id TEXT NOT NULL,
        ip TEXT NOT NULL, pid TEXT NOT NULL, last_heartbeat INTEGER, dead_since INTEGER) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS client_streams (
        server_id TEXT NOT NULL, service_id TEXT NOT NULL, client_id TEXT NOT NULL,
        stream_key TEXT NOT NULL, role TEXT NOT NULL, tracked_at INTEGER NOT NULL,
        PRIMARY KEY (server_id, service_id, client_id, stream_key, role)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS retired (
        server_id TEXT NOT NULL, service_id TEXT NOT NULL, retired_at INTEGER NOT NULL,
        PRIMARY KEY (server_id, service_id)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS candidates (
        server_id TEXT NOT NULL, service_id TEXT NOT NULL, since INTEGER NOT NULL,
        PRIMARY KEY (server_id, service_id)) WITHOUT ROWID;
    `);
    addColumns(this.sql, "servers", {
      expired_at: "INTEGER",
      expired_last_alive: "INTEGER",
      last_seen: "INTEGER NOT NULL DEFAULT 0",
      seq: "INTEGER NOT NULL DEFAULT 0",
      api_override: "TEXT",
      api_ok: "INTEGER",
    });
    // last_alive: the retired process's last heartbeat, for a stream or shard that asks (liveness) before its notice arrives.
    // early_*: a SESSION_GRACE_S end of the process before it was retired (its cutoff and last heartbeat), told with the restart's.
    addColumns(this.sql, "retired", {
      heard_at: "INTEGER",
      last_alive: "INTEGER NOT NULL DEFAULT 0",
      early_cutoff: "INTEGER NOT NULL DEFAULT 0",
      early_last_alive: "INTEGER NOT NULL DEFAULT 0",
    });
    // heard_at: a candidate's last start hook; quiet: none for SERVER_TIMEOUT_S since, and its sessions were suspended.
    addColumns(this.sql, "candidates", { heard_at: "INTEGER", quiet: "INTEGER NOT NULL DEFAULT 0" });
    // hook_id: the start hook whose track last wrote the entry ("" for writes that name none), so that the forget of a
    // voided hook drops only the entry that hook wrote, never one a later on_publish of the same client id wrote since.
    addColumns(this.sql, "client_streams", { hook_id: "TEXT NOT NULL DEFAULT ''" });
    this.notices = new NoticeOutbox(this.sql, env, {
      timeoutMs: () => ServerRegistry.noticeTimeoutMs,
      armAlarm: (at) => this.armAlarm(at),
    });
    this.kicks = new KickOutbox(this.sql, env, {
      apiTarget: (serverId, serviceId) => this.apiTarget(serverId, serviceId),
      apiCalled: (serverId, ok) => this.apiCalled(serverId, ok),
    });
    this.epochs = new ProcessEpochs(this.sql, this.servers, this.notices, this.kicks, {
      env: () => this.env,
      armAlarm: (at) => this.armAlarm(at),
    });
    for (const row of this.sql.exec<ServerRow>("SELECT * FROM servers")) this.servers.set(row.server_id, row);
    this.voidHooks.load(this.sql);
    ctx.blockConcurrencyWhile(async () => {
      this.alarmAt = await ctx.storage.getAlarm();
      // A stored alarm may come from longer settings; armAlarm keeps the earlier time.
      // A malformed setting must not keep the object from starting: the paths that need it say so.
      try {
        const next = this.nextWake(Date.now());
        if (next !== null) this.armAlarm(next);
      } catch (err) {
        console.error(JSON.stringify({ error: "registry alarm not armed", detail: String(err) }));
      }
    });
  }

  /** Calls this object received since its isolate started, by method, and its starts (bench only: LOAD_COUNTERS). */
  loadCount(): LoadCount {
    return callsOf(this);
  }

  // --- messages from servers -----------------------------------------------------

  async heartbeat(beat: Heartbeat): Promise<Epoch> {
    const before = this.servers.get(beat.serverId)?.service_id;
    const epoch = this.epochs.acknowledgeEpoch(beat.serverId, beat.serviceId, "heartbeat");
    if (epoch !== "current") return epoch;
    // Recorded at once, in the same synchronous step as the epoch: a restart's heartbeat waits below for its
    // shard's notice, and meanwhile (up to noticeTimeoutMs) a liveness question or the alarm must not judge
    // the new process by the old one's last heartbeat and take it for silent.
    const row = this.servers.get(beat.serverId)!;
    row.device_id = beat.deviceId;
    row.ip = beat.ip;
    row.pid = beat.pid;
    row.last_heartbeat = Date.now();
    this.sql.exec(
      "UPDATE servers SET device_id = ?, ip = ?, pid = ?, last_heartbeat = ? WHERE server_id = ?",
      row.device_id, row.ip, row.pid, row.last_heartbeat, row.server_id,
    );
    this.armAlarm(row.last_heartbeat + serverTimeoutMs(this.env));
    // A restart: the server's viewer shard learns it before the heartbeat is answered, so that a
    // late on_play of the replaced process, which the shard admits without asking, is refused.
    if (before !== undefined && before !== beat.serviceId) await this.notices.deliver(beat.serverId);
    return epoch;
  }

  /**
   * Records that a client started (or asked to start) a session on a stream.
   * Answers "retired" when the message comes from a process a restart already
   * replaced: such a session must not be admitted. A track of a hook the
   * Worker undid (it arrives late) writes nothing: SRS refused that client.
   */
  async track(serverId: string, serviceId: string, clientId: string, stream: ClientStream, hookId = ""): Promise<Epoch> {
    const epoch = this.epochs.acknowledgeEpoch(serverId, serviceId, "start");
    if ((epoch === "current" || epoch === "candidate") && !this.voidHooks.has(hookId)) {
      // A repeat moves tracked_at forward, so a forget meant for an earlier session leaves this one.
      this.sql.exec(
        `INSERT INTO client_streams (server_id, service_id, client_id, stream_key, role, tracked_at, hook_id)
         VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET tracked_at = excluded.tracked_at, hook_id = excluded.hook_id`,
        serverId, serviceId, clientId, stream.streamKey, stream.role, Date.now(), hookId,
      );
    }
    return epoch;
  }

  /**
   * A viewer shard speaks for one of its server's processes: on the first
   * viewer of a process (a start: the shard's index entry is written, and it
   * may be a restart or a candidate), and again whenever the registry may
   * think the server silent (the shard's last answer is a SERVER_TIMEOUT_S
   * old), so that any hook of a process brings its silent server back, as a
   * heartbeat would. Answers where the process stands and the server's last
   * heartbeat (null: it sends none), from which the shard knows when to speak again.
   */
  async shardHeard(serverId: string, serviceId: string, kind: "start" | "stop"): Promise<{ epoch: Epoch; lastHeartbeat: number | null }> {
    const epoch =
      kind === "start"
        ? await this.track(serverId, serviceId, VIEWER_SHARD_ENTRY.clientId, { streamKey: VIEWER_SHARD_ENTRY.streamKey, role: "viewer" })
        : this.epochs.acknowledgeEpoch(serverId, serviceId, "stop");
    return { epoch, lastHeartbeat: this.servers.get(serverId)?.last_heartbeat ?? null };
  }

  /**
   * A hook that gates nothing (on_connect, on_hls, on_dvr, on_forward) came
   * from this process: like a stop event it brings a silent server back and
   * never changes which process is current (src/srs/routes.ts heardFrom).
   */
  async heard(serverId: string, serviceId: string): Promise<void> {
    this.epochs.acknowledgeEpoch(serverId, serviceId, "stop");
  }

  /**
   * Drops index entries of sessions the streams have ended (stop events,
   * on_close, denials, admin calls). Called only after the stream confirmed,
   * so a failed stop leaves the entry for on_close, a restart or an operator.
   * `voidHook`: the Worker undid that start hook's admission; its track, if
   * still on its way, writes nothing, and only an entry that hook wrote goes
   * (this forget may land late, after the client's next on_publish, with the
   * same client id, was admitted and indexed).
   */
  async forget(serverId: string, serviceId: string, clientId: string, streams: ClientStream[], voidHook?: string): Promise<void> {
    if (voidHook) this.voidHooks.add(voidHook, this.sql);
    this.epochs.acknowledgeEpoch(serverId, serviceId, "stop");
    this.forgetSessions(serverId, streams.map((s) => ({ ...s, serviceId, clientId })), voidHook);
  }

  /** on_close: the streams the client still holds (the caller ends them, then forgets them). */
  async held(serverId: string, serviceId: string, clientId: string): Promise<ClientStream[]> {
    this.epochs.acknowledgeEpoch(serverId, serviceId, "stop");
    return this.sql
      .exec<{ stream_key: string; role: string }>(
        "SELECT stream_key, role FROM client_streams WHERE server_id = ? AND service_id = ? AND client_id = ? AND stream_key != ?",
        serverId, serviceId, clientId, VIEWER_SHARD_ENTRY.streamKey,
      )
      .toArray()
      .map((r) => ({ streamKey: r.stream_key, role: r.role as Role }));
  }

  // --- questions from streams and the admin API -------------------------------------

  /**
   * Where each process stands, for a stream about to refuse a client because
   * of their sessions, or to admit one only because they are suspended.
   * `witness` is the start hook being decided: it may be the first news of
   * its server's restart, so it is observed first.
   *
   * A service_id never heard of here belongs to a session a start hook
   * admitted while its own index write was still on the way: it is that
   * server's newest process and is observed as such, never taken for a ghost.
   */
  async liveness(processes: ProcessId[], witness?: ProcessId): Promise<ProcessStatus[]> {
    if (witness) this.epochs.acknowledgeEpoch(witness.serverId, witness.serviceId, "start");
    const now = Date.now();
    return processes.map((p) => {
      let row = this.servers.get(p.serverId);
      if (!row || (p.serviceId !== row.service_id && !this.epochs.isRetired(p.serverId, p.serviceId) && !this.epochs.candidatesOf(p.serverId).includes(p.serviceId))) {
        this.epochs.acknowledgeEpoch(p.serverId, p.serviceId, "start");
        row = this.servers.get(p.serverId)!;
      }
      return { ...this.epochs.statusOf(row, p.serviceId, now), api: apiOf(this.env, row) };
    });
  }

  // --- the server's SRS HTTP API -------------------------------------------------------

  /** PUT /admin/servers/{id} {"api": base | null}: overrides SRS_API_URL for one server. Null for a server never heard of. */
  setApi(serverId: string, base: string | null): ServerState | null {
    const row = this.servers.get(serverId);
    if (!row) return null;
    row.api_override = base;
    row.api_ok = null;
    this.sql.exec("UPDATE servers SET api_override = ?, api_ok = NULL WHERE server_id = ?", base, serverId);
    return this.state(serverId);
  }

  /** Where to reach the server's API for one of its processes (null: no API configured, or a server never heard of). */
  apiTarget(serverId: string, serviceId: string): ApiTarget | null {
    const row = this.servers.get(serverId);
    const base = row ? apiOf(this.env, row) : null;
    return base ? { base, serverId, serviceId, earlier: this.epochs.earlierThan(row!, serviceId) } : null;
  }

  /** Kicks to run through the servers' SRS APIs (src/srs/kicks.ts): queued, and run by the alarm at once. */
  queueKicks(kicks: Kick[]): void {
    const first = this.kicks.queue(kicks);
    if (first === null) return;
    this.armAlarm(first);
    // Those due now go at once, not after whatever the alarm is busy with (notices to a slow stream):
    // kicks happen within seconds of the admin call. The alarm retries what fails.
    if (first <= Date.now()) this.ctx.waitUntil(this.runKicks());
  }

  private async runKicks(): Promise<void> {
    await this.kicks.run(Date.now());
    const next = this.nextWake(Date.now());
    if (next !== null) this.armAlarm(next);
  }

  /** Records whether a call to the server's API worked, for GET /admin/servers (a write only when it changes). */
  apiCalled(serverId: string, ok: boolean): void {
    const row = this.servers.get(serverId);
    if (!row || row.api_ok === (ok ? 1 : 0)) return;
    row.api_ok = ok ? 1 : 0;
    this.sql.exec("UPDATE servers SET api_ok = ? WHERE server_id = ?", row.api_ok, serverId);
  }

  state(serverId: string): ServerState | null {
    const row = this.servers.get(serverId);
    return row ? serverState(this.env, row, serverFacts(this.sql, this.env, serverId)) : null;
  }

  /** Every server of this shard, for GET /admin/servers. */
  list(): ServerState[] {
    const facts = serverFacts(this.sql, this.env, null);
    return [...this.servers.values()].map((row) => serverState(this.env, row, facts));
  }

  /** Every indexed session of a server (all its processes), for ending them by hand. */
  sessionsOf(serverId: string): IndexedSession[] {
    return this.sql
      .exec<{ service_id: string; client_id: string; stream_key: string; role: string }>(
        "SELECT service_id, client_id, stream_key, role FROM client_streams WHERE server_id = ? AND stream_key != ?",
        serverId, VIEWER_SHARD_ENTRY.streamKey,
      )
      .toArray()
      .map((r) => ({ serviceId: r.service_id, clientId: r.client_id, streamKey: r.stream_key, role: r.role as Role }));
  }

  /** Drops index entries of ended sessions (the streams already confirmed). */
  forgetSessions(serverId: string, sessions: IndexedSession[], writtenBy?: string): void {
    for (const s of sessions) {
      // `writtenBy`: only an entry that start hook wrote (a voided hook's cleanup; see forget).
      this.sql.exec(
        "DELETE FROM client_streams WHERE server_id = ? AND service_id = ? AND client_id = ? AND stream_key = ? AND role = ? AND (? IS NULL OR hook_id = ?)",
        serverId, s.serviceId, s.clientId, s.streamKey, s.role, writtenBy ?? null, writtenBy ?? null,
      );
    }
  }

  // --- the alarm: silence, grace, retention, notices --------------------------------

  /**
   * Fires at the shard's next deadline (a heartbeat overdue, a grace period or
   * a retention period over) and right away while notices are pending.
   */
  async alarm(): Promise<void> {
    this.alarmAt = null;
    const now = Date.now();
    const timeout = serverTimeoutMs(this.env);
    const retention = serverRetentionMs(this.env);
    for (const row of [...this.servers.values()]) {
      if (row.dead_since === null && isSilent(row, now, this.env)) {
        this.epochs.suspend(row, now, `no heartbeat for ${timeout / 1000} s`);
      }
      if (row.dead_since !== null && graceOver(row, now, this.env)) this.epochs.expire(row, now);
      this.epochs.settleCandidates(row, now);
      this.epochs.forgetIfIdle(row, now, retention);
    }
    // Apart: notices to a stream that does not answer never hold kicks back (nor the reverse).
    await Promise.all([this.notices.deliver(), this.kicks.run(Date.now())]);
    // Notices that failed are due again later (with backoff), the others at once; kicks and deadlines as they fall.
    const next = this.nextWake(Date.now());
    if (next !== null) this.armAlarm(next);
  }

  private nextWake(now: number): number | null {
    let earliest: number | null = null;
    const consider = (t: number) => {
      if (earliest === null || t < earliest) earliest = t;
    };
    const notice = this.notices.nextDue();
    if (notice !== null) consider(Math.max(notice, now));
    const kick = this.kicks.nextAt();
    if (kick !== null) consider(Math.max(kick, now));
    for (const row of this.servers.values()) {
      if (row.last_heartbeat !== null && row.dead_since === null) consider(row.last_heartbeat + serverTimeoutMs(this.env));
      if (row.dead_since !== null && (row.expired_at === null || row.expired_at < row.last_heartbeat!)) consider(row.last_heartbeat! + sessionGraceMs(this.env));
      if (row.dead_since !== null || row.last_heartbeat === null) consider(row.last_seen + serverRetentionMs(this.env));
    }
    for (const c of this.sql.exec<{ server_id: string; since: number; heard_at: number | null; quiet: number }>("SELECT server_id, since, heard_at, quiet FROM candidates")) {
      const row = this.servers.get(c.server_id);
      const silent = !row || row.dead_since !== null || isSilent(row, now, this.env);
      // While the current process is silent, its next heartbeat re-arms the alarm.
      consider(silent ? c.since + sessionGraceMs(this.env) : Math.max(c.since + serverTimeoutMs(this.env), now));
      if (c.quiet === 0) consider(Math.max((c.heard_at ?? c.since) + serverTimeoutMs(this.env), now));
    }
    return earliest;
  }

  /** Keeps the earliest of the times the alarm is wanted. */
  private armAlarm(at: number): void {
    if (this.alarmAt !== null && this.alarmAt <= at) return;
    this.alarmAt = at;
    void this.ctx.storage.setAlarm(at);
  }
}

