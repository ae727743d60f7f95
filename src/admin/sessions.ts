import { StatusError, type IRequest } from "itty-router";
import type { Env } from "../env";
import { jsonResponse } from "../http";
import { LIMITS, within } from "../limits";
import type { IndexedSession } from "../server/registry";
import type { EndedSession } from "../stream/object";
import { streamKey } from "../stream/name";
import { serverRegistry, streamObject } from "../stubs";
import { streamNameFrom } from "./validate";

/**
 * Ending sessions by hand: the way out when SRS lost a stop event (it never
 * retries one, and HTTP-FLV and HLS viewers have no on_close) and the ghost
 * blocks a republish or fills the cap. Only streamgate's accounting lets the
 * sessions go: SRS keeps its clients connected (kick them on SRS itself).
 * As for stop events, each stream ends a session before the server's index
 * forgets it.
 */

/** Streams told per DELETE /admin/servers/{id}/sessions call: bounded work per request. */
export const SERVER_SESSIONS_PER_CALL = 500;

/** DELETE /admin/streams/{app}/{stream}/sessions[?server=ID][&client=ID] */
export async function endStreamSessions(request: IRequest, env: Env): Promise<Response> {
  const began = Date.now();
  const name = streamNameFrom(request.params, request.query);
  const filter = {
    serverId: optionalId(request.query.server, "server"),
    clientId: optionalId(request.query.client, "client"),
  };
  const key = streamKey(name);
  const stream = streamObject(env, key);
  const ended = await stream.endSessions(filter);
  if (ended.length === 0 && !(await stream.state())) throw new StatusError(404, `stream ${key} does not exist`);
  const byServer = new Map<string, IndexedSession[]>();
  for (const s of ended) {
    byServer.set(s.serverId, [...(byServer.get(s.serverId) ?? []), { streamKey: key, role: s.role, serviceId: s.serviceId, clientId: s.clientId }]);
  }
  await Promise.all([...byServer].map(([serverId, sessions]) => serverRegistry(env, serverId).forgetSessions(serverId, sessions, began)));
  await reindexRestarted(env, key, ended);
  return jsonResponse({ ended });
}

/**
 * DELETE /admin/servers/{server_id}/sessions: every session the server's
 * clients hold, on every stream, whatever process of the server they belong
 * to. At most SERVER_SESSIONS_PER_CALL per call; `remaining` says how many
 * are left for the next call.
 */
export async function endServerSessions(request: IRequest, env: Env): Promise<Response> {
  const began = Date.now();
  let raw: string;
  try {
    raw = decodeURIComponent(request.params.server_id);
  } catch {
    throw new StatusError(400, `malformed percent-encoding in "${request.params.server_id}"`);
  }
  const serverId = within("server_id", raw, LIMITS.id);
  const registry = serverRegistry(env, serverId);
  if (!(await registry.state(serverId))) throw new StatusError(404, `server ${serverId} is not known`);
  const all = await registry.sessionsOf(serverId);
  const batch = all.slice(0, SERVER_SESSIONS_PER_CALL);
  const results = await Promise.allSettled(
    batch.map((s) =>
      streamObject(env, s.streamKey).end({ serverId, serviceId: s.serviceId, clientId: s.clientId }, s.role, {
        action: "admin",
        reason: `ended by operator (all sessions of server ${serverId})`,
      }),
    ),
  );
  const done = batch.filter((_, i) => results[i].status === "fulfilled");
  await registry.forgetSessions(serverId, done, began);
  const byStream = new Map<string, EndedSession[]>();
  for (const d of done) {
    byStream.set(d.streamKey, [...(byStream.get(d.streamKey) ?? []), { role: d.role, serverId, serviceId: d.serviceId, clientId: d.clientId }]);
  }
  await Promise.all([...byStream].map(([streamKey, sessions]) => reindexRestarted(env, streamKey, sessions)));
  const failed = batch.length - done.length;
  return jsonResponse({
    serverId,
    ended: done.map((s) => ({ stream: s.streamKey, role: s.role, serviceId: s.serviceId, clientId: s.clientId })),
    remaining: all.length - done.length,
    ...(failed > 0 ? { failed } : {}),
  });
}

/**
 * A client that started again while its old session was being ended (same
 * ids) may have lost its index entry to the forget: its stream is asked, and
 * what it holds is indexed again. Admin calls can afford the round trip; SRS
 * never overlaps hooks of one client, so stop events need not.
 */
async function reindexRestarted(env: Env, streamKey: string, ended: EndedSession[]): Promise<void> {
  if (ended.length === 0) return;
  const held = await streamObject(env, streamKey).heldSessions(ended);
  await Promise.all(
    held.map((s) => serverRegistry(env, s.serverId).track(s.serverId, s.serviceId, s.clientId, { streamKey, role: s.role })),
  );
}

function optionalId(value: unknown, field: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "string") throw new StatusError(400, `query parameter "${field}" must be given once`);
  return within(field, value, LIMITS.id);
}
