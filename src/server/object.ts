import { DurableObject } from "cloudflare:workers";
import type { Env } from "../env";
import type { Heartbeat, Role } from "../srs/hook";

/** What the admin API reports for one SRS server. */
export interface ServerState {
  serverId: string;
  serviceId: string;
  deviceId: string;
  ip: string;
  pid: string;
  lastHeartbeat: string | null;
  sessions: number;
}

/** A stream on which a client of this server holds (or asked for) a session. */
export interface ClientStream {
  streamKey: string;
  role: Role;
}

interface ServerRow extends Record<string, SqlStorageValue> {
  server_id: string;
  service_id: string;
  device_id: string;
  ip: string;
  pid: string;
  last_heartbeat: number | null;
}

/**
 * One object per SRS server_id. It records the server's heartbeats and, for
 * each of its clients, which streams that client holds sessions on: SRS's
 * on_close names no stream, so this index is the only way to find what a
 * closing client still holds.
 */
export class ServerObject extends DurableObject<Env> {
  private sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(`
      CREATE TABLE IF NOT EXISTS server (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        server_id TEXT NOT NULL, service_id TEXT NOT NULL, device_id TEXT NOT NULL,
        ip TEXT NOT NULL, pid TEXT NOT NULL, last_heartbeat INTEGER);
      CREATE TABLE IF NOT EXISTS client_streams (
        service_id TEXT NOT NULL, client_id TEXT NOT NULL, stream_key TEXT NOT NULL, role TEXT NOT NULL,
        PRIMARY KEY (service_id, client_id, stream_key, role)) WITHOUT ROWID;
    `);
  }

  heartbeat(beat: Heartbeat): void {
    this.sql.exec(
      `INSERT OR REPLACE INTO server (id, server_id, service_id, device_id, ip, pid, last_heartbeat)
       VALUES (1, ?, ?, ?, ?, ?, ?)`,
      beat.serverId, beat.serviceId, beat.deviceId, beat.ip, beat.pid, Date.now(),
    );
  }

  /** Remembers that a client started (or asked to start) a session on a stream. */
  track(serviceId: string, clientId: string, stream: ClientStream): void {
    this.sql.exec(
      "INSERT OR IGNORE INTO client_streams (service_id, client_id, stream_key, role) VALUES (?, ?, ?, ?)",
      serviceId, clientId, stream.streamKey, stream.role,
    );
  }

  untrack(serviceId: string, clientId: string, stream: ClientStream): void {
    this.sql.exec(
      "DELETE FROM client_streams WHERE service_id = ? AND client_id = ? AND stream_key = ? AND role = ?",
      serviceId, clientId, stream.streamKey, stream.role,
    );
  }

  /** on_close: forgets the client and returns the streams it still held. */
  close(serviceId: string, clientId: string): ClientStream[] {
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

  state(): ServerState | null {
    const row = this.sql.exec<ServerRow>("SELECT * FROM server").toArray()[0];
    if (!row) return null;
    const sessions = this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM client_streams").one().n;
    return {
      serverId: row.server_id,
      serviceId: row.service_id,
      deviceId: row.device_id,
      ip: row.ip,
      pid: row.pid,
      lastHeartbeat: row.last_heartbeat === null ? null : new Date(row.last_heartbeat).toISOString(),
      sessions,
    };
  }
}
