/**
 * One SRS server as its registry shard stores it (table `servers`, one row per server_id, kept in
 * memory too), and where its SRS HTTP API is.
 */
import type { Env } from "../env";
import { apiBase } from "../srs/api";

export interface ServerRow extends Record<string, SqlStorageValue> {
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

/** The server's SRS API base URL (its override, else SRS_API_URL filled in), or null: not used. */
export function apiOf(env: Env, row: ServerRow): string | null {
  return apiBase(env, { serverId: row.server_id, deviceId: row.device_id, override: row.api_override });
}
