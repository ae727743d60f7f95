/**
 * What the admin API reports of a registry shard's servers (GET /admin/servers): each server's row,
 * with what the shard's other tables add to it (sessions held, notices pending, duplicate and
 * candidate processes).
 */
import { serverRetentionMs } from "../config";
import type { Env } from "../env";
import { VIEWER_SHARD_ENTRY } from "../viewers/lease";
import { isSilent } from "./epochs";
import { apiOf, type ServerRow } from "./server-row";

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

/** What the admin view adds to a server's row, for one server or (null) the whole shard: four grouped queries. */
export function serverFacts(sql: SqlStorage, env: Env, serverId: string | null): ServerFacts {
  const where = serverId === null ? "" : "WHERE server_id = ?";
  const args = serverId === null ? [] : [serverId];
  const counts = (table: "client_streams" | "notices", extra = "", extraArgs: string[] = []) =>
    new Map(
      sql
        .exec<{ server_id: string; n: number }>(`SELECT server_id, COUNT(*) AS n FROM ${table} ${where ? `${where}${extra && ` AND ${extra}`}` : extra && `WHERE ${extra}`} GROUP BY server_id`, ...args, ...extraArgs)
        .toArray()
        .map((r) => [r.server_id, r.n]),
    );
  const lists = (rows: Iterable<{ server_id: string; service_id: string }>) => {
    const byServer = new Map<string, string[]>();
    for (const r of rows) byServer.set(r.server_id, [...(byServer.get(r.server_id) ?? []), r.service_id]);
    return byServer;
  };
  const heardSince = Date.now() - serverRetentionMs(env);
  return {
    // Publishers only: the viewer shard counts the server's viewers (the admin route adds them).
    sessions: counts("client_streams", "stream_key != ?", [VIEWER_SHARD_ENTRY.streamKey]),
    pending: counts("notices"),
    duplicates: lists(
      sql.exec<{ server_id: string; service_id: string }>(
        `SELECT server_id, service_id FROM retired ${where ? `${where} AND` : "WHERE"} heard_at IS NOT NULL AND heard_at > ? ORDER BY service_id`,
        ...args, heardSince,
      ),
    ),
    candidates: lists(sql.exec<{ server_id: string; service_id: string }>(`SELECT server_id, service_id FROM candidates ${where} ORDER BY service_id`, ...args)),
  };
}

/** One server as the admin API reports it. */
export function serverState(env: Env, row: ServerRow, facts: ServerFacts): ServerState {
  const id = row.server_id;
  return {
    serverId: id,
    serviceId: row.service_id,
    deviceId: row.device_id,
    ip: row.ip,
    pid: row.pid,
    lastHeartbeat: row.last_heartbeat === null ? null : new Date(row.last_heartbeat).toISOString(),
    alive: row.dead_since === null && !isSilent(row, Date.now(), env),
    sessions: facts.sessions.get(id) ?? 0,
    duplicateServiceIds: facts.duplicates.get(id) ?? [],
    pendingNotices: facts.pending.get(id) ?? 0,
    candidateServiceIds: facts.candidates.get(id) ?? [],
    api: apiOf(env, row),
    apiOk: row.api_ok === null ? null : row.api_ok === 1,
  };
}

/** By server_id: publisher sessions indexed, notices pending, retired processes still heard from, candidates. */
export interface ServerFacts {
  sessions: Map<string, number>;
  pending: Map<string, number>;
  duplicates: Map<string, string[]>;
  candidates: Map<string, string[]>;
}
