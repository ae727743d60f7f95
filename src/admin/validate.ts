import { StatusError } from "itty-router";
import { MAX_CLOCK_SKEW_S, SUB_PATTERN } from "../auth/token";
import { isObject, queryParam } from "../http";
import { LIMITS, within } from "../limits";
import { DEFAULT_VHOST, STREAM_KEY_MAX, streamKey, type StreamName } from "../stream/name";
import type { PolicyChange } from "../stream/object";

const POLICY_FIELDS = new Set(["maxViewers", "playAuth", "onDuplicatePublish", "maxSessionsPerViewer", "onExtraViewerSession", "rotateKey"]);

/** Body of PUT /admin/streams/{app}/{stream}; an empty body changes nothing. */
export function parsePolicyChange(body: unknown): PolicyChange {
  if (body === undefined) return {};
  if (!isObject(body)) throw new StatusError(400, "body must be a JSON object");
  for (const field of Object.keys(body)) {
    if (!POLICY_FIELDS.has(field)) throw new StatusError(400, `unknown field "${field}" (allowed: ${[...POLICY_FIELDS].join(", ")})`);
  }
  const change: PolicyChange = {};
  if ("maxViewers" in body) {
    const max = body.maxViewers;
    if (max !== null && !(Number.isSafeInteger(max) && (max as number) >= 0)) {
      throw new StatusError(400, 'field "maxViewers" must be a non-negative integer or null (no cap)');
    }
    change.maxViewers = max as number | null;
  }
  if ("playAuth" in body) {
    if (body.playAuth !== "open" && body.playAuth !== "token") {
      throw new StatusError(400, 'field "playAuth" must be "open" or "token"');
    }
    change.playAuth = body.playAuth;
  }
  if ("onDuplicatePublish" in body) {
    if (body.onDuplicatePublish !== "deny" && body.onDuplicatePublish !== "replace") {
      throw new StatusError(400, 'field "onDuplicatePublish" must be "deny" or "replace"');
    }
    change.onDuplicatePublish = body.onDuplicatePublish;
  }
  if ("maxSessionsPerViewer" in body) {
    const max = body.maxSessionsPerViewer;
    if (max !== null && !(Number.isSafeInteger(max) && (max as number) >= 1)) {
      throw new StatusError(400, 'field "maxSessionsPerViewer" must be an integer of at least 1, or null (no limit)');
    }
    change.maxSessionsPerViewer = max as number | null;
  }
  if ("onExtraViewerSession" in body) {
    if (body.onExtraViewerSession !== "deny" && body.onExtraViewerSession !== "replace") {
      throw new StatusError(400, 'field "onExtraViewerSession" must be "deny" or "replace"');
    }
    change.onExtraViewerSession = body.onExtraViewerSession;
  }
  if ("rotateKey" in body) {
    if (typeof body.rotateKey !== "boolean") throw new StatusError(400, 'field "rotateKey" must be a boolean');
    change.rotateKey = body.rotateKey;
  }
  return change;
}

/**
 * The stream named by the admin path plus the optional ?vhost= query parameter. Refused also when the
 * names together are too long for the stream's catalogue key (STREAM_KEY_MAX): such a stream cannot exist.
 */
export function streamNameFrom(params: Record<string, string>, query: Record<string, unknown>): StreamName {
  const vhost = queryParam(query, "vhost") ?? DEFAULT_VHOST;
  if (vhost === "") throw new StatusError(400, 'field "vhost" must not be empty');
  const name = {
    vhost: within("vhost", vhost, LIMITS.vhost),
    app: within("app", decode(params.app), LIMITS.app),
    stream: within("stream", decode(params.stream), LIMITS.stream),
  };
  const length = streamKey(name).length;
  if (length > STREAM_KEY_MAX) {
    throw new StatusError(
      400,
      `fields "vhost", "app" and "stream" are too long together: "vhost/app/stream" is ${length} characters, at most ${STREAM_KEY_MAX} (the stream's catalogue key in KV, "stream:vhost/app/stream", is limited to 512 bytes)`,
    );
  }
  return name;
}

/** Path segments arrive percent-encoded; names are checked on what they decode to. */
function decode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new StatusError(400, `malformed percent-encoding in "${segment}"`);
  }
}

export const MIN_TOKEN_TTL_S = 1;
/** The admin API mints no token longer than this, nor longer than MAX_TOKEN_TTL_S if that is shorter. */
export const MAX_MINTED_TTL_S = 7 * 24 * 3600;
export const DEFAULT_TOKEN_TTL_S = 3600;

/**
 * Body of POST /admin/streams/{app}/{stream}/tokens and POST /admin/apps/{app}/tokens:
 * `{"ttl"?, "sub"?}`, ttl in seconds, by default DEFAULT_TOKEN_TTL_S. `maxTokenTtl` is the
 * MAX_TOKEN_TTL_S setting: a minted token never lives longer (nor longer than MAX_MINTED_TTL_S),
 * so it always verifies.
 */
export function parseTokenRequest(body: unknown, maxTokenTtl = Infinity): { ttl: number; sub?: string } {
  const max = Math.min(MAX_MINTED_TTL_S, maxTokenTtl);
  const fallback = Math.min(DEFAULT_TOKEN_TTL_S, max);
  if (body === undefined) return { ttl: fallback };
  if (!isObject(body)) throw new StatusError(400, "body must be a JSON object");
  for (const field of Object.keys(body)) {
    if (field !== "ttl" && field !== "sub") throw new StatusError(400, `unknown field "${field}" (allowed: ttl, sub)`);
  }
  let ttl = fallback;
  if (body.ttl !== undefined) {
    if (!Number.isSafeInteger(body.ttl) || (body.ttl as number) < MIN_TOKEN_TTL_S || (body.ttl as number) > max) {
      throw new StatusError(400, `field "ttl" must be an integer number of seconds from ${MIN_TOKEN_TTL_S} to ${max}`);
    }
    ttl = body.ttl as number;
  }
  if (body.sub === undefined) return { ttl };
  if (typeof body.sub !== "string" || !SUB_PATTERN.test(body.sub)) {
    throw new StatusError(400, 'field "sub" must be 1 to 64 characters of A-Z a-z 0-9 . _ : @ -');
  }
  return { ttl, sub: body.sub };
}

/**
 * Body of POST /admin/streams/{app}/{stream}/revocations: `{"sub"}` (that
 * viewer's tokens issued up to now), `{"before"}` (every token issued before
 * then, Unix seconds), or both (that viewer's tokens issued before then).
 * "Up to now" is up to now + MAX_CLOCK_SKEW_S on the tokens' own clock: every
 * token the gate could have accepted until now (it refuses a token dated
 * further ahead), also one minted by a backend whose clock runs fast. A
 * `before` may lie that far ahead too (the caller's clock may run fast), no
 * further.
 */
export function parseRevocation(body: unknown, now: number): { sub: string | null; before: number } {
  if (!isObject(body)) throw new StatusError(400, 'body must be a JSON object: {"sub": "<viewer id>"} or {"before": <Unix seconds>}');
  for (const field of Object.keys(body)) {
    if (field !== "sub" && field !== "before") throw new StatusError(400, `unknown field "${field}" (allowed: sub, before)`);
  }
  if (body.sub === undefined && body.before === undefined) throw new StatusError(400, 'give "sub" (one viewer\'s tokens) or "before" (every token issued before then)');
  if (body.sub !== undefined && (typeof body.sub !== "string" || !SUB_PATTERN.test(body.sub))) {
    throw new StatusError(400, 'field "sub" must be 1 to 64 characters of A-Z a-z 0-9 . _ : @ -');
  }
  // "Up to now" includes tokens minted in this very second (issue times are whole seconds), dated up to the skew ahead.
  let before = now + 1 + MAX_CLOCK_SKEW_S;
  if (body.before !== undefined) {
    if (!Number.isSafeInteger(body.before) || (body.before as number) < 0) throw new StatusError(400, 'field "before" must be a Unix time in whole seconds');
    if ((body.before as number) > now + MAX_CLOCK_SKEW_S) throw new StatusError(400, 'field "before" must not lie in the future: it would refuse tokens not yet issued');
    before = body.before as number;
  }
  return { sub: (body.sub as string | undefined) ?? null, before };
}
