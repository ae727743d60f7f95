import type { Env } from "../env";
import { streamObject } from "../object-access";
import { withRetry } from "../platform/retry";
import type { Role } from "../srs/hook";
import { eventsEnabled, newEvent, queueEvents, streamData, type WebhookEvent } from "./event";

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
 * them, each with the webhook-id it was made with; the admin call waits for the store only.
 * Should a stream's object not be reached, its events are queued from here instead. Returns the
 * ids of events neither stored nor queued (logged), for the admin answer to name.
 */
export async function reportOperatorEnded(env: Env, sessions: OperatorEnded[], reason: string, kicked: boolean): Promise<string[]> {
  if (!eventsEnabled(env) || sessions.length === 0) return [];
  const byStream = new Map<string, OperatorEnded[]>();
  for (const s of sessions) byStream.set(s.streamKey, [...(byStream.get(s.streamKey) ?? []), s]);
  const lost = await Promise.all(
    [...byStream].map(async ([key, ended]) => {
      const events = operatorEvents(ended, reason, kicked);
      try {
        // A repeated call stores nothing twice: the outbox keeps one row per webhook-id.
        if (await withRetry(() => streamObject(env, key), (s) => s.keepEvents(events))) return [];
      } catch (err) {
        console.error(JSON.stringify({ error: "events not stored in the stream's outbox, queued directly", stream: key, ids: events.map((e) => e.id), detail: String(err) }));
      }
      return (await queueEvents(env, events)) ? [] : events.map((e) => e.id);
    }),
  );
  return lost.flat();
}

/** What an admin answer adds about reportOperatorEnded's outcome: the ids of events lost, only when some are. */
export function notQueued(ids: string[]): { eventsNotQueued?: string[] } {
  return ids.length > 0 ? { eventsNotQueued: ids } : {};
}
