import { jsonResponse } from "../http";
import type { Denial } from "../stream/rules";

/**
 * How SRS reads our answer (SrsHttpHooks::do_post in SRS's trunk/src/app/srs_app_http_hooks.cpp): only HTTP 200/201 with a body
 * of exactly `0` or an object whose `code` is the integer 0 counts as allow.
 * Anything else denies, so a deny uses a non-2xx status and a non-zero code.
 */
export function allow(): Response {
  return jsonResponse({ code: 0 });
}

export function deny(denial: Denial): Response {
  // A refusal for the gate's own misconfiguration is its error (500, as for other settings), not the client's.
  return jsonResponse({ code: denial.code, reason: denial.reason }, denial.misconfigured ? 500 : 403);
}

/** on_forward must carry data.urls (strings only) or SRS rejects the publish. */
export function noForward(): Response {
  return jsonResponse({ code: 0, data: { urls: [] } });
}
