/**
 * Viewer identity in the admin API: revocations of play tokens, and a
 * stream's sessions per viewer id (the `sub` of the tokens they played with).
 */
import { StatusError, type IRequest } from "itty-router";
import { maxTokenTtlS } from "../config";
import type { Env } from "../env";
import { jsonResponse, readJson } from "../http";
import { streamObject, viewerShard } from "../object-access";
import { streamKey } from "../stream/name";
import type { Revocation } from "../viewers/lease";
import type { ViewerSession } from "../viewers/shard";
import { endRevokedSessions } from "../viewers/revoked";
import { notQueued } from "../events/operator";
import { parseRevocation, streamNameFrom } from "./validate";

/** Sessions GET …/viewers lists at most, per viewer shard. */
const VIEWERS_LISTED = 1000;

/**
 * POST /admin/streams/{app}/{stream}/revocations. The revocation is stored
 * by the stream and pushed to its viewer shards first (so the very next
 * on_play is refused, 4019), then the live sessions it covers end on every
 * shard (kicked through the SRS API when SRS_API_URL is set). It lasts until
 * every token it covers has expired, `before` + MAX_TOKEN_TTL_S, or for good
 * when it covers every viewer's tokens (v1 tokens among them: see
 * src/stream/revocations.ts).
 */
export async function postRevocation(request: IRequest, env: Env): Promise<Response> {
  const name = streamNameFrom(request.params, request.query);
  const now = Math.floor(Date.now() / 1000);
  const { sub, before } = parseRevocation(await readJson(request), now);
  const key = streamKey(name);
  const stream = streamObject(env, key);
  if (!(await stream.state())) throw new StatusError(404, `stream ${key} does not exist`);
  const revocation = await stream.revoke(sub, before, before + maxTokenTtlS(env));
  if (!revocation) throw new StatusError(409, 'too many active revocations on this stream: revoke every token issued before a time instead ({"before": <Unix seconds>})');
  const unreached = await stream.pushRevocations(key).catch(() => ["(stream)"]);
  if (unreached.length > 0) console.error(JSON.stringify({ error: "revocation not pushed to every viewer shard", stream: key, servers: unreached }));
  // On an open stream its viewers need no token: ending them would only have them play again at once (the shards
  // check too, but one just restarted may not know the stream's policy yet). Read now that the revocation is
  // stored: a switch to token that came before it ended nothing of it, one that comes after it ends what it covers.
  const open = (await stream.state())?.playAuth === "open";
  const { ended, kicking, eventsNotQueued } = open ? { ended: [], kicking: [], eventsNotQueued: [] } : await endRevokedSessions(env, key, await stream.eventSources(), [{ sub, before }]);
  return jsonResponse(
    {
      revocation: shown(revocation),
      ended: ended.map((v) => ({ serverId: v.serverId, serviceId: v.serviceId, clientId: v.clientId })),
      ...(env.SRS_API_URL ? { kicking } : {}),
      ...notQueued(eventsNotQueued),
    },
    201,
  );
}

/** GET /admin/streams/{app}/{stream}/revocations: the active ones. */
export async function listRevocations(request: IRequest, env: Env): Promise<Response> {
  const name = streamNameFrom(request.params, request.query);
  const list = await streamObject(env, streamKey(name)).revocationList();
  if (!list) throw new StatusError(404, `stream ${streamKey(name)} does not exist`);
  return jsonResponse({ revocations: list.map(shown) });
}

/**
 * GET /admin/streams/{app}/{stream}/viewers: the stream's viewer sessions
 * grouped by viewer id, most sessions first; sessions without one (open
 * streams, tokens without `sub`) are only counted.
 */
export async function listViewers(request: IRequest, env: Env): Promise<Response> {
  const name = streamNameFrom(request.params, request.query);
  const key = streamKey(name);
  const stream = streamObject(env, key);
  if (!(await stream.state())) throw new StatusError(404, `stream ${key} does not exist`);
  const sources = await stream.eventSources();
  // A shard that cannot be asked is named in `unreachable`: its viewers are missing from the list.
  const unreachable: string[] = [];
  const sessions = (
    await Promise.all(
      sources.map((id) =>
        viewerShard(env, id).viewerSessions(key, VIEWERS_LISTED).catch(() => {
          unreachable.push(id);
          return [] as ViewerSession[];
        }),
      ),
    )
  ).flat();
  const bySub = new Map<string, ViewerSession[]>();
  let anonymous = 0;
  for (const s of sessions) {
    if (s.sub === null) anonymous++;
    else bySub.set(s.sub, [...(bySub.get(s.sub) ?? []), s]);
  }
  const viewers = [...bySub]
    .map(([sub, of]) => ({ sub, live: of.filter((s) => !s.suspended).length, sessions: of.map(({ sub: _, ...s }) => s) }))
    .sort((a, b) => b.sessions.length - a.sessions.length || a.sub.localeCompare(b.sub));
  return jsonResponse({ viewers, anonymous, ...(unreachable.length > 0 ? { unreachable: unreachable.sort() } : {}) });
}

function shown(r: Revocation) {
  return { sub: r.sub, before: r.before, expires: r.expires };
}
