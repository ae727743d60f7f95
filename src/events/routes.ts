import type { IRequest } from "itty-router";
import type { Env } from "../env";
import { jsonResponse } from "../http";
import { eventsEnabled, newEvent, queueEvents } from "./event";

/**
 * POST /admin/events/test: queues a `webhook.test` event, so an operator can check the receiver.
 * The answer says whether events are configured and the event's id (its `webhook-id`), which
 * the receiver should then see.
 */
export async function sendTestEvent(_request: IRequest, env: Env): Promise<Response> {
  if (!eventsEnabled(env)) return jsonResponse({ configured: false, error: "EVENTS_WEBHOOK_URL is not set: no events are sent" }, 409);
  const event = newEvent("webhook.test", { message: "a test event from streamgate's console or admin API" });
  const queued = await queueEvents(env, [event]);
  if (!queued) return jsonResponse({ configured: true, id: event.id, error: "the events queue refused the event; try again" }, 503);
  return jsonResponse({ configured: true, id: event.id, type: event.type }, 202);
}
