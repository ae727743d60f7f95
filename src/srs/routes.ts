import { StatusError, type IRequest } from "itty-router";
import { secretsMatch, sha256Hex } from "../auth/secrets";
import { authFailuresPerMinute, maxTokenTtlS, optionalSecret, requiredSecret, serverTimeoutMs, tooShort } from "../config";
import type { Env } from "../env";
import { BodyRefused, readJson } from "../http";
import { streamKey } from "../stream/name";
import { verifyPlayToken } from "../auth/token";
import { tokenSub, type PlayToken } from "../stream/rules";
import * as session from "../session/lifecycle";
import type { Credentials } from "../session/lifecycle";
import { callObject, Deadline } from "../platform/retry";
import { serverRegistry } from "../object-access";
import { paramValue, parseHeartbeat, parseHook, readLeniently, servedSessionOf, type CloseHook, type Hook, type SenderProcess, type SessionId, type StartHook, type StopHook } from "./hook";
import { allow, deny, noForward } from "./reply";
import type { Place } from "../viewers/lease";
import { queueKicks, type Kick } from "./kicks";
import { Recent } from "../platform/recent";

/** POST /hooks/srs/:secret — every on_* callback of every SRS server. */
export async function handleHook(request: IRequest, env: Env, ctx: ExecutionContext): Promise<Response> {
  await requireHookSecret(request, env);
  let body: unknown;
  let hook: Hook;
  try {
    body = await readJson(request);
    hook = parseHook(body);
  } catch (err) {
    // A 400 or 413 is a failed on_play for SRS too: a session it serves anyway is kicked (servedSessionOf), also one
    // whose hook could be read only in part (too long, not UTF-8: readLeniently).
    const unread = err instanceof BodyRefused;
    const served = servedSessionOf(unread ? readLeniently(err.head) : body);
    if (served) kickRefused(served.session, streamKey(served.stream), `${unread ? "unreadable" : "invalid"} hook: ${messageOf(err)}`, env, ctx);
    throw err;
  }
  switch (hook.kind) {
    case "start":
      if (!hook.servedIfRefused) return start(hook, env, placeOf(request), ctx);
      try {
        return await start(hook, env, placeOf(request), ctx);
      } catch (err) {
        // Failing closed does not close such a session: SRS serves it after a 5xx as after a refusal.
        kickRefused(hook.session, streamKey(hook.stream), `error: ${messageOf(err)}`, env, ctx);
        throw err;
      }
    case "stop":
      return stop(hook, env);
    case "close":
      return close(hook, env);
    case "forward":
      await heardFrom(hook, env);
      log({ action: hook.action, decision: "allow" });
      return noForward();
    case "passive":
      // on_connect, on_dvr, on_hls and actions newer than this code: nothing to gate.
      await heardFrom(hook, env);
      log({ action: hook.action, decision: "allow" });
      return allow();
  }
}

/** At most one registry call per process and isolate this often (on_hls comes with every segment). */
const TELL_EVERY_MS = 5_000;
/** Per isolate: the processes told to the registry by a hook that gates nothing within TELL_EVERY_MS. */
const told = new Recent<string>(TELL_EVERY_MS);
/** A passive hook waits this long for the registry to hear it (it is allowed however that ends). */
const HEARD_WAIT_MS = 2_000;

/**
 * Any hook of a process is proof it is alive: a silent server that sends
 * on_connect, on_hls, on_dvr or on_forward is back, its sessions count and
 * block again at once (as for a heartbeat). Like a stop event, such a hook
 * never changes which process is current, and one from a server the
 * registry does not know creates nothing. It gates nothing either: an
 * unreachable registry is logged and the hook still allowed (a failed
 * on_connect would refuse the client).
 */
async function heardFrom({ action, sender }: { action: string; sender: SenderProcess }, env: Env): Promise<void> {
  if (!sender) return;
  const key = `${sender.serverId}\n${sender.serviceId}`;
  if (told.has(key)) return;
  told.mark(key);
  const fields = { action, server: sender.serverId };
  await callObject("registry", () => serverRegistry(env, sender.serverId), (r) => r.heard(sender.serverId, sender.serviceId), "not told", fields, HEARD_WAIT_MS).catch((err) => {
    told.delete(key);
    console.error(JSON.stringify({ error: "registry not told of a hook (allowed all the same)", ...fields, detail: String(err) }));
  });
}

/** POST /hooks/srs/:secret/heartbeat — SRS drops the heartbeat URL's query, hence the path secret. */
export async function handleHeartbeat(request: IRequest, env: Env): Promise<Response> {
  await requireHookSecret(request, env);
  const beat = parseHeartbeat(await readJson(request));
  // Retried on a retryable platform error (src/platform/retry.ts): a repeated heartbeat finds its process current and changes nothing more.
  const fields = { action: "heartbeat", server: beat.serverId };
  await callObject("registry", () => serverRegistry(env, beat.serverId), (r) => r.heartbeat(beat), "heartbeat not recorded", fields, new Deadline().left());
  return allow();
}

async function requireHookSecret(request: IRequest, env: Env): Promise<void> {
  // Unset or shorter than 32 characters, for either: 500 naming it, whatever the path says.
  const current = requiredSecret(env, "HOOK_SECRET", "refusing every hook");
  // HOOK_SECRET_PREVIOUS keeps SRS servers not yet switched to a new secret working during a rotation.
  const previous = optionalSecret(env, "HOOK_SECRET_PREVIOUS", "refusing every hook");
  const given = request.params.secret ?? "";
  const accepted = [current, previous].filter((k): k is string => !!k);
  const matches = await Promise.all(accepted.map((k) => secretsMatch(given, k)));
  if (!matches.includes(true)) throw new StatusError(404, "not found");
  // SERVER_TIMEOUT_S is read by the registry and stream objects behind every
  // hook and heartbeat: a malformed one fails here, named, before anything
  // changes. Settings only some paths use are read there (on_publish and
  // on_play read AUTH_FAILURES_PER_MINUTE), so a typo in one of them cannot
  // stop heartbeats and get the fleet declared dead.
  serverTimeoutMs(env);
}

/** The presented publish key, hashed: "secret" is the Oryx convention; "key" wins when both are given. */
async function publishKeyHash(hook: StartHook): Promise<string | null> {
  const presented = paramValue(hook.param, "key") ?? paramValue(hook.param, "secret");
  return presented === null ? null : sha256Hex(presented);
}

/**
 * Verified here, before the stream is asked, so that the stream's decision
 * stays synchronous. Only streams with playAuth "token" look at the verdict.
 */
async function checkPlayToken(hook: StartHook, env: Env): Promise<PlayToken> {
  const keys = [env.TOKEN_SIGNING_KEY, env.TOKEN_SIGNING_KEY_PREVIOUS].filter((k): k is string => !!k);
  if (keys.length === 0) return { ok: false, problem: "not configured" };
  // A key too short to trust refuses every token viewer (fail closed), with a reason naming it.
  if (env.TOKEN_SIGNING_KEY && tooShort(env.TOKEN_SIGNING_KEY)) return { ok: false, problem: "signing key too short" };
  if (env.TOKEN_SIGNING_KEY_PREVIOUS && tooShort(env.TOKEN_SIGNING_KEY_PREVIOUS)) {
    return { ok: false, problem: "previous signing key too short" };
  }
  const token = paramValue(hook.param, "token");
  // Read only when there is a token to check: a malformed setting fails those plays (500), not every play.
  const maxLifetime = token ? maxTokenTtlS(env) : Infinity;
  return verifyPlayToken(token, hook.stream, Math.floor(Date.now() / 1000), keys, maxLifetime);
}

/** Where the Worker runs (and so, where a viewer shard it creates lives), as the platform tells: request.cf. */
function placeOf(request: IRequest): Place {
  const cf = (request as unknown as { cf?: { colo?: unknown; country?: unknown } }).cf;
  return { colo: typeof cf?.colo === "string" ? cf.colo : "", country: typeof cf?.country === "string" ? cf.country : "" };
}

async function start(hook: StartHook, env: Env, place: Place, ctx: ExecutionContext): Promise<Response> {
  const began = Date.now();
  const key = streamKey(hook.stream);
  const credentials: Credentials =
    hook.role === "publisher"
      ? { role: "publisher", keyHash: await publishKeyHash(hook) }
      : { role: "viewer", token: await checkPlayToken(hook, env) };
  const decision = await session.start(env, hook, key, credentials, () => authFailuresPerMinute(env), place);
  const { serverId, clientId } = hook.session;
  log({
    action: hook.action,
    stream: key,
    server: serverId,
    client: clientId,
    ip: hook.ip,
    ...(hook.ipGiven !== undefined ? { ipGiven: hook.ipGiven } : {}),
    // The viewer id of a play token (an opaque id the operator chose, not a secret; the token itself is never logged).
    // Named for a refused token too once its signature was checked (expired, lifetime too long, …).
    ...(credentials.role === "viewer" && tokenSub(credentials.token) ? { sub: tokenSub(credentials.token) } : {}),
    decision: decision.allow ? "allow" : "deny",
    reason: decision.allow ? undefined : decision.denial.reason,
    ms: Date.now() - began,
  });
  if (!decision.allow && hook.servedIfRefused) kickRefused(hook.session, key, decision.denial.reason, env, ctx);
  return decision.allow ? allow() : deny(decision.denial);
}

/**
 * SRS registers the refused session only once it has read the answer: the first attempt waits
 * this long, else it finds no session to kick and tries again a second later (seen against SRS
 * 7.0.18 in 3 of 20 tries when it went at once).
 */
const REFUSED_KICK_DELAY_MS = 300;

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * A client that SRS serves whatever the hook answers until it is kicked (an HLS viewer that named
 * its hls_ctx, see servedUnlessAllowed in src/srs/hook.ts) is kicked through its server's HTTP API
 * when the answer is not an admission, in the background, with the retries and decision-log
 * outcomes of every kick (src/srs/kicks.ts). Without SRS_API_URL nothing can end it: the README
 * says so.
 */
function kickRefused(session: SessionId, key: string, reason: string, env: Env, ctx: ExecutionContext): void {
  const why = `refused (${reason}), and SRS serves a refused HLS session that chose its hls_ctx`;
  const kick: Kick = { streamKey: key, role: "viewer", ...session, why, delayMs: REFUSED_KICK_DELAY_MS, unlessAdmitted: true };
  ctx.waitUntil(queueKicks(env, [kick]));
}

async function stop(hook: StopHook, env: Env): Promise<Response> {
  const began = Date.now();
  const key = streamKey(hook.stream);
  const ended = await session.stop(env, hook, key, hook.role);
  log({ action: hook.action, stream: key, server: hook.session.serverId, client: hook.session.clientId, decision: "allow", ended, ms: Date.now() - began });
  return allow();
}

async function close(hook: CloseHook, env: Env): Promise<Response> {
  const began = Date.now();
  const ended = await session.close(env, hook.session);
  log({ action: hook.action, server: hook.session.serverId, client: hook.session.clientId, decision: "allow", ended, ms: Date.now() - began });
  return allow();
}

/** One structured line per decision; never the param (it carries keys and tokens). */
function log(fields: Record<string, unknown>): void {
  console.log(JSON.stringify(fields));
}
