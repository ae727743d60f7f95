/**
 * SRS's own HTTP API (`http_api`), as streamgate uses it: is a client still
 * there, and kick it. The shapes are those of SRS 7's source
 * (trunk/src/app/srs_app_http_api.cpp, SrsGoApiClients):
 * - every answer is HTTP 200, also "not found": errors are `{"code": N}`, a
 *   success is `{"code": 0, "server": <server_id>, "service": <service_id>, "pid", ...}`;
 * - `GET /api/v1/clients/{id}`: `{"code":0,...,"client":{...}}`, or `{"code":2049}`
 *   (ERROR_RTMP_CLIENT_NOT_FOUND) when the client is gone;
 * - `DELETE /api/v1/clients/{id}`: kicks it (its connection is interrupted;
 *   SRS then sends on_unpublish / on_stop): `{"code":0,...}`, or 2049;
 * - with `http_api { auth { enabled on; username …; password …; } }`, a
 *   missing or wrong basic-auth header is HTTP 401 with an empty body.
 * The id is the `client_id` of the hooks (the connection's context id; for
 * HLS the `hls_ctx` session). Client ids are unique per SRS process only, so
 * every answer's `server` and `service` are checked against the process the
 * session belongs to: another service_id under the same server_id means the
 * process is gone (a restart), and with it all its clients.
 */
import type { Env } from "../env";

/** What a server's API said about a client. */
export type ClientPresence = "present" | "gone" | "unknown";

/** What a kick did. */
export type KickOutcome = "kicked" | "gone" | "failed";

/** SRS's ERROR_RTMP_CLIENT_NOT_FOUND (srs_kernel_error.hpp). */
const CLIENT_NOT_FOUND = 2049;

/** Each API call waits at most this long. */
export const API_TIMEOUT_MS = 2_000;

/** The process whose client is asked about, and where its server's API is. */
export interface ApiTarget {
  /** The API base URL, e.g. https://edge-eu-1.edges.example.com:1985 (no trailing slash). */
  base: string;
  serverId: string;
  serviceId: string;
}

/** Where a server's API is: the operator's override, else SRS_API_URL with its placeholders filled, else nowhere. */
export function apiBase(env: Env, server: { serverId: string; deviceId: string; override: string | null }): string | null {
  if (server.override) return server.override;
  const template = env.SRS_API_URL;
  if (!template) return null;
  // A template that needs a device_id the server never sent (no heartbeat yet) has no answer.
  if (template.includes("{device_id}") && !server.deviceId) return null;
  const url = template
    .replaceAll("{device_id}", encodeURIComponent(server.deviceId))
    .replaceAll("{server_id}", encodeURIComponent(server.serverId));
  return url.replace(/\/+$/, "");
}

/**
 * An API base URL as an operator may set it (PUT /admin/servers/{id} or
 * SRS_API_URL once filled in): http or https, a host, no credentials, query
 * or fragment. Returns the URL without a trailing slash, or a problem.
 */
export function checkApiBase(raw: string): { base: string } | { problem: string } {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { problem: "not a URL" };
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return { problem: "must be http:// or https://" };
  if (url.username || url.password) return { problem: "must not carry credentials: use SRS_API_USERNAME / SRS_API_PASSWORD" };
  if (url.search || url.hash) return { problem: "must not have a query or fragment" };
  return { base: `${url.origin}${url.pathname}`.replace(/\/+$/, "") };
}

/** The basic-auth header SRS's http_api auth expects, when SRS_API_USERNAME is set. */
function headers(env: Env): Record<string, string> {
  if (!env.SRS_API_USERNAME) return {};
  return { authorization: `Basic ${btoa(`${env.SRS_API_USERNAME}:${env.SRS_API_PASSWORD ?? ""}`)}` };
}

/** One call; null when the server could not be reached, answered something else than SRS's JSON, or refused the credentials. */
async function call(env: Env, method: "GET" | "DELETE", target: ApiTarget, clientId: string): Promise<{ code: number; server?: unknown; service?: unknown } | null> {
  const url = `${target.base}/api/v1/clients/${encodeURIComponent(clientId)}`;
  try {
    const response = await fetch(url, { method, headers: headers(env), signal: AbortSignal.timeout(API_TIMEOUT_MS) });
    if (response.status !== 200) {
      logApi(target, method, `HTTP ${response.status}${response.status === 401 ? " (check SRS_API_USERNAME / SRS_API_PASSWORD)" : ""}`);
      return null;
    }
    const body = (await response.json()) as unknown;
    if (typeof body !== "object" || body === null || typeof (body as { code?: unknown }).code !== "number") {
      logApi(target, method, "not an SRS API answer");
      return null;
    }
    return body as { code: number; server?: unknown; service?: unknown };
  } catch (err) {
    logApi(target, method, String(err).slice(0, 200));
    return null;
  }
}

/**
 * Whether the server's API still has the client. "unknown" whenever the
 * answer cannot be trusted (unreachable, an error code other than "not
 * found", another server_id answering): then the session stands.
 */
export async function clientPresence(env: Env, target: ApiTarget, clientId: string): Promise<ClientPresence> {
  const body = await call(env, "GET", target, clientId);
  if (!body) return "unknown";
  if (body.code === CLIENT_NOT_FOUND) return "gone";
  if (body.code !== 0) return "unknown";
  return sameProcess(target, body);
}

/** Kicks the client on its server (DELETE /api/v1/clients/{id}). */
export async function kickClient(env: Env, target: ApiTarget, clientId: string): Promise<KickOutcome> {
  // First make sure the API answering is the session's process: a client id of a restarted process may name someone else.
  const presence = await clientPresence(env, target, clientId);
  if (presence === "gone") return "gone";
  if (presence === "unknown") return "failed";
  const body = await call(env, "DELETE", target, clientId);
  if (!body) return "failed";
  if (body.code === CLIENT_NOT_FOUND) return "gone";
  return body.code === 0 ? "kicked" : "failed";
}

function sameProcess(target: ApiTarget, body: { server?: unknown; service?: unknown }): ClientPresence {
  if (body.server !== target.serverId) {
    logApi(target, "GET", `answered as server ${String(body.server)}: the API URL points at another server`);
    return "unknown";
  }
  // The server runs another process now: the session's process, and all its clients, are gone.
  return body.service === target.serviceId ? "present" : "gone";
}

/** The base URL only: it carries no secret, the hook secret and keys are never part of an API call. */
function logApi(target: ApiTarget, method: string, problem: string): void {
  console.error(JSON.stringify({ error: "SRS API call failed", server: target.serverId, api: target.base, method, detail: problem }));
}
