/**
 * Kicks: disconnecting clients through their SRS server's HTTP API
 * (`DELETE /api/v1/clients/{id}`, src/srs/api.ts) when an operator revokes
 * what they were admitted with: a rotated key kicks the stream's publisher,
 * a deleted stream its publisher and viewers, sessions ended through the
 * admin API those clients.
 *
 * The admin call answers at once with what it will kick; the kicks wait in
 * an outbox in the registry shard of each client's server, whose alarm runs
 * them at once (so well within 5 s) and, while the server's API cannot be
 * reached, again with backoff (1 s, doubling to 30 s) for KICK_RETRY_MS.
 * Each outcome goes to the stream's decision log: "kicked", "already gone",
 * "kick failed: edge unreachable" (or what an edge that answered said). SRS then sends on_unpublish / on_stop for
 * a kicked client, which ends its session as usual. Off unless SRS_API_URL is set.
 */
import type { Env } from "../env";
import { serverRegistry } from "../object-access";
import { withRetry } from "../platform/retry";
import type { Role } from "./hook";

/** How long a kick is retried while its server's API cannot be reached. */
export const KICK_RETRY_MS = 5 * 60_000;
export const KICK_BACKOFF_FIRST_MS = 1_000;
export const KICK_BACKOFF_MAX_MS = 30_000;

/** One client to kick. */
export interface Kick {
  streamKey: string;
  role: Role;
  serverId: string;
  serviceId: string;
  clientId: string;
  /** Why, for the decision log ("key rotated", "stream deleted", "ended by operator"). */
  why: string;
  /** Milliseconds before the first attempt (0 when absent): SRS may not have the client yet. */
  delayMs?: number;
  /**
   * How long it is retried while its edge cannot be reached (KICK_RETRY_MS when absent): a session a viewer's
   * newer one ended (maxSessionsPerViewer) is retried as long as its server's sessions may come back
   * (SESSION_GRACE_S), or the viewer would play uncounted on both when a long-silent edge returns.
   */
  retryForMs?: number;
  /**
   * The kick of a client streamgate refused (src/srs/routes.ts kickRefused): dropped if the client
   * id has been admitted on its server since, on any stream (SRS forgot the refused session and the
   * player came back with its id), run after every operator's kick, never in place of one, and at most
   * REFUSED_KICKS_MAX of them wait per registry shard.
   */
  unlessAdmitted?: boolean;
}

/** Kicks of refused clients waiting in one registry shard, at most: a flood of refused hooks cannot grow the outbox further. */
export const REFUSED_KICKS_MAX = 1_000;

/** What an admin call reports it will kick. */
export interface KickPlanned {
  role: Role;
  serverId: string;
  clientId: string;
}

/**
 * Queues the kicks in their servers' registry shards (each shard's alarm runs
 * them at once). Returns what was queued; nothing when SRS_API_URL is unset.
 * A shard that cannot be reached is logged and its kicks left out.
 */
export async function queueKicks(env: Env, kicks: Kick[]): Promise<KickPlanned[]> {
  if (!env.SRS_API_URL || kicks.length === 0) return [];
  const byServer = new Map<string, Kick[]>();
  for (const k of kicks) byServer.set(k.serverId, [...(byServer.get(k.serverId) ?? []), k]);
  const queued = await Promise.all(
    [...byServer].map(async ([serverId, of]) => {
      try {
        // Retried on a retryable platform error (src/platform/retry.ts): queueing the same kick twice queues it once.
        await withRetry(() => serverRegistry(env, serverId), (r) => r.queueKicks(of));
        return of;
      } catch (err) {
        console.error(JSON.stringify({ error: "kicks not queued: registry unreachable", server: serverId, detail: String(err) }));
        return [];
      }
    }),
  );
  return queued.flat().map((k) => ({ role: k.role, serverId: k.serverId, clientId: k.clientId }));
}
