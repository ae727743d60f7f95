import { StatusError, type IRequest } from "itty-router";
import type { Env } from "../env";
import { jsonResponse, onlyQuery, queryParam } from "../http";
import { LIMITS, within } from "../limits";
import { endServerSessions as endAllOfServer, endStreamSessions as endOfStream } from "../session/lifecycle";
import { streamKey } from "../stream/name";
import { streamNameFrom } from "./validate";
import { serverIdFrom } from "./servers";
import { queueKicks } from "../srs/kicks";
import { notQueued, reportOperatorEnded } from "../events/operator";

/**
 * Ending sessions by hand: the way out when SRS lost a stop event (it never
 * retries one, and HTTP-FLV and HLS viewers have no on_close) and the ghost
 * blocks a republish or fills the cap. streamgate's accounting lets the
 * sessions go; with SRS_API_URL their clients are kicked on their edges too
 * (without it SRS keeps them connected: kick them on SRS itself).
 * The order of the writes is in src/session/lifecycle.ts.
 */

/** DELETE /admin/streams/{app}/{stream}/sessions[?server=ID][&client=ID] */
export async function endStreamSessions(request: IRequest, env: Env): Promise<Response> {
  // A filter it does not know (?client_id=, ?Client=) was ignored, and every session of the stream ended and was kicked.
  onlyQuery(request, ["server", "client", "vhost"], "DELETE /admin/streams/{app}/{stream}/sessions reads ?server=ID, ?client=ID and ?vhost=: nothing was changed");
  const name = streamNameFrom(request.params, request.query);
  const filter = {
    serverId: optionalId(request.query, "server"),
    clientId: optionalId(request.query, "client"),
  };
  const result = await endOfStream(env, streamKey(name), filter);
  if (result === null) throw new StatusError(404, `stream ${streamKey(name)} does not exist`);
  const { ended, failed } = result;
  // With SRS_API_URL, the clients are kicked on their edges too (src/srs/kicks.ts).
  const kicking = await queueKicks(env, ended.map((s) => ({ ...s, streamKey: streamKey(name), why: "ended by operator" })));
  const lost = await reportOperatorEnded(env, ended.map((s) => ({ ...s, streamKey: streamKey(name) })), "ended by operator", kicking.length > 0);
  return jsonResponse({ ended, ...(env.SRS_API_URL ? { kicking } : {}), ...(failed.length > 0 ? { failed } : {}), ...notQueued(lost) });
}

/**
 * DELETE /admin/servers/{server_id}/sessions: every session the server's
 * clients hold, on every stream; `remaining` says how many are left for the
 * next call (at most SERVER_SESSIONS_PER_CALL per call).
 */
export async function endServerSessions(request: IRequest, env: Env): Promise<Response> {
  const serverId = serverIdFrom(request);
  // It takes no filter: a ?client= (as DELETE …/streams/…/sessions takes) was ignored, and every session of the server ended and was kicked.
  onlyQuery(request, [], "DELETE /admin/servers/{server_id}/sessions ends every session of the server and takes no query parameter (one client: DELETE /admin/streams/{app}/{stream}/sessions?server=ID&client=ID): nothing was changed");
  const result = await endAllOfServer(env, serverId);
  if (result === null) throw new StatusError(404, `server ${serverId} is not known`);
  const kicking = await queueKicks(env, result.ended.map((s) => ({ ...s, serverId, why: "ended by operator" })));
  const lost = await reportOperatorEnded(env, result.ended.map((s) => ({ ...s, serverId })), "ended by operator", kicking.length > 0);
  return jsonResponse({
    serverId,
    ended: result.ended.map((s) => ({ stream: s.streamKey, role: s.role, serviceId: s.serviceId, clientId: s.clientId })),
    ...(env.SRS_API_URL ? { kicking } : {}),
    remaining: result.remaining,
    ...(result.failed > 0 ? { failed: result.failed } : {}),
    ...notQueued(lost),
  });
}

function optionalId(query: Record<string, unknown>, field: string): string | undefined {
  const value = queryParam(query, field);
  return value === undefined ? undefined : within(field, value, LIMITS.id);
}
