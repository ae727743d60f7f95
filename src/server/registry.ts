import { DurableObject } from "cloudflare:workers";
import { serverTimeoutMs } from "../config";
import type { Env } from "../env";
import type { Heartbeat, Role } from "../srs/hook";
import { streamObject } from "../stubs";

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
  /** Sessions this server's clients hold, over all streams. */
  sessions: number;
}

/** A stream on which a client of a server holds (or asked for) a session. */
export interface ClientStream {
  streamKey: string;
  role: Role;
}

/** Where a message's service_id stands: the running process, or one a restart replaced. */
export type Epoch = "current" | "retired";

/** What a stream learns when it asks about a process it holds sessions of. */
export type Liveness = "alive" | "dead" | "replaced";

/** What a stream is told to end: a process's sessions up to a moment, and why. */
export interface Fence {
  serverId: string;
  /** null: every process of the server (it died). */
  serviceId: string | null;
  cutoff: number;
  why: string;
  /** The process was replaced by a restart: it can never be admitted again. */
  replaced: boolean;
}

interface ServerRow extends Record<string, SqlStorageValue> {
  server_id: string;
  service_id: string;
  device_id: string;
  ip: string;
  pid: string;
  last_heartbeat: number | null;
  dead_since: number | null;
}

/** Servers are spread over this many registry objects by a hash of their server_id. */
export const REGISTRY_SHARDS = 16;
const RETIRED_KEPT_MS = 24 * 3600 * 1000;
/** A fence that could not reach every stream is retried this much later, by the alarm. */
const FENCE_RETRY_MS = 5000;

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
 * process start, and sends no stop events when it is killed. So a message
 * with a new service_id means the old process is gone: every session it held,
 * on every stream, is ended here ("restart fencing"). Heartbeat silence for
 * SERVER_TIMEOUT_S means the whole server is gone: the alarm ends its sessions.
 *
 * Sharded, not one object per server and not one for the fleet: a fixed,
 * small number of objects (so listing needs no catalogue, and thousands of
 * edges do not mean thousands of databases) that still spreads thousands of
 * heartbeats a second. A heartbeat writes one row; the alarm is set for the
 * earliest deadline of the shard, not re-set per heartbeat.
 *
 * The client index exists because on_close names no stream, and because
 * fencing must know which streams to tell.
 */
export class ServerRegistry extends DurableObject<Env> {
  private sql: SqlStorage;
  private servers = new Map<string, ServerRow>();
  private alarmAt: number | null = null;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
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
    `);
    for (const row of this.sql.exec<ServerRow>("SELECT * FROM servers")) this.servers.set(row.server_id, row);
    ctx.blockConcurrencyWhile(async () => {
      this.alarmAt = await ctx.storage.getAlarm();
      // A stored alarm may come from a longer SERVER_TIMEOUT_S; armAlarm keeps the earlier time.
      const next = this.nextDeadline();
      if (next !== null) this.armAlarm(next);
    });
  }

  // --- messages from servers -----------------------------------------------------

  async heartbeat(beat: Heartbeat): Promise<Epoch> {
    const epoch = await this.observe(beat.serverId, beat.serviceId);
    if (epoch === "retired") return epoch;
    const row = this.servers.get(beat.serverId)!;
    row.device_id = beat.deviceId;
    row.ip = beat.ip;
    row.pid = beat.pid;
    row.last_heartbeat = Date.now();
    this.sql.exec(
      "UPDATE servers SET device_id = ?, ip = ?, pid = ?, last_heartbeat = ? WHERE server_id = ?",
      row.device_id, row.ip, row.pid, row.last_heartbeat, row.server_id,
    );
    if (this.alarmAt === null) this.armAlarm(row.last_heartbeat + serverTimeoutMs(this.env));
    return epoch;
  }

  /**
   * Records that a client started (or asked to start) a session on a stream.
   * Answers "retired" when the message comes from a process a restart already
   * replaced: such a session must not be admitted.
   */
  async track(serverId: string, serviceId: string, clientId: string, stream: ClientStream): Promise<Epoch> {
    const epoch = await this.observe(serverId, serviceId);
    if (epoch === "current") {
      this.sql.exec(
        `INSERT OR IGNORE INTO client_streams (server_id, service_id, client_id, stream_key, role, tracked_at)
         VALUES (?, ?, ?, ?, ?, ?)`,
        serverId, serviceId, clientId, stream.streamKey, stream.role, Date.now(),
      );
    }
    return epoch;
  }

  async untrack(serverId: string, serviceId: string, clientId: string, stream: ClientStream): Promise<void> {
    await this.observe(serverId, serviceId);
    this.sql.exec(
      "DELETE FROM client_streams WHERE server_id = ? AND service_id = ? AND client_id = ? AND stream_key = ? AND role = ?",
      serverId, serviceId, clientId, stream.streamKey, stream.role,
    );
  }

  /** on_close: forgets the client and returns the streams it still held. */
  async close(serverId: string, serviceId: string, clientId: string): Promise<ClientStream[]> {
    await this.observe(serverId, serviceId);
    const held = this.sql
      .exec<{ stream_key: string; role: string }>(
        "DELETE FROM client_streams WHERE server_id = ? AND service_id = ? AND client_id = ? RETURNING stream_key, role",
        serverId, serviceId, clientId,
      )
      .toArray();
    return held.map((r) => ({ streamKey: r.stream_key, role: r.role as Role }));
  }

  // --- questions from streams and the admin API -------------------------------------

  /**
   * Is the process `serviceId` of a server still alive? A stream asks before
   * it denies because of that process's sessions. `witness` is the hook being
   * decided when it comes from the same server: it may be the first news of a
   * restart.
   *
   * A service_id that is neither current nor retired is newer than anything
   * seen here: its hook reached the stream before its own message reached
   * the registry. It is the running process, so it is observed (which fences
   * the old one) and reported alive.
   */
  async isAlive(serverId: string, serviceId: string, witness?: { serverId: string; serviceId: string }): Promise<Liveness> {
    if (witness) await this.observe(witness.serverId, witness.serviceId);
    const row = this.servers.get(serverId);
    if (row && serviceId !== row.service_id && this.isRetired(serverId, serviceId)) return "replaced";
    if (!row || serviceId !== row.service_id) await this.observe(serverId, serviceId);
    return this.isDead(this.servers.get(serverId)!, Date.now()) ? "dead" : "alive";
  }

  state(serverId: string): ServerState | null {
    const row = this.servers.get(serverId);
    if (!row) return null;
    const sessions = this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM client_streams WHERE server_id = ?", serverId).one().n;
    return this.view(row, sessions);
  }

  /** Every server of this shard, for GET /admin/servers. */
  list(): ServerState[] {
    const sessions = new Map<string, number>();
    for (const r of this.sql.exec<{ server_id: string; n: number }>("SELECT server_id, COUNT(*) AS n FROM client_streams GROUP BY server_id")) {
      sessions.set(r.server_id, r.n);
    }
    return [...this.servers.values()].map((row) => this.view(row, sessions.get(row.server_id) ?? 0));
  }

  // --- liveness ----------------------------------------------------------------------

  /**
   * Fires at the shard's earliest heartbeat deadline, and FENCE_RETRY_MS after
   * a fence that could not reach every stream. Declares dead every server whose
   * heartbeat is overdue, re-sends whatever fences are still owed, and re-arms.
   */
  async alarm(): Promise<void> {
    this.alarmAt = null;
    const now = Date.now();
    const timeout = serverTimeoutMs(this.env);
    const why = `no heartbeat for ${timeout / 1000} s`;
    for (const row of this.servers.values()) {
      if (row.last_heartbeat === null || row.dead_since !== null || now < row.last_heartbeat + timeout) continue;
      row.dead_since = now;
      this.sql.exec("UPDATE servers SET dead_since = ? WHERE server_id = ?", now, row.server_id);
      await this.fence(row.server_id, null, now, why);
    }
    // Retries: sessions of replaced processes, and of dead servers, that a fence did not reach.
    const owed = this.sql
      .exec<{ server_id: string; service_id: string }>(
        `SELECT DISTINCT c.server_id, c.service_id FROM client_streams c JOIN servers s ON s.server_id = c.server_id
         WHERE c.service_id != s.service_id OR (s.dead_since IS NOT NULL AND c.tracked_at <= s.dead_since)`,
      )
      .toArray();
    for (const { server_id, service_id } of owed) {
      const row = this.servers.get(server_id)!;
      if (service_id !== row.service_id) await this.fence(server_id, service_id, now, "its server restarted (retry)");
      else if (row.dead_since !== null) await this.fence(server_id, null, row.dead_since, `${why} (retry)`);
    }
    const next = this.nextDeadline();
    if (next !== null) this.armAlarm(next);
  }

  private nextDeadline(): number | null {
    let earliest: number | null = null;
    for (const row of this.servers.values()) {
      if (row.last_heartbeat === null || row.dead_since !== null) continue;
      if (earliest === null || row.last_heartbeat < earliest) earliest = row.last_heartbeat;
    }
    return earliest === null ? null : earliest + serverTimeoutMs(this.env);
  }

  private isDead(row: ServerRow, now: number): boolean {
    if (row.dead_since !== null) return true;
    return row.last_heartbeat !== null && now - row.last_heartbeat >= serverTimeoutMs(this.env);
  }

  /** Keeps the earliest of the times the alarm is wanted. */
  private armAlarm(at: number): void {
    if (this.alarmAt !== null && this.alarmAt <= at) return;
    this.alarmAt = at;
    void this.ctx.storage.setAlarm(at);
  }

  private isRetired(serverId: string, serviceId: string): boolean {
    return this.sql.exec("SELECT 1 FROM retired WHERE server_id = ? AND service_id = ?", serverId, serviceId).toArray().length > 0;
  }

  private view(row: ServerRow, sessions: number): ServerState {
    return {
      serverId: row.server_id,
      serviceId: row.service_id,
      deviceId: row.device_id,
      ip: row.ip,
      pid: row.pid,
      lastHeartbeat: row.last_heartbeat === null ? null : new Date(row.last_heartbeat).toISOString(),
      alive: !this.isDead(row, Date.now()),
      sessions,
    };
  }

  /**
   * Every message from a server passes here first. A new service_id is a
   * restart: the old process's sessions are fenced off before the message is
   * answered. A dead server that speaks again is alive again.
   */
  private async observe(serverId: string, serviceId: string): Promise<Epoch> {
    const now = Date.now();
    const row = this.servers.get(serverId);
    if (!row) {
      const fresh: ServerRow = { server_id: serverId, service_id: serviceId, device_id: "", ip: "", pid: "", last_heartbeat: null, dead_since: null };
      this.servers.set(serverId, fresh);
      this.sql.exec("INSERT INTO servers (server_id, service_id, device_id, ip, pid) VALUES (?, ?, '', '', '')", serverId, serviceId);
      return "current";
    }
    if (serviceId === row.service_id) {
      if (this.isDead(row, now)) this.revive(row, now);
      return "current";
    }
    if (this.isRetired(serverId, serviceId)) return "retired";

    // A restart. Everything here is synchronous until the fan-out, so any
    // message that arrives meanwhile already sees the new process as current.
    const old = row.service_id;
    row.service_id = serviceId;
    this.sql.exec("UPDATE servers SET service_id = ? WHERE server_id = ?", serviceId, serverId);
    this.sql.exec("DELETE FROM retired WHERE retired_at < ?", now - RETIRED_KEPT_MS);
    this.sql.exec("INSERT OR REPLACE INTO retired (server_id, service_id, retired_at) VALUES (?, ?, ?)", serverId, old, now);
    if (this.isDead(row, now)) this.revive(row, now);
    await this.fence(serverId, old, now, `the server restarted as service ${serviceId}`);
    // Another restart may have been observed during the fan-out: then this process is replaced too.
    return row.service_id === serviceId ? "current" : "retired";
  }

  /** Treats the message as a heartbeat: the server is back, and its new sessions count. */
  private revive(row: ServerRow, now: number): void {
    row.dead_since = null;
    row.last_heartbeat = row.last_heartbeat === null ? null : now;
    this.sql.exec("UPDATE servers SET dead_since = NULL, last_heartbeat = ? WHERE server_id = ?", row.last_heartbeat, row.server_id);
    if (row.last_heartbeat !== null) this.armAlarm(now + serverTimeoutMs(this.env));
  }

  /**
   * Ends, on every stream, the sessions that a server's process `serviceId`
   * (null: every process of the server) started at or before `cutoff`. The
   * cutoff keeps sessions admitted while the fan-out is under way, after a
   * revival, out of reach. Index rows are dropped only for the streams that
   * were reached; the others stay for the alarm to retry.
   */
  private async fence(serverId: string, serviceId: string | null, cutoff: number, why: string): Promise<void> {
    const match = serviceId === null ? "" : "AND service_id = ?";
    const args = serviceId === null ? [serverId, cutoff] : [serverId, cutoff, serviceId];
    const streams = this.sql
      .exec<{ stream_key: string }>(`SELECT DISTINCT stream_key FROM client_streams WHERE server_id = ? AND tracked_at <= ? ${match}`, ...args)
      .toArray()
      .map((r) => r.stream_key);
    const fence: Fence = { serverId, serviceId, cutoff, why, replaced: serviceId !== null };
    const results = await Promise.allSettled(streams.map((key) => streamObject(this.env, key).endSessionsOf(fence)));
    results.forEach((result, i) => {
      if (result.status === "fulfilled") {
        this.sql.exec(`DELETE FROM client_streams WHERE stream_key = ? AND server_id = ? AND tracked_at <= ? ${match}`, streams[i], ...args);
      } else {
        console.error(JSON.stringify({ error: "fence did not reach a stream", server: serverId, stream: streams[i], detail: String(result.reason) }));
        this.armAlarm(Date.now() + FENCE_RETRY_MS);
      }
    });
  }
}
