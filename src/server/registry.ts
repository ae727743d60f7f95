import { DurableObject } from "cloudflare:workers";
import { serverRetentionMs, serverTimeoutMs, sessionGraceMs } from "../config";
import type { Env } from "../env";
import type { Heartbeat, Role } from "../srs/hook";
import { callsOf, countCalls, type LoadCount } from "../platform/load";
import { addColumns } from "../platform/sql";
import { HOOK_DEADLINE_MS, UNDO_WAIT_MS } from "../platform/retry";
import { VIEWER_SHARD_ENTRY } from "../viewers/lease";
import { apiBase, type ApiTarget } from "../srs/api";
import { KickOutbox } from "../srs/kick-outbox";
import { NoticeOutbox } from "./notices";
import { VoidedHooks } from "../session/voided-hooks";
import type { Kick } from "../srs/kicks";

/** What the admin API reports for one SRS server. */
export interface ServerState {
  serverId: string;
  serviceId: string;
  deviceId: string;
  ip: string;
  pid: string;
  lastHeartbeat: string | null;
  /** False once heartbeats stopped for SERVER_TIMEOUT_S; servers that never sent one stay alive. */
  alive: boolean;
  /** Publisher sessions this server's clients hold, over all streams (suspended ones included); the admin API adds the viewers (src/admin/routes.ts). */
  sessions: number;
  /**
   * Other processes that still speak under this server_id after a newer one
   * replaced them: two SRS processes share one server_id (a misconfigured
   * fleet). The newest process stays current; these are refused (4006).
   */
  duplicateServiceIds: string[];
  /** Streams still to be told about a change of this server (restart, silence, return). */
  pendingNotices: number;
  /** Processes admitted by start hooks that wait for their own first heartbeat to become current. */
  candidateServiceIds: string[];
  /** The server's SRS HTTP API base URL (its override, else SRS_API_URL filled in), or null: not used. */
  api: string | null;
  /** Whether the last call to that API worked (null: none made yet). */
  apiOk: boolean | null;
}

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

/**
 * Where a message's service_id stands: the running process; a candidate (a
 * start hook from a process never heard of while the current one still
 * heartbeats: a restart whose first heartbeat is on its way, or a late or
 * forged hook); one a restart replaced; or (stop events only) one never heard
 * of, which changes nothing.
 */
export type Epoch = "current" | "candidate" | "retired" | "unknown";

/**
 * Heartbeats move a server's epoch; a start hook moves it only when the
 * current process cannot speak for itself (no heartbeats, or silent);
 * stop and close events never do.
 */
type MessageKind = "heartbeat" | "start" | "stop";

/**
 * What a stream object or viewer shard answers to a notice: the sessions it
 * ended, and on how many streams a viewer shard still holds viewers of the
 * process after a cutoff (admitted since: the process came back before the
 * notice). The shard's one index entry stands for those, so it is kept and
 * the process's next silence reaches them too. A stream's entries are one
 * per session: it answers the publishers of the process it still holds
 * after the cutoff (`keptClients`), whose entries stay. (The stream stamps a
 * session when it admits it, the registry its entry when the hook arrives:
 * a decision that took a moment straddles a cutoff on one side only.)
 */
export interface NoticeAnswer {
  ended: number;
  kept: number;
  keptClients?: string[];
}

/**
 * What a stream is told about one SRS process (server_id + service_id):
 * - live: its sessions count and block;
 * - suspended: its server is silent; its sessions neither count nor block, but are kept;
 * - ended: a restart replaced the process; its sessions are over for good.
 * `cutoff` (0: none): sessions admitted up to then are over for good (a
 * restart, or SESSION_GRACE_S of silence); whatever the status, it applies.
 * `seq` orders changes of status about one server: a stream ignores one older
 * than what it knows.
 */
export interface ProcessStatus {
  serverId: string;
  serviceId: string;
  status: "live" | "suspended" | "ended";
  seq: number;
  cutoff: number;
  /** ended by a restart: later start hooks of the process are refused. */
  replaced: boolean;
  why: string;
  /**
   * With a cutoff: the last moment the process was known alive (its server's last heartbeat
   * before the restart or the silence); its sessions' usage ends there. 0: unknown (now).
   */
  lastAlive?: number;
  /**
   * Sessions an earlier end ended first (SESSION_GRACE_S, before this restart or a later grace, when the
   * stream or shard has not applied it yet): those admitted up to its cutoff end at its lastAlive, with
   * reason timeout; only the rest end at `lastAlive`. See endingsOf.
   */
  earlier?: { cutoff: number; lastAlive: number };
  /** In answers to questions (not in notices): the server's SRS API base URL, if it has one. */
  api?: string | null;
}

export interface ProcessId {
  serverId: string;
  serviceId: string;
}

interface ServerRow extends Record<string, SqlStorageValue> {
  server_id: string;
  /** PUT /admin/servers/{id} {"api": …}: this server's SRS API base URL, instead of SRS_API_URL. */
  api_override: string | null;
  /** 1 / 0: the last SRS API call to the server worked / failed; null: none yet. */
  api_ok: number | null;
  service_id: string;
  device_id: string;
  ip: string;
  pid: string;
  last_heartbeat: number | null;
  /** When the silence was noticed (alarm or question); null while alive. */
  dead_since: number | null;
  /**
   * When SESSION_GRACE_S ended the current process's sessions (those admitted
   * up to then); null if it never did. Kept when the process returns: its
   * sessions from before stay ended.
   */
  expired_at: number | null;
  /** With expired_at: the last heartbeat before that silence, when those sessions ended (a return resets last_heartbeat). */
  expired_last_alive: number | null;
  /** Last message of any kind, for SERVER_RETENTION_S. */
  last_seen: number;
  /** Bumped at every change of status; carried by notices to streams. */
  seq: number;
}

/** Servers are spread over this many registry objects by a hash of their server_id. */
export const REGISTRY_SHARDS = 16;
/** Retired service_ids kept per server (a server restarting daily keeps two months of them). */
const RETIRED_KEPT = 64;
/** last_seen is written at most this often per server (it only serves retention). */
const LAST_SEEN_GRAIN_MS = 60_000;
/** A retired process still heard from (two processes sharing a server_id) is logged at most this often. */
const DUPLICATE_LOG_EVERY_MS = 60_000;
/** Ended for good: sessions admitted up to any time. */
const FOREVER = Number.MAX_SAFE_INTEGER;

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
 * SRS keeps server_id across restarts but draws a new service_id at every
 * process start, and sends no stop events when it is killed. So a heartbeat
 * with a new service_id means the old process is gone: its sessions end for
 * good. A start hook with a new service_id does the same only on a server
 * that never heartbeats; elsewhere it is a candidate until its own first
 * heartbeat (it may be late, or forged). Stop and close events never move the
 * epoch: a late on_stop of some process must not fence the running one.
 *
 * Heartbeat silence for SERVER_TIMEOUT_S is not death: a partition between an
 * edge and Cloudflare looks the same. The server's sessions are suspended
 * (they stop counting and blocking, so a crashed edge holds nothing hostage)
 * and come back the moment the same process is heard from again. Only a
 * restart, a stop event, or SESSION_GRACE_S of silence end them.
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
    const epoch = this.acknowledgeEpoch(beat.serverId, beat.serviceId, "heartbeat");
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
    const epoch = this.acknowledgeEpoch(serverId, serviceId, "start");
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
        : this.acknowledgeEpoch(serverId, serviceId, "stop");
    return { epoch, lastHeartbeat: this.servers.get(serverId)?.last_heartbeat ?? null };
  }

  /**
   * A hook that gates nothing (on_connect, on_hls, on_dvr, on_forward) came
   * from this process: like a stop event it brings a silent server back and
   * never changes which process is current (src/srs/routes.ts heardFrom).
   */
  async heard(serverId: string, serviceId: string): Promise<void> {
    this.acknowledgeEpoch(serverId, serviceId, "stop");
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
    this.acknowledgeEpoch(serverId, serviceId, "stop");
    this.forgetSessions(serverId, streams.map((s) => ({ ...s, serviceId, clientId })), voidHook);
  }

  /** on_close: the streams the client still holds (the caller ends them, then forgets them). */
  async held(serverId: string, serviceId: string, clientId: string): Promise<ClientStream[]> {
    this.acknowledgeEpoch(serverId, serviceId, "stop");
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
    if (witness) this.acknowledgeEpoch(witness.serverId, witness.serviceId, "start");
    const now = Date.now();
    return processes.map((p) => {
      let row = this.servers.get(p.serverId);
      if (!row || (p.serviceId !== row.service_id && !this.isRetired(p.serverId, p.serviceId) && !this.candidatesOf(p.serverId).includes(p.serviceId))) {
        this.acknowledgeEpoch(p.serverId, p.serviceId, "start");
        row = this.servers.get(p.serverId)!;
      }
      return { ...this.statusOf(row, p.serviceId, now), api: this.apiOf(row) };
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
    const base = row ? this.apiOf(row) : null;
    return base ? { base, serverId, serviceId, earlier: this.earlierThan(row!, serviceId) } : null;
  }

  /**
   * The server's processes known to be earlier than `serviceId`'s: for the current one, those retired; for a
   * candidate (its first heartbeat on its way), the current one too; for a retired one, those retired before it.
   * An API answer from one of them is the old process still answering at the address, not a sign the session's is gone.
   */
  private earlierThan(row: ServerRow, serviceId: string): string[] {
    const retired = (before: number) =>
      this.sql.exec<{ service_id: string }>("SELECT service_id FROM retired WHERE server_id = ? AND retired_at < ?", row.server_id, before).toArray().map((r) => r.service_id);
    if (serviceId === row.service_id) return retired(Number.MAX_SAFE_INTEGER);
    const at = this.sql.exec<{ retired_at: number }>("SELECT retired_at FROM retired WHERE server_id = ? AND service_id = ?", row.server_id, serviceId).toArray()[0];
    if (at) return retired(at.retired_at);
    if (this.candidatesOf(row.server_id).includes(serviceId)) return [row.service_id, ...retired(Number.MAX_SAFE_INTEGER)];
    return [];
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
    return row ? this.view(row, this.facts(serverId)) : null;
  }

  /** Every server of this shard, for GET /admin/servers. */
  list(): ServerState[] {
    const facts = this.facts(null);
    return [...this.servers.values()].map((row) => this.view(row, facts));
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
      if (row.dead_since === null && this.isSilent(row, now)) {
        this.suspend(row, now, `no heartbeat for ${timeout / 1000} s`);
      }
      if (row.dead_since !== null && this.graceOver(row, now)) this.expire(row, now);
      this.settleCandidates(row, now);
      this.forgetIfIdle(row, now, retention);
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
      const silent = !row || row.dead_since !== null || this.isSilent(row, now);
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

  // --- epochs and liveness -----------------------------------------------------------

  /**
   * Every message from a server passes here first, synchronously (so no other
   * message interleaves), and says which process of the server it comes from:
   * the current one (a silent server is back: its sessions count again), a
   * retired one, a candidate, or a new current one: a heartbeat with a new
   * service_id (or a start hook on a server that never heartbeats) is a
   * restart, which retires the old process and tells its streams by notices.
   */
  private acknowledgeEpoch(serverId: string, serviceId: string, kind: MessageKind): Epoch {
    const now = Date.now();
    const row = this.servers.get(serverId);
    if (!row) {
      if (kind === "stop") return "unknown";
      // The news of a server starts from the clock, not 0: a server forgotten (SERVER_RETENTION_S) and heard
      // from again must not number its news below what streams and shards applied before (they ignore older news).
      const fresh: ServerRow = {
        server_id: serverId, service_id: serviceId, device_id: "", ip: "", pid: "", api_override: null, api_ok: null,
        last_heartbeat: null, dead_since: null, expired_at: null, expired_last_alive: null, last_seen: now, seq: now,
      };
      this.servers.set(serverId, fresh);
      this.sql.exec(
        "INSERT INTO servers (server_id, service_id, device_id, ip, pid, last_seen, seq) VALUES (?, ?, '', '', '', ?, ?)",
        serverId, serviceId, now, now,
      );
      // Forgotten after SERVER_RETENTION_S if it never heartbeats and holds nothing.
      this.armAlarm(now + serverRetentionMs(this.env));
      return "current";
    }
    if (serviceId === row.service_id) {
      this.touch(row, now);
      if (row.dead_since !== null || this.isSilent(row, now)) {
        if (this.graceOver(row, now)) this.expire(row, now);
        this.resume(row, now);
      }
      return "current";
    }
    if (this.isRetired(serverId, serviceId)) {
      if (kind !== "stop") this.heardFromRetired(row, serviceId, now);
      return "retired";
    }
    if (kind === "stop") {
      // A stop or close event, or a hook that gates nothing, of a candidate: it is alive (and stays a candidate).
      this.candidateHeard(row, serviceId, now);
      return "unknown";
    }
    // On a server that heartbeats, only a heartbeat moves the epoch. A start hook from a process
    // never heard of may be a restart whose first heartbeat is on its way, a late hook of an older
    // process, or a forgery: it waits as a candidate until its own first heartbeat.
    if (kind === "start" && row.last_heartbeat !== null) {
      this.touch(row, now);
      if (!this.candidateHeard(row, serviceId, now)) {
        this.sql.exec("INSERT INTO candidates (server_id, service_id, since, heard_at) VALUES (?, ?, ?, ?)", serverId, serviceId, now, now);
      }
      this.armAlarm(now + serverTimeoutMs(this.env));
      return "candidate";
    }
    this.restart(row, serviceId, now);
    return "current";
  }

  /**
   * A new process is current from now on; the old one (and any other
   * candidate) is retired, and its streams are told by notices.
   */
  private restart(row: ServerRow, serviceId: string, now: number): void {
    const replaced = [row.service_id, ...this.candidatesOf(row.server_id).filter((c) => c !== serviceId)];
    // The old process was last known alive at the server's last heartbeat (unknown without heartbeats: now); a candidate at its last hook.
    const lastAlive = new Map(replaced.map((old) => [old, this.candidateLastAlive(row.server_id, old) ?? row.last_heartbeat ?? now]));
    // Sessions of the old process that SESSION_GRACE_S ended (before it was heard from again) keep that end, told with this one.
    const earlier = row.expired_at === null ? undefined : { cutoff: row.expired_at, lastAlive: this.expiredLastAlive(row) };
    const current = row.service_id;
    const wasQuiet = this.sql.exec("SELECT 1 FROM candidates WHERE server_id = ? AND service_id = ? AND quiet = 1", row.server_id, serviceId).toArray().length > 0;
    row.service_id = serviceId;
    row.seq++;
    row.expired_at = null;
    row.expired_last_alive = null;
    this.sql.exec("UPDATE servers SET service_id = ?, seq = ?, expired_at = NULL, expired_last_alive = NULL WHERE server_id = ?", serviceId, row.seq, row.server_id);
    this.sql.exec("DELETE FROM candidates WHERE server_id = ?", row.server_id);
    for (const old of replaced) {
      const before = old === current ? earlier : undefined;
      this.retire(row.server_id, old, now, lastAlive.get(old)!, before);
      this.notices.queue(row, old, "ended", FOREVER, true, `its server restarted as service ${serviceId}`, lastAlive.get(old)!, before);
    }
    this.touch(row, now);
    if (row.dead_since !== null || this.isSilent(row, now)) this.resume(row, now, "restarted");
    else if (wasQuiet) this.newStatus(row, serviceId, "live", "its server restarted: heard from again");
  }

  /**
   * A candidate that has not heartbeated although the current process did
   * for a whole SERVER_TIMEOUT_S since the candidate appeared was a late or
   * forged hook: retired, its sessions ended. While the current process is
   * silent, candidates wait (their sessions count): only their own heartbeat
   * makes one current, so neither a forger nor a late hook can take over a
   * server whose heartbeats are merely late. After SESSION_GRACE_S a
   * candidate is refused whatever happens.
   */
  private settleCandidates(row: ServerRow, now: number): void {
    const timeout = serverTimeoutMs(this.env);
    for (const c of this.sql.exec<{ service_id: string; since: number; heard_at: number | null }>("SELECT service_id, since, heard_at FROM candidates WHERE server_id = ?", row.server_id).toArray()) {
      const currentProvedAlive = now >= c.since + timeout && row.dead_since === null && !this.isSilent(row, now);
      if (!currentProvedAlive && now < c.since + sessionGraceMs(this.env)) continue;
      this.sql.exec("DELETE FROM candidates WHERE server_id = ? AND service_id = ?", row.server_id, c.service_id);
      // Its sessions end at its last hook, the last moment it was known alive, not now.
      const lastAlive = c.heard_at ?? c.since;
      this.retire(row.server_id, c.service_id, now, lastAlive);
      this.notices.queue(row, c.service_id, "ended", FOREVER, true, `service ${c.service_id} never heartbeated while service ${row.service_id} did (a late or forged hook)`, lastAlive);
      console.log(JSON.stringify({ event: "candidate process refused", server: row.server_id, current: row.service_id, refused: c.service_id }));
    }
    this.quietenCandidates(row, now);
  }

  /**
   * A candidate that sent no hook for SERVER_TIMEOUT_S and never heartbeated
   * (a restart that crashed at once, or a forger gone quiet) is treated as a
   * silent server: its sessions are suspended (they neither count nor block)
   * until it speaks again or heartbeats, so it never holds a stream hostage
   * while the current process is silent too.
   */
  private quietenCandidates(row: ServerRow, now: number): void {
    const timeout = serverTimeoutMs(this.env);
    const quiet = this.sql
      .exec<{ service_id: string }>("SELECT service_id FROM candidates WHERE server_id = ? AND quiet = 0 AND COALESCE(heard_at, since) + ? <= ?", row.server_id, timeout, now)
      .toArray();
    for (const c of quiet) {
      this.sql.exec("UPDATE candidates SET quiet = 1 WHERE server_id = ? AND service_id = ?", row.server_id, c.service_id);
      this.newStatus(row, c.service_id, "suspended", `a new process of its server: no heartbeat yet, and no hook for ${timeout / 1000} s`);
    }
  }

  /** A hook of a candidate: it is alive, and a quiet one's sessions count again. False: not a candidate. */
  private candidateHeard(row: ServerRow, serviceId: string, now: number): boolean {
    const known = this.sql.exec<{ quiet: number }>("SELECT quiet FROM candidates WHERE server_id = ? AND service_id = ?", row.server_id, serviceId).toArray()[0];
    if (!known) return false;
    this.sql.exec("UPDATE candidates SET heard_at = ?, quiet = 0 WHERE server_id = ? AND service_id = ?", now, row.server_id, serviceId);
    if (known.quiet === 1) this.newStatus(row, serviceId, "live", "a new process of its server, heard from again");
    return true;
  }

  /** When a candidate was last heard from (its sessions end there if it is refused or replaced). */
  private candidateLastAlive(serverId: string, serviceId: string): number | null {
    return this.sql.exec<{ at: number }>("SELECT COALESCE(heard_at, since) AS at FROM candidates WHERE server_id = ? AND service_id = ?", serverId, serviceId).toArray()[0]?.at ?? null;
  }

  /** A change of one process's status, told to its streams. */
  private newStatus(row: ServerRow, serviceId: string, status: "live" | "suspended", why: string): void {
    row.seq++;
    this.sql.exec("UPDATE servers SET seq = ? WHERE server_id = ?", row.seq, row.server_id);
    this.notices.queue(row, serviceId, status, 0, false, why);
  }

  /**
   * A retired service_id never becomes current again, however long it was
   * silent (a duplicate SRS with the same server_id may be down for a week):
   * each server keeps its last RETIRED_KEPT, until the server itself is
   * forgotten (SERVER_RETENTION_S).
   */
  private retire(serverId: string, serviceId: string, now: number, lastAlive: number, earlier?: ProcessStatus["earlier"]): void {
    this.sql.exec(
      "INSERT OR REPLACE INTO retired (server_id, service_id, retired_at, last_alive, early_cutoff, early_last_alive) VALUES (?, ?, ?, ?, ?, ?)",
      serverId, serviceId, now, lastAlive, earlier?.cutoff ?? 0, earlier?.lastAlive ?? 0,
    );
    this.sql.exec(
      "DELETE FROM retired WHERE server_id = ? AND service_id NOT IN (SELECT service_id FROM retired WHERE server_id = ? ORDER BY retired_at DESC LIMIT ?)",
      serverId, serverId, RETIRED_KEPT,
    );
  }

  private candidatesOf(serverId: string): string[] {
    return this.sql.exec<{ service_id: string }>("SELECT service_id FROM candidates WHERE server_id = ?", serverId).toArray().map((r) => r.service_id);
  }

  /** Where one process stands now (see ProcessStatus). */
  private statusOf(row: ServerRow, serviceId: string, now: number): ProcessStatus {
    if (serviceId !== row.service_id && this.candidatesOf(row.server_id).includes(serviceId)) {
      this.quietenCandidates(row, now);
      const quiet = this.sql.exec("SELECT 1 FROM candidates WHERE server_id = ? AND service_id = ? AND quiet = 1", row.server_id, serviceId).toArray().length > 0;
      const why = quiet ? "a new process of its server, silent and never confirmed by a heartbeat" : "a new process of its server, not yet confirmed by a heartbeat";
      return { serverId: row.server_id, serviceId, seq: row.seq, status: quiet ? "suspended" : "live", cutoff: 0, replaced: false, why };
    }
    if (serviceId !== row.service_id) {
      // Its sessions end at its last heartbeat, as the restart's notice says (a stream may ask before that notice reaches it).
      const retired = this.sql
        .exec<{ last_alive: number; early_cutoff: number; early_last_alive: number }>(
          "SELECT last_alive, early_cutoff, early_last_alive FROM retired WHERE server_id = ? AND service_id = ?", row.server_id, serviceId,
        )
        .toArray()[0];
      return {
        serverId: row.server_id,
        serviceId,
        seq: row.seq,
        status: "ended",
        cutoff: FOREVER,
        replaced: true,
        lastAlive: retired?.last_alive ?? 0,
        ...(retired?.early_cutoff ? { earlier: { cutoff: retired.early_cutoff, lastAlive: retired.early_last_alive } } : {}),
        why: "its server restarted",
      };
    }
    const silent = row.dead_since !== null || this.isSilent(row, now);
    if (silent && row.dead_since === null) this.suspend(row, now, `no heartbeat for ${serverTimeoutMs(this.env) / 1000} s`);
    if (silent && this.graceOver(row, now)) this.expire(row, now);
    return {
      serverId: row.server_id,
      serviceId,
      seq: row.seq,
      status: silent ? "suspended" : "live",
      cutoff: row.expired_at ?? 0,
      lastAlive: row.expired_at === null ? 0 : this.expiredLastAlive(row),
      replaced: false,
      why: silent ? "its server is silent" : "its server is alive",
    };
  }

  /** The last heartbeat before the silence SESSION_GRACE_S ended (a return since has moved last_heartbeat on). */
  private expiredLastAlive(row: ServerRow): number {
    // Expired by a version that did not keep it: the heartbeat itself, unless the server has returned since (then the cutoff).
    return row.expired_last_alive ?? Math.min(row.expired_at!, row.last_heartbeat ?? row.expired_at!);
  }

  /** Silent for SESSION_GRACE_S, and its sessions not yet ended for this silence. */
  private graceOver(row: ServerRow, now: number): boolean {
    if (row.last_heartbeat === null || now < row.last_heartbeat + sessionGraceMs(this.env)) return false;
    return row.expired_at === null || row.expired_at < row.last_heartbeat;
  }

  /** The server went silent: its current process's sessions are suspended everywhere. */
  private suspend(row: ServerRow, now: number, why: string): void {
    row.dead_since = now;
    row.seq++;
    this.sql.exec("UPDATE servers SET dead_since = ?, seq = ? WHERE server_id = ?", now, row.seq, row.server_id);
    this.notices.queue(row, row.service_id, "suspended", 0, false, why);
    console.log(JSON.stringify({ event: "server silent", server: row.server_id, service: row.service_id, why }));
  }

  /** The same process is heard from again: what it held counts and blocks again. */
  private resume(row: ServerRow, now: number, how: "back" | "restarted" = "back"): void {
    row.dead_since = null;
    row.last_heartbeat = row.last_heartbeat === null ? null : now;
    row.seq++;
    this.sql.exec("UPDATE servers SET dead_since = NULL, last_heartbeat = ?, seq = ? WHERE server_id = ?", row.last_heartbeat, row.seq, row.server_id);
    this.notices.queue(row, row.service_id, "live", 0, false, "its server is heard from again");
    if (row.last_heartbeat !== null) this.armAlarm(now + serverTimeoutMs(this.env));
    // Kicks waiting for it (a viewer's session ended for a newer one while it was silent) go now.
    if (this.kicks.serverBack(row.server_id)) this.armAlarm(now);
    console.log(JSON.stringify({ event: how === "back" ? "server back" : "server restarted after a silence", server: row.server_id, service: row.service_id }));
  }

  /** SESSION_GRACE_S of silence: the process's sessions so far end for good. */
  private expire(row: ServerRow, now: number): void {
    // Sessions up to the moment the server went silent end, and those whose hook arrived before it and
    // whose decision took a moment (a stream or shard stamps a session when it admits it, up to a hook's
    // deadline and its undo later): a session admitted since then is a new one of a returning process
    // (whose hook may reach its stream before this does; a return resumes the server, so it comes later).
    row.expired_at = Math.min(now, row.last_heartbeat! + serverTimeoutMs(this.env) + HOOK_DEADLINE_MS + UNDO_WAIT_MS);
    row.expired_last_alive = row.last_heartbeat!;
    row.seq++;
    this.sql.exec("UPDATE servers SET expired_at = ?, expired_last_alive = ?, seq = ? WHERE server_id = ?", row.expired_at, row.expired_last_alive, row.seq, row.server_id);
    this.notices.queue(row, row.service_id, "suspended", row.expired_at, false, `its server sent no heartbeat for ${sessionGraceMs(this.env) / 1000} s (SESSION_GRACE_S)`, row.last_heartbeat!);
  }

  /** A retired process that still speaks long after its replacement is a second SRS with the same server_id. */
  private heardFromRetired(row: ServerRow, serviceId: string, now: number): void {
    const r = this.sql
      .exec<{ retired_at: number; heard_at: number | null }>("SELECT retired_at, heard_at FROM retired WHERE server_id = ? AND service_id = ?", row.server_id, serviceId)
      .one();
    if (now - r.retired_at < serverTimeoutMs(this.env)) return; // a message still in flight at the restart
    if (r.heard_at === null || now - r.heard_at >= DUPLICATE_LOG_EVERY_MS) {
      this.sql.exec("UPDATE retired SET heard_at = ? WHERE server_id = ? AND service_id = ?", now, row.server_id, serviceId);
      console.log(JSON.stringify({
        event: "duplicate server_id",
        server: row.server_id,
        current: row.service_id,
        duplicate: serviceId,
        advice: "two SRS processes report this server_id: give each its own (SRS server_id setting)",
      }));
    }
  }

  private forgetIfIdle(row: ServerRow, now: number, retention: number): void {
    if (row.dead_since === null && row.last_heartbeat !== null) return;
    if (now < row.last_seen + retention) return;
    const held = this.sql.exec("SELECT 1 FROM client_streams WHERE server_id = ? LIMIT 1", row.server_id).toArray().length;
    if (held || this.notices.pendingFor(row.server_id)) return;
    this.servers.delete(row.server_id);
    this.sql.exec("DELETE FROM servers WHERE server_id = ?", row.server_id);
    this.sql.exec("DELETE FROM retired WHERE server_id = ?", row.server_id);
    this.sql.exec("DELETE FROM candidates WHERE server_id = ?", row.server_id);
  }

  private touch(row: ServerRow, now: number): void {
    if (now - row.last_seen < LAST_SEEN_GRAIN_MS) return;
    row.last_seen = now;
    this.sql.exec("UPDATE servers SET last_seen = ? WHERE server_id = ?", now, row.server_id);
  }

  private isSilent(row: ServerRow, now: number): boolean {
    return row.last_heartbeat !== null && now - row.last_heartbeat >= serverTimeoutMs(this.env);
  }

  private isRetired(serverId: string, serviceId: string): boolean {
    return this.sql.exec("SELECT 1 FROM retired WHERE server_id = ? AND service_id = ?", serverId, serviceId).toArray().length > 0;
  }

  /** What the admin view adds to a server's row, for one server or (null) the whole shard: four grouped queries. */
  private facts(serverId: string | null): ServerFacts {
    const where = serverId === null ? "" : "WHERE server_id = ?";
    const args = serverId === null ? [] : [serverId];
    const counts = (table: "client_streams" | "notices", extra = "", extraArgs: string[] = []) =>
      new Map(
        this.sql
          .exec<{ server_id: string; n: number }>(`SELECT server_id, COUNT(*) AS n FROM ${table} ${where ? `${where}${extra && ` AND ${extra}`}` : extra && `WHERE ${extra}`} GROUP BY server_id`, ...args, ...extraArgs)
          .toArray()
          .map((r) => [r.server_id, r.n]),
      );
    const lists = (rows: Iterable<{ server_id: string; service_id: string }>) => {
      const byServer = new Map<string, string[]>();
      for (const r of rows) byServer.set(r.server_id, [...(byServer.get(r.server_id) ?? []), r.service_id]);
      return byServer;
    };
    const heardSince = Date.now() - serverRetentionMs(this.env);
    return {
      // Publishers only: the viewer shard counts the server's viewers (the admin route adds them).
      sessions: counts("client_streams", "stream_key != ?", [VIEWER_SHARD_ENTRY.streamKey]),
      pending: counts("notices"),
      duplicates: lists(
        this.sql.exec<{ server_id: string; service_id: string }>(
          `SELECT server_id, service_id FROM retired ${where ? `${where} AND` : "WHERE"} heard_at IS NOT NULL AND heard_at > ? ORDER BY service_id`,
          ...args, heardSince,
        ),
      ),
      candidates: lists(this.sql.exec<{ server_id: string; service_id: string }>(`SELECT server_id, service_id FROM candidates ${where} ORDER BY service_id`, ...args)),
    };
  }

  private view(row: ServerRow, facts: ServerFacts): ServerState {
    const id = row.server_id;
    return {
      serverId: id,
      serviceId: row.service_id,
      deviceId: row.device_id,
      ip: row.ip,
      pid: row.pid,
      lastHeartbeat: row.last_heartbeat === null ? null : new Date(row.last_heartbeat).toISOString(),
      alive: row.dead_since === null && !this.isSilent(row, Date.now()),
      sessions: facts.sessions.get(id) ?? 0,
      duplicateServiceIds: facts.duplicates.get(id) ?? [],
      pendingNotices: facts.pending.get(id) ?? 0,
      candidateServiceIds: facts.candidates.get(id) ?? [],
      api: this.apiOf(row),
      apiOk: row.api_ok === null ? null : row.api_ok === 1,
    };
  }

  private apiOf(row: ServerRow): string | null {
    return apiBase(this.env, { serverId: row.server_id, deviceId: row.device_id, override: row.api_override });
  }
}

interface ServerFacts {
  sessions: Map<string, number>;
  pending: Map<string, number>;
  duplicates: Map<string, string[]>;
  candidates: Map<string, string[]>;
}

