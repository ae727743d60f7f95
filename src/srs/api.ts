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
import { Slots, type WorkKind } from "../platform/slots";

/** What a server's API said about a client. */
export type ClientPresence = "present" | "gone" | "unknown";

/** What a kick did ("unaddressable": an id no URL of SRS's API can name, see clientPath: an HLS player's odd hls_ctx, or a forged hook). */
export type KickOutcome = "kicked" | "gone" | "failed" | "unaddressable";

/** SRS's ERROR_RTMP_CLIENT_NOT_FOUND (srs_kernel_error.hpp). */
const CLIENT_NOT_FOUND = 2049;

/** Each API call waits at most this long, from when it is sent (not from its wait for a place: API_CALLS_IN_FLIGHT). */
export const API_TIMEOUT_MS = 2_000;

/**
 * API calls in flight at once from one object, to all servers together. Workers keeps at most 6
 * connections open at a time per invocation (a fetch is one, as is a queue send or a KV call) and
 * holds any more, unsent, until one closes
 * (https://developers.cloudflare.com/workers/platform/limits/, "Simultaneous open connections"):
 * a call held behind 6 that hang (edges whose packets are dropped) would spend its API_TIMEOUT_MS
 * there and fail as "edge unreachable", a healthy edge taken for a dead one. So an object's calls
 * wait for a place here instead, in order, and each call's time starts once it is sent; the sixth
 * connection is left for the object's other work.
 */
export const API_CALLS_IN_FLIGHT = 5;

/**
 * Of those, at most this many to APIs that have stopped answering (their last call unreachable or timed out,
 * UNANSWERED_MS ago at most), and those go after the others: calls to edges that hang never hold every place,
 * so a kick to a healthy edge is not held behind a shard's hanging edges for 2 s per 5 of their calls.
 */
export const API_CALLS_TO_SILENT_APIS = API_CALLS_IN_FLIGHT - 1;

/** One object's places for its API calls: the object makes one and passes it to each call (apiCalls of every call below). */
export const apiCallSlots = () => new Slots(API_CALLS_IN_FLIGHT, API_CALLS_TO_SILENT_APIS);

/** API base URLs whose last call got no answer at all (unreachable, its 2 s out) → until when that counts (isolate-wide). */
const unanswered = new Map<string, number>();
const UNANSWERED_MS = 60_000;
const silentApi = (base: string) => (unanswered.get(base) ?? 0) > Date.now();
/** A call's turn among the object's others: calls to one API share turns, and those to an API that stopped answering go last. */
const callKind = (target: ApiTarget): WorkKind => ({ key: target.base, low: () => silentApi(target.base) });

/** When a call may be sent, and how long its answer is waited for. */
export interface CallTimes {
  /** Never waited for past this (the time a hook has left): a call with no time left is not made (TOO_SLOW). */
  until?: number;
  /** Not sent after this (default: `until`): a call still waiting for its place then is not made (NOT_ASKED). */
  sendBy?: number;
}

/** The process whose client is asked about, and where its server's API is. */
export interface ApiTarget {
  /** The API base URL, e.g. https://edge-eu-1.edges.example.com:1985 (no trailing slash). */
  base: string;
  serverId: string;
  serviceId: string;
  /**
   * Service ids of the same server known to be EARLIER processes than the session's (the registry's word:
   * those it retired before it, and its current one when the session's is a candidate). An answer of one of
   * those says the address still reaches an older process (a rolling restart whose old pod still answers at
   * the edge's host name): not that the session's process is gone.
   */
  earlier?: string[];
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
 * The part of SRS_API_URL's host after its last placeholder
 * ("https://{device_id}.edges.example.com:1985" → ".edges.example.com"), or
 * "" when the whole host is a placeholder: a per-server override must lie
 * under it, so the SRS API credentials never go to a host outside the
 * operator's edge domain, whoever holds the admin token.
 */
export function overrideSuffix(template: string | undefined): string | null {
  if (!template) return null;
  const host = templateHost(template);
  const ends = ["{device_id}", "{server_id}"].map((p) => (host.includes(p) ? host.lastIndexOf(p) + p.length : -1));
  const last = Math.max(...ends);
  return last < 0 ? host : host.slice(last);
}

/** The host of SRS_API_URL, placeholders and all, lower case. */
function templateHost(template: string): string {
  return template.replace(/^[a-z]+:\/\//i, "").split(/[/:]/)[0].toLowerCase();
}

/**
 * Whether `hostname` lies under SRS_API_URL's host: after a placeholder, any host ending with the
 * rest (the placeholder could be filled with anything); a host without placeholders, that host or
 * one below it, label by label ("evilexample.com" is not under "example.com").
 */
function hostUnder(hostname: string, suffix: string, template: string): boolean {
  if (/\{(device|server)_id\}/.test(templateHost(template))) return hostname.endsWith(suffix);
  return hostname === suffix || hostname.endsWith(`.${suffix}`);
}

/**
 * An API base URL as an operator may set it (PUT /admin/servers/{id}):
 * http or https, a host under SRS_API_URL's (see overrideSuffix), no
 * credentials, query or fragment. Returns the URL without a trailing slash,
 * or a problem.
 */
export function checkApiBase(raw: string, template: string | undefined): { base: string } | { problem: string } {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { problem: "not a URL" };
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return { problem: "must be http:// or https://" };
  if (url.username || url.password) return { problem: "must not carry credentials: use SRS_API_USERNAME / SRS_API_PASSWORD" };
  if (url.search || url.hash) return { problem: "must not have a query or fragment" };
  const suffix = overrideSuffix(template);
  if (suffix === null) return { problem: "needs SRS_API_URL to be set (the overrides replace it per server)" };
  if (!hostUnder(url.hostname, suffix, template!)) return { problem: `must be a host under "${suffix}", as SRS_API_URL's (the SRS API credentials go only there)` };
  return { base: `${url.origin}${url.pathname}`.replace(/\/+$/, "") };
}

/** The basic-auth header SRS's http_api auth expects, when SRS_API_USERNAME is set. */
function headers(env: Env): Record<string, string> {
  if (!env.SRS_API_USERNAME) return {};
  return { authorization: `Basic ${btoa(`${env.SRS_API_USERNAME}:${env.SRS_API_PASSWORD ?? ""}`)}` };
}

/**
 * SRS's answers are under 2 KB, but one about a client carries what the client's request sent (SrsStatisticClient::dumps:
 * its ip from X-Forwarded-For, its page, its URL's parts up to three times), within SRS's 80 KiB of request head
 * (HTTP_MAX_HEADER_SIZE) and escaped: a player that sent a 70 KB X-Forwarded-For is a 70 KB answer (e2e run 51), and
 * the kick its refusal owes must still be able to ask about it. Anything larger is not SRS.
 */
const MAX_ANSWER_BYTES = 512 * 1024;

type Answer = { code: number; server?: unknown; service?: unknown };
/** A call that brought no answer to trust, and why, in words for the decision log ("edge unreachable"). */
type Failed = { problem: string };

export const UNREACHABLE = "edge unreachable";
export const NOT_SRS = "edge answered, but not as SRS's API";
/** A call cut short (or not made) because the hook waiting for it had no time left: the API is slow, not failing. */
export const TOO_SLOW = "edge too slow to answer within the hook's time";
/**
 * A call never sent: no place for it (this object's calls to SRS APIs, or to that server's, were all in use)
 * by the time it could be sent by. Says nothing about the edge (nor against its API): TOO_SLOW is for a call
 * whose time ran out once it had its place (an earlier call to the edge was slow, or the hook's time short).
 */
export const NOT_ASKED = "edge not asked: other calls to SRS APIs held every place for calls for the hook's time";
/** A takeover's kick not sent: its reason went while it waited (an operator changed the policy or the key, or ended the new session). */
export const CALLED_OFF = "kick called off before it was sent";

/**
 * One call, sent once it has one of the object's places (API_CALLS_IN_FLIGHT) and only while
 * `stillWanted` says so (asked right before it is sent: false is CALLED_OFF); see CallTimes.
 */
async function call(
  env: Env,
  apiCalls: Slots,
  method: "GET" | "DELETE",
  target: ApiTarget,
  path: string,
  times: CallTimes & { stillWanted?: () => boolean } = {},
): Promise<Answer | Failed> {
  const until = times.until ?? Infinity;
  const sendBy = Math.min(until, times.sendBy ?? Infinity);
  const answer = await apiCalls.run(async (): Promise<Answer | Failed> => {
    if (Date.now() >= sendBy) return { problem: TOO_SLOW };
    if (times.stillWanted && !times.stillWanted()) return { problem: CALLED_OFF };
    return send(env, method, target, path, until);
  }, sendBy, callKind(target));
  return answer ?? { problem: NOT_ASKED };
}

/**
 * One call sent; a failure when the server could not be reached, answered with
 * anything but HTTP 200 (SRS never redirects: a 3xx is not followed), sent
 * more than MAX_ANSWER_BYTES, or something else than SRS's JSON. It waits
 * API_TIMEOUT_MS at most, and never past `until` (the time a hook has left):
 * a call with no time left is not made.
 */
async function send(env: Env, method: "GET" | "DELETE", target: ApiTarget, path: string, until: number): Promise<Answer | Failed> {
  const waitMs = Math.min(API_TIMEOUT_MS, until - Date.now());
  if (waitMs <= 0) return { problem: TOO_SLOW };
  let text: string | null;
  try {
    const response = await fetch(`${target.base}${path}`, { method, headers: headers(env), redirect: "manual", signal: AbortSignal.timeout(waitMs) });
    unanswered.delete(target.base);
    if (response.status !== 200) {
      await response.body?.cancel();
      logApi(target, method, `HTTP ${response.status}${response.status === 401 ? " (check SRS_API_USERNAME / SRS_API_PASSWORD)" : ""}`);
      return { problem: response.status === 401 ? "edge refused credentials (401)" : `edge answered HTTP ${response.status}` };
    }
    text = await readAtMost(response, MAX_ANSWER_BYTES);
  } catch (err) {
    logApi(target, method, String(err).slice(0, 200));
    const tooSlow = waitMs < API_TIMEOUT_MS && (err as Error)?.name === "TimeoutError";
    // No answer in its full time: its next calls go after those to APIs that answer (API_CALLS_TO_SILENT_APIS).
    if (!tooSlow) {
      if (unanswered.size > 1_000) unanswered.clear();
      unanswered.set(target.base, Date.now() + UNANSWERED_MS);
    }
    return { problem: tooSlow ? TOO_SLOW : UNREACHABLE };
  }
  if (text === null) {
    logApi(target, method, `answer over ${MAX_ANSWER_BYTES} bytes: not SRS`);
    return { problem: NOT_SRS };
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = null;
  }
  if (typeof body !== "object" || body === null || Array.isArray(body) || typeof (body as { code?: unknown }).code !== "number") {
    logApi(target, method, "not an SRS API answer");
    return { problem: NOT_SRS };
  }
  return body as Answer;
}

/** The body as text, or null past `limit` bytes (read no further). */
async function readAtMost(response: Response, limit: number): Promise<string | null> {
  const declared = Number(response.headers.get("content-length") ?? "0");
  if (declared > limit) {
    await response.body?.cancel();
    return null;
  }
  if (!response.body) return "";
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel();
      return null;
    }
    chunks.push(value);
  }
  const all = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) (all.set(c, at), (at += c.byteLength));
  return new TextDecoder().decode(all);
}

/**
 * The API path of one client; null when no URL can name it. SRS matches the path's last segment as it
 * arrives against its client ids, without percent-decoding it (SrsHttpMessage::parse_rest_id reads
 * SrsHttpUri's raw path; path_unescape is never called), so the id goes unescaped: "own%2B05" escaped
 * as "own%252B05", or "a+b" as "a%2Bb", named nobody, and SRS's "not found" read as "gone" left a
 * refused HLS session that chose such an hls_ctx served and ended an admitted one as a ghost. An id a
 * URL cannot carry as it is (a character fetch's URL parser escapes or splits on: space, controls,
 * non-ASCII, " # < > ? ^ ` { } / \) or that it resolves as a dot segment ("." or "..", also spelled
 * %2e), or any id with ".." (SRS refuses such URLs: HttpUrlNotClean), cannot be named: null.
 */
function clientPath(clientId: string): string | null {
  if (!/^[!$%&'()*+,\-.0-9:;=@A-Z[\]_a-z|~]+$/.test(clientId) || /^(?:\.|%2e)+$/i.test(clientId) || clientId.includes("..")) return null;
  return `/api/v1/clients/${clientId}`;
}

/** Who answers at a base URL (server_id, service_id), remembered briefly (and used only for a session of that very process): SRS's "not found" names nobody. */
const identities = new Map<string, { at: number; server: unknown; service: unknown }>();
const IDENTITY_TTL_MS = 5_000;

async function identity(env: Env, apiCalls: Slots, target: ApiTarget, times: CallTimes): Promise<{ server: unknown; service: unknown } | Failed> {
  const cached = identities.get(target.base);
  // Only a remembered answer that names the session's own process spares the call: one that names another (the
  // process before a restart moments ago, say) may be stale, and would turn this "not found" into a wrong word.
  if (cached && Date.now() - cached.at < IDENTITY_TTL_MS && cached.server === target.serverId && cached.service === target.serviceId) return cached;
  const body = await call(env, apiCalls, "GET", target, "/api/v1/versions", times);
  if ("problem" in body) return body;
  if (body.code !== 0) return { problem: `edge answered code ${body.code}` };
  const who = { at: Date.now(), server: body.server, service: body.service };
  if (identities.size > 1_000) identities.clear();
  identities.set(target.base, who);
  return who;
}

/** What a server's API said about a client; `problem` says why it is "unknown" when the API did not answer as it should. */
export interface PresenceAnswer {
  presence: ClientPresence;
  problem?: string;
}

/**
 * Whether the server's API still has the client. "unknown" whenever the
 * answer cannot be trusted (unreachable, an error code other than "not
 * found", another server_id answering, a "not found" from an API whose own
 * identity is not the session's server): then the session stands.
 * `identityAlongside`: who answers at the address is asked at the same time
 * (a "not found" is then expected, after a kick), not after the "not found";
 * the answer waits for it in any case, so a question is over only once all its
 * calls are (the caller's per-server slot, CALLS_PER_SERVER, covers them all).
 * Asked after a "not found", it is part of a question already sent: only
 * `until` holds it (a `sendBy` was for the question, e.g. a refusal's check
 * time, whose late answer is kept for the next refusal).
 */
export async function clientPresence(
  env: Env,
  apiCalls: Slots,
  target: ApiTarget,
  clientId: string,
  times: CallTimes & { identityAlongside?: boolean } = {},
): Promise<PresenceAnswer> {
  const path = clientPath(clientId);
  if (!path) return { presence: "unknown" };
  const early = times.identityAlongside ? identity(env, apiCalls, target, times) : null;
  const body = await call(env, apiCalls, "GET", target, path, times);
  // Never left running behind the answer: an untilGone poll answered "present" at once would otherwise leave
  // one more versions call in flight per poll, past the server's CALLS_PER_SERVER and holding the object's places.
  const who = early ? await early : null;
  if ("problem" in body) return { presence: "unknown", problem: body.problem };
  if (body.code === CLIENT_NOT_FOUND) return notFound(target, who ?? (await identity(env, apiCalls, target, { until: times.until })));
  if (body.code !== 0) return { presence: "unknown", problem: `edge answered code ${body.code}` };
  return sameProcess(target, body, "present");
}

/** What a kick did; `problem` says why it "failed" (the edge unreachable, or what it answered). */
export interface KickResult {
  outcome: KickOutcome;
  problem?: string;
}

/** How a kick fits a hook that waits for it (a takeover); the kick outbox has no such limits. */
export interface KickTiming {
  /** Asked right before the DELETE is sent: false calls the kick off (CALLED_OFF), nothing sent. */
  stillWanted?: () => boolean;
  /** The DELETE is sent only before this time (then the hook still has time to wait for its answer and more); the check before it ends by then too. */
  sendBy?: number;
  /** The server's API said, a moment ago, that this very process has the client: no need to ask again first. */
  knownPresent?: boolean;
  /** A question after the DELETE (who answered a "not found") ends by then. */
  doneBy?: number;
}

/**
 * Kicks the client on its server (DELETE /api/v1/clients/{id}). The kick's calls (its question, the DELETE,
 * who answered a "not found": one after the other) share one of the object's places, taken by `sendBy`: once
 * a kick has its turn, its DELETE does not queue again behind calls to edges that hang.
 */
export async function kickClient(env: Env, apiCalls: Slots, target: ApiTarget, clientId: string, timing: KickTiming = {}): Promise<KickResult> {
  if (!clientPath(clientId)) return { outcome: "unaddressable" };
  const own = new Slots(1);
  const result = await apiCalls.run(() => kickInPlace(env, own, target, clientId, timing), timing.sendBy, callKind(target));
  return result ?? { outcome: "failed", problem: NOT_ASKED };
}

/** kickClient's calls, in its place (`apiCalls`: the kick's own, one call at a time). */
async function kickInPlace(env: Env, apiCalls: Slots, target: ApiTarget, clientId: string, timing: KickTiming): Promise<KickResult> {
  // First make sure the API answering is the session's process: a client id of a restarted process may name someone else.
  if (!timing.knownPresent) {
    const { presence, problem } = await clientPresence(env, apiCalls, target, clientId, { until: timing.sendBy });
    if (presence === "gone") return { outcome: "gone" };
    if (presence === "unknown") return { outcome: "failed", problem: problem ?? UNREACHABLE };
  }
  // No kick the hook could not wait for (TOO_SLOW past sendBy, NOT_ASKED if no place came by then): better the old
  // publisher keeps the stream than both lose it. Nor one whose reason went meanwhile (CALLED_OFF).
  const body = await call(env, apiCalls, "DELETE", target, clientPath(clientId)!, { sendBy: timing.sendBy, stillWanted: timing.stillWanted });
  if ("problem" in body) return { outcome: "failed", problem: body.problem };
  if (body.code === CLIENT_NOT_FOUND) {
    // As to a GET: the address may answer for another server now.
    const { presence, problem } = notFound(target, await identity(env, apiCalls, target, { until: timing.doneBy }));
    return presence === "gone" ? { outcome: "gone" } : { outcome: "failed", problem: problem ?? UNREACHABLE };
  }
  if (body.code !== 0) return { outcome: "failed", problem: `edge answered code ${body.code}` };
  const who = sameProcess(target, body, "present", "DELETE");
  return who.presence === "present" ? { outcome: "kicked" } : { outcome: "failed", problem: who.problem ?? "edge answered for another process" };
}

/**
 * SRS's "not found" is a bare {"code":2049} that names nobody: believed ("gone") only when who answers
 * at the address (`who`, from GET /api/v1/versions) is the session's own server.
 */
function notFound(target: ApiTarget, who: { server: unknown; service: unknown } | Failed): PresenceAnswer {
  return "problem" in who ? { presence: "unknown", problem: who.problem } : sameProcess(target, who, "gone");
}

/**
 * What an answer of `server`/`service` means for a session of `target`'s
 * process: another server answering (a wrong URL) is unknown; the same
 * server under an earlier service_id (target.earlier: the address still
 * reaches the process before the session's) is unknown too; under another
 * service_id the process, and all its clients, are gone (a restart); the
 * same process means `same`.
 */
function sameProcess(target: ApiTarget, who: { server?: unknown; service?: unknown }, same: ClientPresence, method = "GET"): PresenceAnswer {
  if (who.server !== target.serverId) {
    logApi(target, method, `answered as server ${String(who.server).slice(0, 64)}: the API URL points at another server`);
    return { presence: "unknown", problem: `edge's API answered as another server (${String(who.server).slice(0, 64)})` };
  }
  if (typeof who.service !== "string" || who.service === "") return { presence: "unknown", problem: "edge's API answered without a service id" };
  if (who.service !== target.serviceId && target.earlier?.includes(who.service)) {
    logApi(target, method, `answered as service ${who.service.slice(0, 64)}, an earlier process of the server: the API URL still reaches it`);
    return { presence: "unknown", problem: `edge's API answered as an earlier process of the server (service ${who.service.slice(0, 64)})` };
  }
  return { presence: who.service === target.serviceId ? same : "gone" };
}

/** The base URL only: it carries no secret, the hook secret and keys are never part of an API call. */
function logApi(target: ApiTarget, method: string, problem: string): void {
  console.error(JSON.stringify({ error: "SRS API call failed", server: target.serverId, api: target.base, method, detail: problem }));
}
