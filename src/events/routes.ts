import type { IRequest } from "itty-router";
import type { Env } from "../env";
import { jsonResponse } from "../http";
import { eventsEnabled, newEvent, queueEvents } from "./event";
import { signingKeys } from "./deliver";

/**
 * POST /admin/events/test: queues a `webhook.test` event, so an operator can check the receiver.
 * The answer says whether events are configured and the event's id (its `webhook-id`), which
 * the receiver should then see. Settings with which no delivery can ever work (a URL that is not
 * http(s), a missing or unusable secret) are named instead (409), rather than a 202 for an event
 * that would wait in the queue until its dead-letter queue.
 */
export async function sendTestEvent(_request: IRequest, env: Env): Promise<Response> {
  if (!eventsEnabled(env)) return jsonResponse({ configured: false, error: "EVENTS_WEBHOOK_URL is not set: no events are sent" }, 409);
  const problem = configurationProblem(env);
  if (problem) return jsonResponse({ configured: false, error: problem }, 409);
  const event = newEvent("webhook.test", { message: "a test event from streamgate's console or admin API" });
  const refused = await queueEvents(env, [event]);
  if (refused.length > 0) return jsonResponse({ configured: true, id: event.id, error: "the events queue refused the event; try again" }, 503);
  return jsonResponse({ configured: true, id: event.id, type: event.type }, 202);
}

/** Why deliveries cannot work with these settings (never naming the URL's or the secret's value), or null. */
export function configurationProblem(env: Env): string | null {
  let url: URL | null = null;
  try {
    url = new URL(env.EVENTS_WEBHOOK_URL ?? "");
  } catch {}
  if (url === null || (url.protocol !== "https:" && url.protocol !== "http:")) return "EVENTS_WEBHOOK_URL is not an http(s) URL";
  try {
    signingKeys(env);
  } catch (err) {
    return err instanceof Error ? err.message : "EVENTS_WEBHOOK_SECRET is unusable";
  }
  return null;
}
