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

/** A stream on which a client of this server holds (or asked for) a session. */
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

export const SERVER_CATALOGUE_PREFIX = "server:";

interface ServerRow extends Record<string, SqlStorageValue> {
  server_id: string;
  service_id: string;
  device_id: string;
  ip: string;
  pid: string;
  last_heartbeat: number | null;
  dead_since: number | null;
  catalogued: number;
}

const RETIRED_KEPT_MS = 24 * 3600 * 1000;
/** A fence that could not reach every stream is retried this much later, by the alarm. */
const FENCE_RETRY_MS = 5000;

/**
 * One object per SRS server_id: the server's current process, its liveness,
 * and which streams each of its clients holds sessions on.
 *
 * SRS keeps server_id across restarts but draws a new service_id at every
 * process start, and sends no stop events when it is killed. So a message
 * with a new service_id means the old process is gone: every session it held,
 * on every stream, is ended here ("restart fencing"). Heartbeat silence for
 * SERVER_TIMEOUT_S means the whole server is gone: an alarm ends its sessions.
 *
 * The client index exists because on_close names no stream, and because
 * fencing must know which streams to tell. A heartbeat writes one row.
 */
export class ServerObject extends DurableObject<Env> {
  private sql: SqlStorage;
  private row: ServerRow | null;
  private alarmAt: number | null = null;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(`
      CREATE TABLE IF NOT EXISTS server (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        server_id TEXT NOT NULL, service_id TEXT NOT NULL, device_id TEXT NOT NULL,
        ip TEXT NOT NULL, pid TEXT NOT NULL, last_heartbeat INTEGER, dead_since INTEGER,
        catalogued INTEGER NOT NULL DEFAULT 0);
      CREATE TABLE IF NOT EXISTS client_streams (
        service_id TEXT NOT NULL, client_id TEXT NOT NULL, stream_key TEXT NOT NULL, role TEXT NOT NULL,
        tracked_at INTEGER NOT NULL,
        PRIMARY KEY (service_id, client_id, stream_key, role)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS retired (service_id TEXT PRIMARY KEY, retired_at INTEGER NOT NULL) WITHOUT ROWID;
    `);
    this.row = this.sql.exec<ServerRow>("SELECT * FROM server").toArray()[0] ?? null;
    ctx.blockConcurrencyWhile(async () => {
      this.alarmAt = await ctx.storage.getAlarm();
    });
  }

  // --- messages from the server ------------------------------------------------

  async heartbeat(beat: Heartbeat): Promise<Epoch> {
    const epoch = await this.observe(beat.serverId, beat.serviceId);
    if (epoch === "retired") return epoch;
    const row = this.row!;
    row.device_id = beat.deviceId;
    row.ip = beat.ip;
    row.pid = beat.pid;
    row.last_heartbeat = Date.now();
    this.sql.exec(
      "UPDATE server SET device_id = ?, ip = ?, pid = ?, last_heartbeat = ? WHERE id = 1",
      row.device_id, row.ip, row.pid, row.last_heartbeat,
    );
    // One alarm per timeout period, not one write per heartbeat: the alarm
    // looks at the latest heartbeat when it fires and re-arms itself.
    if (this.alarmAt === null) this.armAlarm(row.last_heartbeat + serverTimeoutMs(this.env));
    if (!row.catalogued) this.ctx.waitUntil(this.catalogue());
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
        "INSERT OR IGNORE INTO client_streams (service_id, client_id, stream_key, role, tracked_at) VALUES (?, ?, ?, ?, ?)",
        serviceId, clientId, stream.streamKey, stream.role, Date.now(),
      );
    }
    return epoch;
  }

  async untrack(serverId: string, serviceId: string, clientId: string, stream: ClientStream): Promise<void> {
    await this.observe(serverId, serviceId);
    this.sql.exec(
      "DELETE FROM client_streams WHERE service_id = ? AND client_id = ? AND stream_key = ? AND role = ?",
      serviceId, clientId, stream.streamKey, stream.role,
    );
  }

  /** on_close: forgets the client and returns the streams it still held. */
  async close(serverId: string, serviceId: string, clientId: string): Promise<ClientStream[]> {
    await this.observe(serverId, serviceId);
    const held = this.sql
      .exec<{ stream_key: string; role: string }>(
        "SELECT stream_key, role FROM client_streams WHERE service_id = ? AND client_id = ?",
        serviceId, clientId,
      )
      .toArray()
      .map((r) => ({ streamKey: r.stream_key, role: r.role as Role }));
    this.sql.exec("DELETE FROM client_streams WHERE service_id = ? AND client_id = ?", serviceId, clientId);
    return held;
  }

  // --- questions from streams --------------------------------------------------

  /**
   * Is the process `serviceId` of this server still alive? A stream asks
   * before it denies because of that process's sessions. `witness` is the
   * hook being decided when it comes from this same server: it may be the
   * first news of a restart.
   *
   * A service_id that is neither current nor retired is newer than anything
   * seen here: its hook reached the stream before its own message reached
   * this object. It is the running process, so it is observed (which fences
   * the old one) and reported alive.
   */
  async isAlive(serverId: string, serviceId: string, witness?: { serverId: string; serviceId: string }): Promise<Liveness> {
    if (witness) await this.observe(witness.serverId, witness.serviceId);
    if (this.row && serviceId !== this.row.service_id && this.isRetired(serviceId)) return "replaced";
    if (!this.row || serviceId !== this.row.service_id) await this.observe(serverId, serviceId);
    return this.isDead(Date.now()) ? "dead" : "alive";
  }

  state(): ServerState | null {
    const row = this.row;
    if (!row) return null;
    const sessions = this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM client_streams").one().n;
    return {
      serverId: row.server_id,
      serviceId: row.service_id,
      deviceId: row.device_id,
      ip: row.ip,
      pid: row.pid,
      lastHeartbeat: row.last_heartbeat === null ? null : new Date(row.last_heartbeat).toISOString(),
      alive: !this.isDead(Date.now()),
      sessions,
    };
  }

  // --- liveness ----------------------------------------------------------------

  /**
   * Fires SERVER_TIMEOUT_S after the last heartbeat, and FENCE_RETRY_MS after
   * a fence that could not reach every stream. Declares the server dead if no
   * heartbeat came in time, and re-sends whatever fences are still owed.
   */
  async alarm(): Promise<void> {
    this.alarmAt = null;
    const row = this.row;
    if (!row) return;
    const now = Date.now();
    if (row.last_heartbeat !== null && row.dead_since === null) {
      const deadline = row.last_heartbeat + serverTimeoutMs(this.env);
      if (now >= deadline) {
        row.dead_since = now;
        this.sql.exec("UPDATE server SET dead_since = ? WHERE id = 1", now);
        await this.fence(null, now, `no heartbeat for ${serverTimeoutMs(this.env) / 1000} s`);
      } else {
        this.armAlarm(deadline);
      }
    }
    // Retries: sessions of replaced processes, and of a dead server, that a fence did not reach.
    const owed = this.sql
      .exec<{ service_id: string }>("SELECT DISTINCT service_id FROM client_streams WHERE service_id != ?", row.service_id)
      .toArray();
    for (const { service_id } of owed) await this.fence(service_id, now, "its server restarted (retry)");
    if (row.dead_since !== null) await this.fence(null, row.dead_since, `no heartbeat for ${serverTimeoutMs(this.env) / 1000} s (retry)`);
    if (!row.catalogued) await this.catalogue();
  }

  private isDead(now: number): boolean {
    const row = this.row!;
    if (row.dead_since !== null) return true;
    return row.last_heartbeat !== null && now - row.last_heartbeat >= serverTimeoutMs(this.env);
  }

  /** Keeps the earliest of the times the alarm is wanted. */
  private armAlarm(at: number): void {
    if (this.alarmAt !== null && this.alarmAt <= at) return;
    this.alarmAt = at;
    void this.ctx.storage.setAlarm(at);
  }

  private isRetired(serviceId: string): boolean {
    return this.sql.exec("SELECT 1 FROM retired WHERE service_id = ?", serviceId).toArray().length > 0;
  }

  /**
   * Lists the server in the KV catalogue for GET /admin/servers. Not on any
   * hook's path: a failure is retried by the next heartbeat or alarm.
   */
  private async catalogue(): Promise<void> {
    const row = this.row!;
    try {
      await this.env.CATALOGUE.put(SERVER_CATALOGUE_PREFIX + row.server_id, JSON.stringify({ serverId: row.server_id }));
      row.catalogued = 1;
      this.sql.exec("UPDATE server SET catalogued = 1 WHERE id = 1");
    } catch (err) {
      console.error(JSON.stringify({ error: "server catalogue write failed", server: row.server_id, detail: String(err) }));
      this.armAlarm(Date.now() + FENCE_RETRY_MS);
    }
  }

  /**
   * Every message from the server passes here first. A new service_id is a
   * restart: the old process's sessions are fenced off before the message is
   * answered. A dead server that speaks again is alive again.
   */
  private async observe(serverId: string, serviceId: string): Promise<Epoch> {
    const now = Date.now();
    const row = this.row;
    if (!row) {
      this.row = { server_id: serverId, service_id: serviceId, device_id: "", ip: "", pid: "", last_heartbeat: null, dead_since: null, catalogued: 0 };
      this.sql.exec("INSERT INTO server (id, server_id, service_id, device_id, ip, pid) VALUES (1, ?, ?, '', '', '')", serverId, serviceId);
      this.ctx.waitUntil(this.catalogue());
      return "current";
    }
    if (serviceId === row.service_id) {
      if (this.isDead(now)) this.revive(now);
      return "current";
    }
    if (this.isRetired(serviceId)) return "retired";

    // A restart. Everything here is synchronous until the fan-out, so any
    // message that arrives meanwhile already sees the new process as current.
    const old = row.service_id;
    row.service_id = serviceId;
    this.sql.exec("UPDATE server SET service_id = ? WHERE id = 1", serviceId);
    this.sql.exec("DELETE FROM retired WHERE retired_at < ?", now - RETIRED_KEPT_MS);
    this.sql.exec("INSERT OR REPLACE INTO retired (service_id, retired_at) VALUES (?, ?)", old, now);
    if (this.isDead(now)) this.revive(now);
    await this.fence(old, now, `the server restarted as service ${serviceId}`);
    return "current";
  }

  /** Treats the message as a heartbeat: the server is back, and its new sessions count. */
  private revive(now: number): void {
    const row = this.row!;
    row.dead_since = null;
    row.last_heartbeat = row.last_heartbeat === null ? null : now;
    this.sql.exec("UPDATE server SET dead_since = NULL, last_heartbeat = ? WHERE id = 1", row.last_heartbeat);
    if (row.last_heartbeat !== null && this.alarmAt === null) this.armAlarm(now + serverTimeoutMs(this.env));
  }

  /**
   * Ends, on every stream, the sessions that `serviceId` (null: every process
   * of this server) started at or before `cutoff`. The cutoff keeps sessions
   * admitted while the fan-out is under way, after a revival, out of reach.
   * Index rows are dropped only for the streams that were reached; the others
   * stay for the alarm to retry.
   */
  private async fence(serviceId: string | null, cutoff: number, why: string): Promise<void> {
    const serverId = this.row!.server_id;
    const match = serviceId === null ? "" : "AND service_id = ?";
    const args = serviceId === null ? [cutoff] : [cutoff, serviceId];
    const streams = this.sql
      .exec<{ stream_key: string }>(`SELECT DISTINCT stream_key FROM client_streams WHERE tracked_at <= ? ${match}`, ...args)
      .toArray()
      .map((r) => r.stream_key);
    const fence: Fence = { serverId, serviceId, cutoff, why, replaced: serviceId !== null };
    const results = await Promise.allSettled(streams.map((key) => streamObject(this.env, key).endSessionsOf(fence)));
    results.forEach((result, i) => {
      if (result.status === "fulfilled") {
        this.sql.exec(`DELETE FROM client_streams WHERE stream_key = ? AND tracked_at <= ? ${match}`, streams[i], ...args);
      } else {
        console.error(JSON.stringify({ error: "fence did not reach a stream", server: serverId, stream: streams[i], detail: String(result.reason) }));
        this.armAlarm(Date.now() + FENCE_RETRY_MS);
      }
    });
  }
}
