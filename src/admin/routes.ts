import { StatusError, type IRequest } from "itty-router";
import { newPublishKey, secretsMatch, sha256Hex } from "../auth/secrets";
import { signPlayToken } from "../auth/token";
import { maxTokenTtlS, requiredSecret } from "../config";
import type { Env } from "../env";
import { jsonResponse, pageCursor, queryParam, readJson, refuseBody } from "../http";
import { CATALOGUE_PREFIX, cataloguePage, HLS_SUFFIX, parseStreamKey, STREAM_KEY_MAX, streamKey, withoutHlsSuffix, type StreamName } from "../stream/name";
import type { StreamState } from "../stream/object";
import { STREAM_DELETED, type OperatorAction } from "../stream/publisher-api";
import { REGISTRY_SHARDS, type ServerState } from "../server/registry";
import { registryShard, serverRegistry, streamObject, viewerShard } from "../object-access";
import { LIMITS } from "../limits";
import { allEvents, listedAudiences, withAudience } from "../viewers/audience";
import { queueKicks, type KickPlanned } from "../srs/kicks";
import type { SessionId } from "../srs/hook";
import { notQueued, reportOperatorEnded } from "../events/operator";
import { parsePolicyChange, parseTokenRequest, streamNameFrom } from "./validate";
import { isolateOfCounts, NOT_COUNTED } from "../platform/load";

/** Middleware: every /admin route needs `Authorization: Bearer <ADMIN_TOKEN>`. */
export async function requireAdmin(request: IRequest, env: Env): Promise<void> {
  const expected = requiredSecret(env, "ADMIN_TOKEN", "the admin API is disabled");
  const header = request.headers.get("authorization") ?? "";
  const token = header.startsWith("Bearer ") ? header.slice(7) : "";
  if (!(await secretsMatch(token, expected))) throw new StatusError(401, "missing or wrong admin token");
  if (request.method === "GET" || request.method === "DELETE") await refuseBody(request);
}

/**
 * The stream's object is changed first (it is the authority), then the KV
 * catalogue. A new key is shown only once, so when the catalogue cannot be
 * written the change is undone before failing: a new stream is removed again
 * (nobody could publish to it: its key was never shown), a rotated key is
 * put back (the old one keeps working): the object's answer names the key a
 * rotation replaced, and undoKeyChange restores it only if no later rotation
 * replaced the new one meanwhile.
 */
export async function putStream(request: IRequest, env: Env): Promise<Response> {
  const name = streamNameFrom(request.params, request.query);
  // Hooks decide "cam1.m3u8" for "cam1" (src/srs/hook.ts): a stream named "cam1.m3u8" no hook would reach.
  const hooksName = withoutHlsSuffix(name.stream);
  if (hooksName !== name.stream) {
    // Suggested only if it can be created itself (not for ".m3u8" alone, nor for "a.m3u8.m3u8", whose hooks name "a.m3u8").
    const instead = hooksName !== "" && withoutHlsSuffix(hooksName) === hooksName ? `create "${hooksName}" for ${name.stream}` : `no hook can name it: choose a name that does not end with "${HLS_SUFFIX}"`;
    throw new StatusError(400, `stream "${name.stream}" ends with "${HLS_SUFFIX}", which SRS's HLS hooks leave out: ${instead}`);
  }
  const change = parsePolicyChange(await readJson(request));
  const key = newPublishKey();
  const candidate = { key, hash: await sha256Hex(key) };
  const stub = streamStub(env, name);
  const result = await stub.configure(name, change, candidate);
  try {
    await writeCatalogue(env, result.state, result.keyHash);
  } catch (err) {
    const stream = streamKey(name);
    console.error(JSON.stringify({ error: String(err), during: "catalogue write", stream }));
    const failed = (what: string) => new StatusError(503, `stream catalogue (KV) unavailable: ${what}`);
    // A key nobody will ever see must not stay in force: undone in one call, unless another PUT changed it meanwhile.
    if (result.created) {
      await undo(() => stub.undoKeyChange(candidate.hash, null), failed(`${stream} was created without its key shown, and could not be removed again: DELETE it`));
      throw failed(`${stream} was not created; try again`);
    }
    if (result.replacedKeyHash !== undefined) {
      await undo(() => stub.undoKeyChange(candidate.hash, result.replacedKeyHash!), failed(`the key of ${stream} was rotated, but could not be shown or put back: rotate it again`));
      throw failed(`the key of ${stream} was not rotated, the old key still works; try again`);
    }
    throw failed(`the change to ${stream} took effect but is not in the catalogue; repeat the PUT`);
  }
  await pushPolicy(env, name);
  // A rotated key revokes the one the live publisher used: it is kicked on its edge (src/srs/kicks.ts).
  // Those publishing at the moment of the rotation: one admitted since with the new key is not kicked.
  const kicking = result.rotatedPublishers ? await queueKicks(env, result.rotatedPublishers.map((p) => ({ ...p, streamKey: streamKey(name), role: "publisher" as const, why: "key rotated" }))) : [];
  if (result.rotatedPublishers) await notKicked(env, name, result.rotatedPublishers, kicking, candidate.hash);
  const lost = await reportOperatorEnded(env, kicking.map((k) => ({ ...k, streamKey: streamKey(name) })), "key rotated", true);
  const state = await withAudience(env, streamKey(name), result.state);
  const body = { ...state, ...(result.publishKey ? { publishKey: result.publishKey } : {}), ...(env.SRS_API_URL ? { kicking } : {}), ...notQueued(lost) };
  return jsonResponse(body, result.created ? 201 : 200);
}

/** Runs an undo step; if that fails too, the caller is told what is left to do. */
async function undo(step: () => Promise<unknown>, otherwise: StatusError): Promise<void> {
  try {
    await step();
  } catch (err) {
    console.error(JSON.stringify({ error: String(err), during: "undo after a failed catalogue write" }));
    throw otherwise;
  }
}

export async function getStream(request: IRequest, env: Env): Promise<Response> {
  const name = streamNameFrom(request.params, request.query);
  const state = await streamStub(env, name).state();
  if (!state) throw new StatusError(404, `stream ${streamKey(name)} does not exist`);
  return jsonResponse(await withAudience(env, streamKey(name), state));
}

export async function deleteStream(request: IRequest, env: Env): Promise<Response> {
  const name = streamNameFrom(request.params, request.query);
  // The object is revoked first: it is what the very next on_publish asks.
  const removed = await streamStub(env, name).remove();
  if (removed) await pushPolicy(env, name);
  // The catalogue only lists streams (a listing skips an entry whose object has no stream). Its entry not
  // deleted (KV takes one write per second per key; once more a second later), the stream is removed all the
  // same: its kicks are still queued (the object marked its publishers as kicked, and a repeated DELETE kicks
  // nobody), and the answer is a 503 saying what took effect; a repeated DELETE removes the entry, then 404.
  const uncatalogued = await retriedOnce(() => env.CATALOGUE.delete(CATALOGUE_PREFIX + streamKey(name))).then(
    () => false,
    (err: unknown) => {
      console.error(JSON.stringify({ error: String(err), during: "catalogue delete", stream: streamKey(name) }));
      return true;
    },
  );
  const unavailable = (what: string) => `stream catalogue (KV) unavailable: ${what}`;
  if (!removed) {
    if (uncatalogued) throw new StatusError(503, unavailable(`${streamKey(name)} does not exist, and what the catalogue holds of it could not be removed; repeat the DELETE`));
    throw new StatusError(404, `stream ${streamKey(name)} does not exist`);
  }
  // Its publisher and viewers are kicked on their edges (src/srs/kicks.ts).
  const kicking = env.SRS_API_URL ? [...(await kickPublishers(env, name, "stream deleted")), ...(await kickViewers(env, name, "stream deleted"))] : [];
  const lost = await reportOperatorEnded(env, kicking.map((k) => ({ ...k, streamKey: streamKey(name) })), "stream deleted", true);
  const answer = { deleted: streamKey(name), ...(env.SRS_API_URL ? { kicking } : {}), ...notQueued(lost) };
  if (uncatalogued) {
    const error = unavailable(`${streamKey(name)} was deleted (its key no longer works), but it is still in the catalogue; repeat the DELETE`);
    return jsonResponse({ error, ...answer }, 503);
  }
  return jsonResponse(answer);
}

/**
 * GET /admin/streams[?limit=][&cursor=][&vhost=][&prefix=]: the catalogue with each stream's
 * live state, `limit` (1..100, default 100) per page; each stream listed costs a call to its
 * object and, while the listing's budget lasts (listedAudiences), one to each of its viewer shards,
 * so callers ask only for what they show. `?prefix=` keeps streams whose "app/stream"
 * starts with it, in `?vhost=` (default __defaultVhost__): a KV list prefix, so it costs nothing
 * extra and pages like the full list. `?vhost=` alone lists that vhost; neither lists every vhost.
 */
export async function listStreams(request: IRequest, env: Env): Promise<Response> {
  const { limit, prefix, vhost } = request.query;
  if (limit !== undefined && !(typeof limit === "string" && /^[1-9][0-9]{0,2}$/.test(limit) && Number(limit) <= 100)) {
    throw new StatusError(400, 'query parameter "limit" must be an integer from 1 to 100');
  }
  if (prefix !== undefined && !(typeof prefix === "string" && /^([A-Za-z0-9._~-]{1,128}(\/[A-Za-z0-9._~-]{0,128})?)?$/.test(prefix))) {
    throw new StatusError(400, 'query parameter "prefix" must be the start of "app/stream": letters, digits and . _ ~ -, one "/" at most, 128 characters each side');
  }
  // The vhost is checked as on every other admin route; the name itself is only a placeholder.
  const scope = vhost === undefined && prefix === undefined ? "" : `${streamNameFrom({ app: "-", stream: "-" }, request.query).vhost}/${prefix ?? ""}`;
  // Longer than any stream key can be, it would also be longer than KV lists by.
  if (scope.length > STREAM_KEY_MAX) {
    throw new StatusError(400, `query parameter "prefix" with the vhost ("vhost/prefix", ${scope.length} characters) is longer than a stream's "vhost/app/stream" can be (${STREAM_KEY_MAX} characters)`);
  }
  const page = await cataloguePage(env.CATALOGUE, { prefix: scope, limit: limit === undefined ? 100 : Number(limit), cursor: pageCursor(request.query) });
  const states = await Promise.all(
    page.keys.map(async (k) => {
      const key = k.name.slice(CATALOGUE_PREFIX.length);
      const state = await streamStub(env, parseStreamKey(key)).state();
      return state && { key, state };
    }),
  );
  const streams = await listedAudiences(env, states.filter((s) => s !== null));
  return jsonResponse({ streams, ...(page.list_complete ? {} : { cursor: page.cursor }) });
}

/** GET /admin/streams/{app}/{stream}/events: the stream's last 100 decisions, newest first. */
export async function getStreamEvents(request: IRequest, env: Env): Promise<Response> {
  const name = streamNameFrom(request.params, request.query);
  const stub = streamStub(env, name);
  const state = await stub.state();
  if (!state) throw new StatusError(404, `stream ${streamKey(name)} does not exist`);
  const [own, sources] = await Promise.all([stub.events(), stub.eventSources()]);
  const { events, unreachable } = await allEvents(env, streamKey(name), sources, own, state.createdAt);
  return jsonResponse({ events, ...(unreachable.length > 0 ? { unreachable } : {}) });
}

/**
 * POST /admin/apps/{app}/tokens[?vhost=] {"ttl"?, "sub"?}: a play token for every stream of the app
 * (resource vhost/app/*: a season pass), streams created later included. Limits and revocations
 * still apply per stream.
 */
export async function mintAppToken(request: IRequest, env: Env): Promise<Response> {
  const { vhost, app } = streamNameFrom({ app: request.params.app, stream: "-" }, request.query);
  const { ttl, sub } = parseTokenRequest(await readJson(request), maxTokenTtlS(env));
  const signingKey = requiredSecret(env, "TOKEN_SIGNING_KEY", "cannot mint play tokens");
  const issuedAt = Math.floor(Date.now() / 1000);
  const expiresAt = issuedAt + ttl;
  const token = await signPlayToken({ vhost, app, stream: "*" }, expiresAt, signingKey, { sub, issuedAt, wholeApp: true });
  return jsonResponse({ token, resource: `${vhost}/${app}/*`, expiresAt: new Date(expiresAt * 1000).toISOString(), ...(sub ? { sub } : {}) }, 201);
}

/** POST /admin/streams/{app}/{stream}/tokens {"ttl"?, "sub"?}: a play token for that stream (404 if it does not exist). */
export async function mintToken(request: IRequest, env: Env): Promise<Response> {
  const name = streamNameFrom(request.params, request.query);
  const { ttl, sub } = parseTokenRequest(await readJson(request), maxTokenTtlS(env));
  const signingKey = requiredSecret(env, "TOKEN_SIGNING_KEY", "cannot mint play tokens");
  if (!(await streamStub(env, name).state())) throw new StatusError(404, `stream ${streamKey(name)} does not exist`);
  const issuedAt = Math.floor(Date.now() / 1000);
  const expiresAt = issuedAt + ttl;
  const token = await signPlayToken(name, expiresAt, signingKey, { sub, issuedAt });
  return jsonResponse({ token, expiresAt: new Date(expiresAt * 1000).toISOString(), ...(sub ? { sub } : {}) }, 201);
}

/** Servers one GET /admin/servers?server= may name. */
export const SERVERS_NAMED_MAX = 100;

/**
 * GET /admin/servers: every SRS server seen, with liveness and sessions held, from every registry
 * shard (and each one's viewer shard). With ?server=ID (repeated, at most SERVERS_NAMED_MAX): only
 * those, each asked of its own shards, so a page that shows a few publishers' devices does not
 * cost a call per server of the fleet.
 */
export async function listServers(request: IRequest, env: Env): Promise<Response> {
  const named = request.query.server;
  if (named !== undefined) {
    const ids = [...new Set(Array.isArray(named) ? named : [named])];
    if (ids.length > SERVERS_NAMED_MAX || ids.some((id) => id === "" || id.length > LIMITS.id.max)) {
      throw new StatusError(400, `query parameter "server" must name 1 to ${SERVERS_NAMED_MAX} server ids`);
    }
    const found: (ServerState | null)[] = await Promise.all(ids.map((id) => serverRegistry(env, id).state(id)));
    const servers = found.filter((s): s is ServerState => s !== null).sort((a, b) => a.serverId.localeCompare(b.serverId));
    return jsonResponse({ servers: await withViewerSessions(env, servers) });
  }
  const shards = await Promise.all(Array.from({ length: REGISTRY_SHARDS }, (_, i) => registryShard(env, i).list()));
  const servers = shards.flat().sort((a, b) => a.serverId.localeCompare(b.serverId));
  return jsonResponse({ servers: await withViewerSessions(env, servers) });
}

/** Servers as the admin API shows them: the registry counts publishers, each server's viewer shard its viewers. */
export async function withViewerSessions(env: Env, servers: ServerState[]): Promise<ServerState[]> {
  const viewers = await Promise.all(servers.map((s) => viewerShard(env, s.serverId).sessionCount().catch(() => 0)));
  return servers.map((s, i) => ({ ...s, sessions: s.sessions + viewers[i] }));
}

/**
 * Tells the stream's viewer shards its new policy (a PUT or a DELETE), so the
 * very next on_play follows it. A shard that cannot be reached now is pushed
 * to again from the stream's alarm until it is (the pending push is stored
 * with the change): logged, the admin call still succeeds.
 */
async function pushPolicy(env: Env, name: StreamName): Promise<void> {
  try {
    const unreached = await streamStub(env, name).pushPolicy(streamKey(name));
    if (unreached.length > 0) console.error(JSON.stringify({ error: "policy not pushed to every viewer shard", stream: streamKey(name), servers: unreached }));
  } catch (err) {
    console.error(JSON.stringify({ error: "policy not pushed to the viewer shards", stream: streamKey(name), detail: String(err) }));
  }
}

async function kickPublishers(env: Env, name: StreamName, why: string): Promise<KickPlanned[]> {
  if (!env.SRS_API_URL) return [];
  const sessions = await streamStub(env, name).publisherSessions();
  const kicking = await queueKicks(env, sessions.map((p) => ({ ...p, streamKey: streamKey(name), role: "publisher" as const, why })));
  await notKicked(env, name, sessions, kicking, STREAM_DELETED);
  return kicking;
}

/**
 * The stream marked the publishers it kicks at the admin call (their stop events then end them as
 * "operator"): those whose kicks could not be queued (their registry shard unreachable) are not kicked.
 * `action` names the admin call's marks (a rotation's new key hash, or STREAM_DELETED), the ones called off.
 */
async function notKicked(env: Env, name: StreamName, publishers: SessionId[], kicking: KickPlanned[], action: OperatorAction): Promise<void> {
  if (!env.SRS_API_URL) return;
  const left = publishers.filter((p) => !kicking.some((k) => k.role === "publisher" && k.serverId === p.serverId && k.clientId === p.clientId));
  if (left.length === 0) return;
  await streamStub(env, name).kicksNotQueued(left, action).catch((err) => {
    console.error(JSON.stringify({ error: "kicks not queued, not told to the stream", stream: streamKey(name), detail: String(err) }));
  });
}

async function kickViewers(env: Env, name: StreamName, why: string): Promise<KickPlanned[]> {
  const key = streamKey(name);
  const sources = await streamStub(env, name).eventSources();
  const viewers = await Promise.all(
    sources.map(async (serverId) => (await viewerShard(env, serverId).viewersOf(key).catch(() => [])).map((v) => ({ ...v, serverId }))),
  );
  return queueKicks(env, viewers.flat().map((v) => ({ ...v, streamKey: key, role: "viewer" as const, why })));
}

function streamStub(env: Env, name: StreamName) {
  return streamObject(env, streamKey(name));
}

/**
 * KV holds each stream's policy and the SHA-256 of its key, for listing and
 * for operators' own tooling. KV is eventually consistent (reads may be 60 s
 * stale), so hooks never consult it: decisions come from the stream's object.
 */
async function writeCatalogue(env: Env, state: StreamState, keyHash: string): Promise<void> {
  const { vhost, app, stream, maxViewers, playAuth, onDuplicatePublish, maxSessionsPerViewer, onExtraViewerSession, updatedAt } = state;
  const entry = { vhost, app, stream, maxViewers, playAuth, onDuplicatePublish, maxSessionsPerViewer, onExtraViewerSession, keyHash, updatedAt };
  await retriedOnce(() => env.CATALOGUE.put(CATALOGUE_PREFIX + streamKey(state), JSON.stringify(entry)));
}

/** A catalogue write: KV takes one write per second per key, which two quick calls on one stream can meet. Once more, a second later. */
async function retriedOnce(write: () => Promise<void>): Promise<void> {
  try {
    await write();
  } catch {
    await new Promise((resolve) => setTimeout(resolve, CATALOGUE_RETRY_MS));
    await write();
  }
}

const CATALOGUE_RETRY_MS = 1000;

/**
 * GET /admin/load?stream={app}/{stream}&servers=a,b: calls each object received
 * since it started, counted by the objects (src/platform/load.ts). Only when
 * the var LOAD_COUNTERS is "1", which `npm run bench` sets: else 404.
 */
export async function getLoad(request: IRequest, env: Env): Promise<Response> {
  if (env.LOAD_COUNTERS !== "1") throw new StatusError(404, "not found");
  const stream = queryParam(request.query, "stream") ?? "";
  const listed = queryParam(request.query, "servers");
  const servers = listed ? listed.split(",") : [];
  const [app, name, ...more] = stream.split("/");
  if (stream && (!app || !name || more.length > 0)) throw new StatusError(400, 'query parameter "stream" must be {app}/{stream}');
  const counts = await Promise.all([
    stream ? streamStub(env, streamNameFrom({ app, stream: name }, request.query)).loadCount() : Promise.resolve(NOT_COUNTED),
    Promise.all(servers.map((id) => viewerShard(env, id).loadCount())),
    Promise.all(Array.from({ length: REGISTRY_SHARDS }, (_, i) => registryShard(env, i).loadCount())),
  ]);
  const [streamCount, shardCounts, registryCounts] = counts;
  const all = [streamCount, ...shardCounts, ...registryCounts];
  return jsonResponse({
    stream: streamCount.calls,
    streamMethods: streamCount.methods,
    shards: Object.fromEntries(servers.map((id, i) => [id, shardCounts[i].calls])),
    registry: registryCounts.map((c) => c.calls),
    // Objects started again while their isolate lived (the counts survive that); a new `isolate`
    // (locally the Worker's and its objects' own) means every count began again.
    restarts: all.reduce((n, c) => n + Math.max(0, c.starts - 1), 0),
    isolate: isolateOfCounts(),
  });
}
