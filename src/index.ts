import { AutoRouter, StatusError } from "itty-router";
import {
  deleteStream,
  getStream,
  getLoad,
  getStreamEvents,
  listServers,
  listStreams,
  mintAppToken,
  mintToken,
  putStream,
  requireAdmin,
} from "./admin/routes";
import { endServerSessions, endStreamSessions } from "./admin/sessions";
import { putServer } from "./admin/servers";
import { listRevocations, listViewers, postRevocation } from "./admin/viewers";
import type { Env } from "./env";
import { jsonResponse } from "./http";
import { ObjectCallFailed } from "./platform/retry";
import { handleHeartbeat, handleHook } from "./srs/routes";
import { deliverEvents } from "./events/deliver";
import { sendTestEvent } from "./events/routes";
import { clearDeadLetters, isDeadLetterQueue, keepDeadLetters, listDeadLetters, replayDeadLetters } from "./events/dead-letters";
import { getFleetUsage, getStreamUsage } from "./usage/routes";
import type { WebhookEvent } from "./events/event";

export { StreamObject } from "./stream/object";
export { ServerRegistry } from "./server/registry";
export { ViewerShard } from "./viewers/shard";
export { ViewerSeats } from "./viewers/seats";
export { DeadLetters } from "./events/dead-letters";

type Args = [Env, ExecutionContext];

const router = AutoRouter<any, Args>({
  catch: toErrorResponse,
  missing: () => jsonResponse({ error: "not found" }, 404),
  finally: [stampDate],
});

router
  // The contract SRS operators configure: keep these two paths exactly.
  .post("/hooks/srs/:secret", handleHook)
  .post("/hooks/srs/:secret/heartbeat", handleHeartbeat)

  .all("/admin/*", requireAdmin)
  .get("/admin/streams", listStreams)
  .put("/admin/streams/:app/:stream", putStream)
  .get("/admin/streams/:app/:stream", getStream)
  .delete("/admin/streams/:app/:stream", deleteStream)
  .get("/admin/streams/:app/:stream/events", getStreamEvents)
  .get("/admin/streams/:app/:stream/usage", getStreamUsage)
  .delete("/admin/streams/:app/:stream/sessions", endStreamSessions)
  .post("/admin/streams/:app/:stream/tokens", mintToken)
  .post("/admin/apps/:app/tokens", mintAppToken)
  .post("/admin/streams/:app/:stream/revocations", postRevocation)
  .get("/admin/streams/:app/:stream/revocations", listRevocations)
  .get("/admin/streams/:app/:stream/viewers", listViewers)
  .get("/admin/servers", listServers)
  .put("/admin/servers/:server_id", putServer)
  .get("/admin/load", getLoad)
  .delete("/admin/servers/:server_id/sessions", endServerSessions)
  .get("/admin/usage", getFleetUsage)
  .post("/admin/events/test", sendTestEvent)
  .get("/admin/events/dead-letters", listDeadLetters)
  .post("/admin/events/dead-letters/replay", replayDeadLetters)
  .delete("/admin/events/dead-letters", clearDeadLetters);

export default {
  fetch: (request: Request, env: Env, ctx: ExecutionContext) => router.fetch(request, env, ctx),
  // The events queue's consumer: deliveries to EVENTS_WEBHOOK_URL (src/events/deliver.ts); and its
  // dead-letter queue's: events given up on, kept for a replay (src/events/dead-letters.ts).
  queue: (batch: MessageBatch<WebhookEvent>, env: Env) => (isDeadLetterQueue(batch.queue) ? keepDeadLetters(batch, env) : deliverEvents(batch, env)),
};

/** An admin API URL (hooks are /hooks/srs/…). */
const ADMIN_URL = /^[a-z]+:\/\/[^/]+\/admin\//;

/**
 * Admin responses carry the gate's clock in `Date` (as HTTP says; Cloudflare's edge sets it too, local
 * workerd does not): the console reckons "now" from it, not from the browser's clock, when it revokes
 * every token issued before now or says how long ago a server was heard from.
 */
function stampDate(response: Response, request: Request): Response {
  // A pattern, not new URL(): this runs after every hook too.
  if (response instanceof Response && ADMIN_URL.test(request.url) && !response.headers.has("date")) {
    try {
      response.headers.set("date", new Date().toUTCString());
    } catch {
      // A response with immutable headers (none of ours): answered as it is, the console falls back to its own clock.
    }
  }
  return response;
}

/**
 * The one place failures become responses. Hooks answer in SRS's shape
 * (`code` non-zero, `reason` for the operator reading SRS logs); the admin
 * API answers `{"error": ...}`. Unexpected errors are 500 and logged.
 */
function toErrorResponse(err: unknown, request: Request): Response {
  const status = err instanceof StatusError ? err.status : 500;
  const message = err instanceof StatusError ? err.message : "internal error";
  const url = new URL(request.url).pathname.replace(/^\/hooks\/srs\/[^/]+/, "/hooks/srs/***");
  if (err instanceof ObjectCallFailed) {
    // A hook whose object call failed (src/platform/retry.ts): the decision line it could not get, with the error's class.
    // The stream's own decision log is not written: its object may be the one that could not be reached.
    console.error(JSON.stringify({ ...err.fields, decision: "error", reason: message, error: err.errorClass, detail: err.detail, url }));
  } else if (!(err instanceof StatusError)) console.error(JSON.stringify({ error: String(err), url }));
  const headers = status === 401 ? { "www-authenticate": 'Bearer realm="streamgate"' } : undefined;
  if (new URL(request.url).pathname.startsWith("/hooks/")) {
    return jsonResponse({ code: status, reason: message }, status, headers);
  }
  return jsonResponse({ error: message }, status, headers);
}
