import { StatusError, type IRequest } from "itty-router";
import { secretsMatch, sha256Hex } from "../auth/secrets";
import type { Env } from "../env";
import { readJson } from "../http";
import { streamKey } from "../stream/name";
import type { Decision } from "../stream/rules";
import { paramValue, parseHeartbeat, parseHook, type CloseHook, type Role, type StreamHook } from "./hook";
import { allow, deny, noForward } from "./reply";

/** POST /hooks/srs/:secret — every on_* callback of every SRS server. */
export async function handleHook(request: IRequest, env: Env, ctx: ExecutionContext): Promise<Response> {
  await requireHookSecret(request, env);
  const hook = parseHook(await readJson(request));
  switch (hook.action) {
    case "on_publish":
    case "on_play":
      return start(hook as StreamHook, env, ctx);
    case "on_unpublish":
    case "on_stop":
      return stop(hook as StreamHook, env);
    case "on_close":
      return close(hook as CloseHook, env);
    case "on_forward":
      log({ action: hook.action, decision: "allow" });
      return noForward();
    default:
      // on_connect, on_dvr, on_hls and actions newer than this code: nothing to gate.
      log({ action: hook.action, decision: "allow" });
      return allow();
  }
}

/** POST /hooks/srs/:secret/heartbeat — SRS drops the heartbeat URL's query, hence the path secret. */
export async function handleHeartbeat(request: IRequest, env: Env): Promise<Response> {
  await requireHookSecret(request, env);
  const beat = parseHeartbeat(await readJson(request));
  await env.SERVER.get(env.SERVER.idFromName(beat.serverId)).heartbeat(beat);
  return allow();
}

async function requireHookSecret(request: IRequest, env: Env): Promise<void> {
  if (!env.HOOK_SECRET) throw new StatusError(500, "HOOK_SECRET is not configured: refusing every hook");
  if (!(await secretsMatch(request.params.secret ?? "", env.HOOK_SECRET))) throw new StatusError(404, "not found");
}

function roleOf(action: StreamHook["action"]): Role {
  return action === "on_publish" || action === "on_unpublish" ? "publisher" : "viewer";
}

async function start(hook: StreamHook, env: Env, ctx: ExecutionContext): Promise<Response> {
  const began = Date.now();
  const key = streamKey(hook.stream);
  const role = roleOf(hook.action);
  const stream = env.STREAM.get(env.STREAM.idFromName(key));
  const server = serverStub(env, hook.session.serverId);
  // The client index is written alongside the decision, not after it, so an
  // admitted client costs no extra round trip; a denial takes the entry back.
  const indexed = server.track(hook.session.serviceId, hook.session.clientId, { streamKey: key, role });
  let decision: Decision;
  if (role === "publisher") {
    const presented = paramValue(hook.param, "key");
    decision = await stream.publish(hook.session, hook.ip, presented === null ? null : await sha256Hex(presented));
  } else {
    decision = await stream.play(hook.session, hook.ip);
  }
  await indexed;
  if (!decision.allow) {
    ctx.waitUntil(server.untrack(hook.session.serviceId, hook.session.clientId, { streamKey: key, role }));
  }
  log({
    action: hook.action,
    stream: key,
    server: hook.session.serverId,
    client: hook.session.clientId,
    decision: decision.allow ? "allow" : "deny",
    reason: decision.allow ? undefined : decision.denial.reason,
    ms: Date.now() - began,
  });
  return decision.allow ? allow() : deny(decision.denial);
}

async function stop(hook: StreamHook, env: Env): Promise<Response> {
  const key = streamKey(hook.stream);
  const role = roleOf(hook.action);
  await Promise.all([
    env.STREAM.get(env.STREAM.idFromName(key)).end(hook.session, role),
    serverStub(env, hook.session.serverId).untrack(hook.session.serviceId, hook.session.clientId, { streamKey: key, role }),
  ]);
  log({ action: hook.action, stream: key, server: hook.session.serverId, client: hook.session.clientId, decision: "allow" });
  return allow();
}

async function close(hook: CloseHook, env: Env): Promise<Response> {
  const held = await serverStub(env, hook.session.serverId).close(hook.session.serviceId, hook.session.clientId);
  await Promise.all(held.map((h) => env.STREAM.get(env.STREAM.idFromName(h.streamKey)).end(hook.session, h.role)));
  log({ action: hook.action, server: hook.session.serverId, client: hook.session.clientId, decision: "allow", ended: held.length });
  return allow();
}

function serverStub(env: Env, serverId: string) {
  return env.SERVER.get(env.SERVER.idFromName(serverId));
}

/** One structured line per decision; never the param (it carries keys and tokens). */
function log(fields: Record<string, unknown>): void {
  console.log(JSON.stringify(fields));
}
