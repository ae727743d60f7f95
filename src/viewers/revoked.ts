/**
 * Ends the live viewer sessions that revocations of play tokens cover, on
 * the viewer shards named: on each shard, then kicked on their edges (with
 * SRS_API_URL) and reported as session.ended_by_operator. Used by the admin
 * call that revokes (every shard of the stream), and by the stream's object
 * when a push reaches a shard that missed the revocation (src/stream/shard-policy.ts),
 * which keeps the events in its own outbox (`keep`) rather than calling itself.
 */
import type { Env } from "../env";
import type { WebhookEvent } from "../events/event";
import { operatorEvents, reportOperatorEnded } from "../events/operator";
import { viewerShard } from "../object-access";
import { withRetry } from "../platform/retry";
import { queueKicks, type KickPlanned } from "../srs/kicks";
import type { Revocation } from "./lease";
import type { EndedViewer } from "./shard";

export interface RevokedEnded {
  ended: (EndedViewer & { serverId: string })[];
  kicking: KickPlanned[];
  /** Shards that could not be reached (logged): their covered sessions still run. */
  unreached: string[];
  /** session.ended_by_operator events neither stored in the stream's outbox nor queued (logged). */
  eventsNotQueued: string[];
}

export async function endRevokedSessions(env: Env, key: string, servers: string[], revocations: Pick<Revocation, "sub" | "before">[], keep?: (events: WebhookEvent[]) => void): Promise<RevokedEnded> {
  const unreached: string[] = [];
  const callId = crypto.randomUUID();
  const ended = (
    await Promise.all(
      servers.map(async (serverId) => {
        // What a shard ended for the revocations before one that failed stays ended: it is reported and kicked.
        const here: EndedViewer[] = [];
        try {
          // One call id per revocation, the same for its retries (src/platform/kept-answers.ts).
          for (const [i, r] of revocations.entries()) {
            here.push(...(await withRetry(() => viewerShard(env, serverId), (shard) => shard.endRevoked(key, r.sub, r.before, `${callId}:${i}`))));
          }
        } catch (err) {
          unreached.push(serverId);
          console.error(JSON.stringify({ error: "revoked sessions not ended: viewer shard unreachable", server: serverId, stream: key, detail: String(err) }));
        }
        return here.map((v) => ({ ...v, serverId }));
      }),
    )
  ).flat();
  const kicking = await queueKicks(env, ended.map((v) => ({ ...v, role: "viewer" as const, why: "token revoked" })));
  const sessions = ended.map((v) => ({ ...v, role: "viewer" as const }));
  let eventsNotQueued: string[] = [];
  if (keep) keep(operatorEvents(sessions, "token revoked", kicking.length > 0));
  else eventsNotQueued = await reportOperatorEnded(env, sessions, "token revoked", kicking.length > 0);
  return { ended, kicking, unreached, eventsNotQueued };
}
