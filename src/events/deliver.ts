/**
 * The queue consumer (queue() in src/index.ts): POSTs each event to EVENTS_WEBHOOK_URL.
 *
 * A delivery the receiver answers with 2xx is done (acked). Anything else (an error status, a
 * redirect (never followed), no answer within DELIVERY_TIMEOUT_MS, a missing or unusable secret) is
 * retried by the queue after retryDelayS(attempts): 30 s, doubling to 15 min (longer if a 429 or 503
 * asked for it with Retry-After, up to an hour), up to max_retries
 * (wrangler.toml: 20, about 4 hours); then the message goes to the dead-letter queue. Each attempt
 * carries the event's own `webhook-id` and body; `webhook-timestamp` is the attempt's time (and the
 * signature is made again with it), so that receivers checking the timestamp's age (the reference
 * libraries allow 5 minutes) accept a delivery retried hours after the event. The event's own time
 * is the body's `timestamp`.
 */
import { StatusError } from "itty-router";
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

/**
 * The longest wait a Retry-After gets: a message lives in the queue for its retention period (4 days by
 * default, 24 hours on the Workers Free plan) and is deleted past it, not dead-lettered; an hour per retry
 * keeps all 20 retries (max_retries) within the shortest retention, so a receiver that keeps asking for
 * longer gets its events in the dead-letter queue, not lost. (A queue could delay one for 12 hours.)
 */
const RETRY_AFTER_MAX_S = 3_600;

/**
 * Seconds before the next attempt, after `attempts` failed ones (1, 2, ...): the backoff, or longer when
 * the receiver asked for it (Retry-After on a 429 or 503), up to RETRY_AFTER_MAX_S.
 */
export function retryDelayS(attempts: number, askedS: number | null = null): number {
  const backoff = Math.min(MAX_RETRY_S, FIRST_RETRY_S * 2 ** Math.max(0, attempts - 1));
  return askedS === null ? backoff : Math.max(backoff, Math.min(RETRY_AFTER_MAX_S, askedS));
}

/** RFC 9110's preferred HTTP date (IMF-fixdate), the only date form read: anything looser is ignored. */
const IMF_FIXDATE = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$/;

/**
 * A Retry-After header's wait in seconds (RFC 9110: delay-seconds or an HTTP date), on the statuses
 * that give it that meaning here: 429 Too Many Requests and 503 Service Unavailable. Null otherwise
 * (the backoff applies). The same delay-seconds sent twice (a proxy repeating the header) is read once.
 */
function retryAfterS(res: Response): number | null {
  if (res.status !== 429 && res.status !== 503) return null;
  const value = res.headers.get("retry-after")?.trim() ?? "";
  const seconds = /^([0-9]{1,10})(\s*,\s*\1)*$/.exec(value);
  if (seconds) return Number(seconds[1]);
  if (!IMF_FIXDATE.test(value)) return null;
  return Math.max(0, Math.ceil((Date.parse(value) - Date.now()) / 1000));
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
      let attempt: Attempt;
      try {
        attempt = keys ? await deliver(env.EVENTS_WEBHOOK_URL!, keys, message.body) : { outcome: "EVENTS_WEBHOOK_SECRET is not set or unusable" };
      } catch (err) {
        attempt = { outcome: `not sent: ${err instanceof Error ? err.message : String(err)}` };
      }
      if (attempt.outcome === "delivered") return message.ack();
      const delaySeconds = retryDelayS(message.attempts, attempt.retryAfterS ?? null);
      console.error(JSON.stringify({ error: "event not delivered", id: message.body?.id, type: message.body?.type, attempt: message.attempts, detail: attempt.outcome, retryInS: delaySeconds }));
      message.retry({ delaySeconds });
    }),
  );
}

/**
 * The keys each delivery is signed with: EVENTS_WEBHOOK_SECRET's, and during a rotation
 * EVENTS_WEBHOOK_SECRET_PREVIOUS's too (the specification's space-separated signatures: a receiver
 * that still has the old secret verifies the second). Either unusable: throws, naming it.
 */
export function signingKeys(env: Env): Uint8Array[] {
  if (!env.EVENTS_WEBHOOK_SECRET) throw new StatusError(500, "EVENTS_WEBHOOK_SECRET is not set");
  const current = signingKey(env.EVENTS_WEBHOOK_SECRET);
  if (!env.EVENTS_WEBHOOK_SECRET_PREVIOUS) return [current];
  return [current, signingKey(env.EVENTS_WEBHOOK_SECRET_PREVIOUS, "EVENTS_WEBHOOK_SECRET_PREVIOUS")];
}

/** One attempt's outcome: "delivered", or what went wrong (never the URL: it may carry a credential); the wait the receiver asked for. */
interface Attempt {
  outcome: string;
  retryAfterS?: number | null;
}

async function deliver(url: string, keys: Uint8Array[], event: WebhookEvent): Promise<Attempt> {
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
    return res.ok ? { outcome: "delivered" } : { outcome: `receiver answered ${res.status}`, retryAfterS: retryAfterS(res) };
  } catch (err) {
    return { outcome: `receiver unreachable: ${err instanceof Error ? err.name : "error"}` };
  }
}
