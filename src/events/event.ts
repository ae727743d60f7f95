/**
 * Events: what streamgate tells an operator's backend (EVENTS_WEBHOOK_URL) about its streams,
 * delivered per the Standard Webhooks specification (standardwebhooks.com; signing in sign.ts,
 * delivery in deliver.ts). An event is made once, where it happens, with its id and time: both
 * travel in the queue message, so every retry of a delivery carries the same `webhook-id` and the
 * same body, and a receiver that keeps the ids it has seen processes each event exactly once.
 */
import type { Env } from "../env";
import { parseStreamKey } from "../stream/name";

export type EventType = "stream.started" | "stream.ended" | "stream.viewer_limit_reached" | "session.ended_by_operator" | "webhook.test";

/** A queue message: the event as it will be delivered, with its webhook-id. */
export interface WebhookEvent {
  /** The `webhook-id` header: "msg_" + 32 hex digits, chosen once, when the event is made. */
  id: string;
  type: EventType;
  /** When it happened (ISO 8601, milliseconds): the body's `timestamp`. */
  timestamp: string;
  data: Record<string, unknown>;
}

/** Whether events are on: only with EVENTS_WEBHOOK_URL set is anything made or queued. */
export function eventsEnabled(env: Env): boolean {
  return typeof env.EVENTS_WEBHOOK_URL === "string" && env.EVENTS_WEBHOOK_URL !== "";
}

export function newEvent(type: EventType, data: Record<string, unknown>, at = Date.now()): WebhookEvent {
  return { id: `msg_${crypto.randomUUID().replaceAll("-", "")}`, type, timestamp: new Date(at).toISOString(), data };
}

/** The body every delivery of the event carries, byte for byte. */
export function eventBody(event: WebhookEvent): string {
  return JSON.stringify({ type: event.type, timestamp: event.timestamp, data: event.data });
}

/** vhost, app and stream of a stream key, as event data names them. */
export function streamData(streamKey: string): { vhost: string; app: string; stream: string } {
  const { vhost, app, stream } = parseStreamKey(streamKey);
  return { vhost, app, stream };
}

/**
 * Queues events from the Worker, once, without an outbox: the test event (whose admin answer says
 * when the queue refused it), and operator events whose stream object could not keep them
 * (src/events/operator.ts). Returns the ids of those the queue refused (logged): the batches from
 * the one it refused on (those before it are queued). Nothing is queued while events are off.
 */
export async function queueEvents(env: Env, events: WebhookEvent[]): Promise<string[]> {
  if (!eventsEnabled(env) || events.length === 0) return [];
  let sent = 0;
  try {
    for (; sent < events.length; sent += QUEUE_BATCH) {
      await env.EVENTS.sendBatch(events.slice(sent, sent + QUEUE_BATCH).map((body) => ({ body })));
    }
    return [];
  } catch (err) {
    const refused = events.slice(sent).map((e) => e.id);
    console.error(JSON.stringify({ error: "events not queued", ids: refused, detail: String(err) }));
    return refused;
  }
}

/** Messages per sendBatch call (the platform's limit is 100). */
export const QUEUE_BATCH = 100;
