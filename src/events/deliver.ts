/**
 * The queue consumer (queue() in src/index.ts): POSTs each event to EVENTS_WEBHOOK_URL.
 *
 * A delivery the receiver answers with 2xx is done (acked). Anything else (an error status, a
 * redirect (never followed), no answer within DELIVERY_TIMEOUT_MS, a missing or unusable secret) is
 * retried by the queue after retryDelayS(attempts): 30 s, doubling to 15 min, up to max_retries
 * (wrangler.toml: 20, about 4 hours); then the message goes to the dead-letter queue. Each attempt
 * carries the event's own `webhook-id` and body; `webhook-timestamp` is the attempt's time (and the
 * signature is made again with it), so that receivers checking the timestamp's age (the reference
 * libraries allow 5 minutes) accept a delivery retried hours after the event. The event's own time
 * is the body's `timestamp`.
 */
import type { Env } from "../env";
import { eventBody, eventsEnabled, type WebhookEvent } from "./event";
import { signDelivery, signingKey } from "./sign";

/**
 * The specification recommends 15 to 30 s. A batch (max_batch_size 6 in wrangler.toml: Workers keeps
 * at most 6 connections waiting for answers per invocation, and a fetch queued behind them would spend
 * its timeout waiting) takes at most about 15 s, far within a consumer's 15 minutes.
 */
export const DELIVERY_TIMEOUT_MS = 15_000;
const FIRST_RETRY_S = 30;
const MAX_RETRY_S = 900;

/** Seconds before the next attempt, after `attempts` failed ones (1, 2, ...). */
export function retryDelayS(attempts: number): number {
  return Math.min(MAX_RETRY_S, FIRST_RETRY_S * 2 ** Math.max(0, attempts - 1));
}

export async function deliverEvents(batch: MessageBatch<WebhookEvent>, env: Env): Promise<void> {
  if (!eventsEnabled(env)) {
    // Events were switched off after these were queued: nobody to deliver them to.
    batch.ackAll();
    return;
  }
  let keys: Uint8Array[] | null = null;
  try {
    keys = signingKeys(env);
  } catch (err) {
    console.error(JSON.stringify({ error: "events not delivered", detail: err instanceof Error ? err.message : String(err) }));
  }
  await Promise.all(
    batch.messages.map(async (message) => {
      // Each message on its own: one that cannot even be read (malformed) is retried with its delay, not the whole batch at once.
      let outcome: string;
      try {
        outcome = keys ? await deliver(env.EVENTS_WEBHOOK_URL!, keys, message.body) : "EVENTS_WEBHOOK_SECRET is not set or unusable";
      } catch (err) {
        outcome = `not sent: ${err instanceof Error ? err.message : String(err)}`;
      }
      if (outcome === "delivered") return message.ack();
      console.error(JSON.stringify({ error: "event not delivered", id: message.body?.id, type: message.body?.type, attempt: message.attempts, detail: outcome }));
      message.retry({ delaySeconds: retryDelayS(message.attempts) });
    }),
  );
}

/**
 * The keys each delivery is signed with: EVENTS_WEBHOOK_SECRET's, and during a rotation
 * EVENTS_WEBHOOK_SECRET_PREVIOUS's too (the specification's space-separated signatures: a receiver
 * that still has the old secret verifies the second). Either unusable: throws, naming it.
 */
export function signingKeys(env: Env): Uint8Array[] {
  const current = signingKey(env.EVENTS_WEBHOOK_SECRET ?? "");
  if (!env.EVENTS_WEBHOOK_SECRET_PREVIOUS) return [current];
  return [current, signingKey(env.EVENTS_WEBHOOK_SECRET_PREVIOUS, "EVENTS_WEBHOOK_SECRET_PREVIOUS")];
}

/** One attempt: "delivered", or what went wrong (never the URL: it may carry a credential). */
async function deliver(url: string, keys: Uint8Array[], event: WebhookEvent): Promise<string> {
  const body = eventBody(event);
  const timestamp = Math.floor(Date.now() / 1000);
  try {
    const res = await fetch(url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "user-agent": "streamgate",
        "webhook-id": event.id,
        "webhook-timestamp": String(timestamp),
        "webhook-signature": (await Promise.all(keys.map((key) => signDelivery(key, event.id, timestamp, body)))).join(" "),
      },
      body,
      // A redirect is not a delivery: followed, a 301/302/303 turns the POST into a GET without the body, whose 2xx
      // (a login page, a moved site) would ack an event the receiver never got. It is retried, and logged with its status.
      redirect: "manual",
      signal: AbortSignal.timeout(DELIVERY_TIMEOUT_MS),
    });
    await res.body?.cancel();
    return res.ok ? "delivered" : `receiver answered ${res.status}`;
  } catch (err) {
    return `receiver unreachable: ${err instanceof Error ? err.name : "error"}`;
  }
}
