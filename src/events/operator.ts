import type { Env } from "../env";
import { streamObject } from "../object-access";
import { withRetry } from "../platform/retry";
import type { Role } from "../srs/hook";
import { eventsEnabled, newEvent, queueEvents, streamData, type WebhookEvent } from "./event";

/**
 * Events per keepEvents call: a call's arguments may not exceed 32 MiB
 * (https://developers.cloudflare.com/workers/runtime-apis/rpc/), and a bulk end of a stream's
 * sessions makes one event of about 280 bytes per session: all of 120,000 viewers in one call
 * were refused, and then queued from here, without an outbox. 1,000 is about 280 KB a call.
 */
export const KEEP_EVENTS_CHUNK = 1_000;

/** A session an operator ended (DELETE …/sessions) or had kicked (a rotated key, a deleted stream). */
export interface OperatorEnded {
  streamKey: string;
  role: Role;
  serverId: string;
  clientId: string;
}

/** One session.ended_by_operator event per session; `kicked`: SRS is asked to disconnect the client too. */
export function operatorEvents(sessions: OperatorEnded[], reason: string, kicked: boolean): WebhookEvent[] {
  const now = Date.now();
  return sessions.map((s) =>
    newEvent("session.ended_by_operator", { ...streamData(s.streamKey), role: s.role, server_id: s.serverId, client_id: s.clientId, reason, kicked }, now),
  );
}

/**
 * Reports sessions an operator ended: each stream's session.ended_by_operator events go to the
 * outbox of its object (src/events/outbox.ts), as its own stream.started/ended do. The object
 * stores them and queues them in the background, again from its alarm while the queue refuses
 * them, each with the webhook-id it was made with; the admin call waits for the store only. They
 * go KEEP_EVENTS_CHUNK at a time, one call after the other. Should a stream's object not be
 * reached (or have no outbox), its events not kept yet are queued from here instead. Returns the
 * ids of events neither stored nor queued (logged), for the admin answer to name.
 */
export async function reportOperatorEnded(env: Env, sessions: OperatorEnded[], reason: string, kicked: boolean): Promise<string[]> {
  if (!eventsEnabled(env) || sessions.length === 0) return [];
  const byStream = new Map<string, OperatorEnded[]>();
  // Appended in place: a copy per session was quadratic in a stream's sessions (120,000 ended at once).
  for (const s of sessions) {
    const ended = byStream.get(s.streamKey);
    if (ended) ended.push(s);
    else byStream.set(s.streamKey, [s]);
  }
  const lost = await Promise.all(
    [...byStream].map(async ([key, ended]) => {
      const events = operatorEvents(ended, reason, kicked);
      let kept = 0;
      try {
        for (; kept < events.length; kept += KEEP_EVENTS_CHUNK) {
          const chunk = events.slice(kept, kept + KEEP_EVENTS_CHUNK);
          // A repeated call stores nothing twice: the outbox keeps one row per webhook-id.
          if (!(await withRetry(() => streamObject(env, key), (s) => s.keepEvents(chunk)))) break;
        }
      } catch (err) {
        console.error(JSON.stringify({ error: "events not stored in the stream's outbox, queued directly", stream: key, ids: events.slice(kept).map((e) => e.id), detail: String(err) }));
      }
      // Those not kept (the object unreached, or without an outbox: a stream never created there) are queued from here.
      const rest = events.slice(kept);
      return queueEvents(env, rest);
    }),
  );
  return lost.flat();
}

/** What an admin answer adds about reportOperatorEnded's outcome: the ids of events lost, only when some are. */
export function notQueued(ids: string[]): { eventsNotQueued?: string[] } {
  return ids.length > 0 ? { eventsNotQueued: ids } : {};
}
