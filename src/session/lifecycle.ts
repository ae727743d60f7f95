/**
 * The life of a session, in one place: start, stop, close, and ending by hand.
 * Two objects must agree about each session: the stream's object, which
 * decides and counts, and its server's registry shard, whose client index is
 * how on_close (which names no stream), restarts and operators find it. They
 * are written separately, so every step below says what it does when one of
 * the two writes fails: the rule is that an index entry exists for every
 * session a stream holds (an entry too many is harmless; one too few leaves a
 * ghost nobody can find).
 */
import type { Env } from "../env";
import type { IndexedSession } from "../server/registry";
import type { Role, SessionId, StreamHook } from "../srs/hook";
import type { EndedSession } from "../stream/object";
import { Denials, type Decision, type PlayToken } from "../stream/rules";
import { callObject } from "../platform/retry";
import { serverRegistry, streamObject } from "../object-access";

type StreamStub = ReturnType<typeof streamObject>;
type RegistryStub = ReturnType<typeof serverRegistry>;

/** What the Worker established about a start hook before the stream decides. */
export type Credentials = { role: "publisher"; keyHash: string | null } | { role: "viewer"; token: PlayToken };

/**
 * on_publish / on_play. The index entry is written alongside the decision,
 * not after it, so an admitted client waits for one round trip, not two.
 * Compensations: an admission whose index write failed is undone (and the
 * hook fails: SRS refuses the client); an admission of a process its
 * server's restart already replaced is undone and refused (4006); a denial's
 * entry is dropped again.
 *
 * Object calls go through callObject (src/platform/retry.ts): a platform
 * error marked retryable (never overloaded) is retried on a fresh stub, at
 * most 3 attempts within 2 s; what still fails makes the hook fail closed,
 * its reason naming the object ("stream object unavailable (overloaded):
 * refused"). Each call is safe to repeat: publish/play of a session the
 * stream already holds is "allow" without a second admission (rules.ts:
 * alreadyPublishing / alreadyViewing), a repeated denial only counts one more
 * failed guess against the ip (stricter, never looser); track is an upsert
 * and moves the epoch at most once (a repeat finds the process current);
 * end and forget of what is gone change nothing.
 */
export async function start(env: Env, hook: StreamHook, streamKey: string, credentials: Credentials, guessLimit: () => number): Promise<Decision> {
  const { serverId, serviceId, clientId } = hook.session;
  const role = credentials.role;
  const fields = { action: hook.action, stream: streamKey, server: serverId, client: clientId };
  const stream = <T>(call: (s: StreamStub) => Promise<T>) => callObject("stream object", () => streamObject(env, streamKey), call, "refused", fields);
  const server = <T>(call: (r: RegistryStub) => Promise<T>) => callObject("registry", () => serverRegistry(env, serverId), call, "refused", fields);
  const limit = guessLimit(); // read here: a malformed setting is the Worker's 500 naming it, not an object failure
  // Names this hook to the stream, so that an undo also voids attempts of it still running there.
  const hookId = crypto.randomUUID();
  const tracked = server((r) => r.track(serverId, serviceId, clientId, { streamKey, role }));
  let attempts = 0;
  const decided = stream((s): Promise<Decision> => {
    attempts++;
    if (credentials.role === "publisher") return s.publish(hook.session, hook.ip, credentials.keyHash, limit, hookId);
    return s.play(hook.session, hook.ip, credentials.token, limit, hookId);
  });
  const [decisionResult, trackResult] = await Promise.allSettled([decided, tracked]);
  if (decisionResult.status === "rejected") {
    // The hook fails, so SRS refuses the client. If an attempt's answer was lost, that attempt
    // may have admitted it: undone, as far as the stream can be reached (else on_close, a
    // restart or an operator can still end it: the index entry was written alongside).
    if (attempts > 1) {
      await stream((s) => s.end(hook.session, role, { action: hook.action, ip: hook.ip, reason: "admission undone: the decision's answer was lost", voidHook: hookId })).catch(() => {});
    }
    throw decisionResult.reason;
  }
  const decision = decisionResult.value;
  if (trackResult.status === "rejected") {
    // After a retry, "allow" without "admit" may be our own first attempt's admission whose answer was lost.
    if (decision.allow && (decision.admit || attempts > 1)) {
      await stream((s) => s.end(hook.session, role, { action: hook.action, ip: hook.ip, reason: "admission undone: server index unavailable", voidHook: hookId }));
    }
    throw trackResult.reason;
  }
  if (trackResult.value === "retired") {
    // A hook from a process its server's restart already replaced, still in flight: whatever it was granted would be a ghost.
    await stream((s) => s.end(hook.session, role, { action: hook.action, ip: hook.ip, reason: Denials.retiredProcess.reason, voidHook: hookId }));
    return { allow: false, denial: Denials.retiredProcess };
  }
  if (!decision.allow) {
    // A denial never concerns a session live in this role (rules.ts). Awaited: left to
    // waitUntil, these piled up behind a flood of denials and stalled answers for seconds.
    await server((r) => r.forget(serverId, serviceId, clientId, [{ streamKey, role }]));
  }
  return decision;
}

/**
 * on_unpublish / on_stop. The stream ends the session first; the index entry
 * goes only once it has. SRS never retries a stop event: if this one fails
 * half-way, the entry is still there for on_close, a restart or an operator.
 * SRS sends a client's hooks one after another (each waits for our answer),
 * so no newer session of the same client can slip in between the two writes.
 * Retried as in start(): end and forget are idempotent.
 */
export async function stop(env: Env, hook: StreamHook, streamKey: string, role: Role): Promise<number> {
  const { serverId, serviceId, clientId } = hook.session;
  const fields = { action: hook.action, stream: streamKey, server: serverId, client: clientId };
  const ended = await callObject(
    "stream object",
    () => streamObject(env, streamKey),
    (s) => s.end(hook.session, role, { action: hook.action, ip: hook.ip }),
    "stop not recorded",
    fields,
  );
  await callObject(
    "registry",
    () => serverRegistry(env, serverId),
    (r) => r.forget(serverId, serviceId, clientId, [{ streamKey, role }]),
    "stop recorded, index entry kept",
    fields,
  );
  return ended;
}

/**
 * on_close names no stream: the index says which streams the client holds;
 * each is ended, and the entries of those that confirmed are dropped. A
 * stream that could not be reached keeps its entry, and the hook fails.
 * Retried as in start(): held only reads, end and forget are idempotent.
 */
export async function close(env: Env, session: SessionId): Promise<number> {
  const { serverId, serviceId, clientId } = session;
  const fields = { action: "on_close", server: serverId, client: clientId };
  const registry = <T>(call: (r: RegistryStub) => Promise<T>, outcome: string) =>
    callObject("registry", () => serverRegistry(env, serverId), call, outcome, fields);
  const held = await registry((r) => r.held(serverId, serviceId, clientId), "close not recorded");
  const results = await Promise.allSettled(
    held.map((h) =>
      callObject("stream object", () => streamObject(env, h.streamKey), (s) => s.end(session, h.role, { action: "on_close" }), "close not recorded", {
        ...fields,
        stream: h.streamKey,
      }),
    ),
  );
  const ended = held.filter((_, i) => results[i].status === "fulfilled");
  if (ended.length > 0) await registry((r) => r.forget(serverId, serviceId, clientId, ended), "close recorded, index entries kept");
  const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) throw failed.reason;
  return ended.length;
}

/**
 * An operator ends a stream's sessions (all, or one server's and/or one
 * client id's). Same order as a stop; then, since an operator's call may
 * overlap a client that started again with the same ids, the stream is asked
 * what it holds now, and that is indexed again.
 */
export async function endStreamSessions(env: Env, streamKey: string, filter: { serverId?: string; clientId?: string }): Promise<EndedSession[] | null> {
  const stream = streamObject(env, streamKey);
  const ended = await stream.endSessions(filter);
  if (ended.length === 0 && !(await stream.state())) return null;
  const byServer = new Map<string, IndexedSession[]>();
  for (const s of ended) {
    byServer.set(s.serverId, [...(byServer.get(s.serverId) ?? []), { streamKey, role: s.role, serviceId: s.serviceId, clientId: s.clientId }]);
  }
  await Promise.all([...byServer].map(([serverId, sessions]) => serverRegistry(env, serverId).forgetSessions(serverId, sessions)));
  await reindexStartedAgain(env, streamKey, ended);
  return ended;
}

/** Streams told per call when an operator ends a server's sessions: bounded work per request. */
export const SERVER_SESSIONS_PER_CALL = 500;

export interface ServerSessionsEnded {
  ended: IndexedSession[];
  remaining: number;
  failed: number;
}

/**
 * An operator ends every session a server's clients hold, whatever process
 * of the server they belong to, SERVER_SESSIONS_PER_CALL at most per call.
 * Null for a server never heard of.
 */
export async function endServerSessions(env: Env, serverId: string): Promise<ServerSessionsEnded | null> {
  const registry = serverRegistry(env, serverId);
  if (!(await registry.state(serverId))) return null;
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
  await registry.forgetSessions(serverId, done);
  const byStream = new Map<string, EndedSession[]>();
  for (const d of done) {
    byStream.set(d.streamKey, [...(byStream.get(d.streamKey) ?? []), { role: d.role, serverId, serviceId: d.serviceId, clientId: d.clientId }]);
  }
  await Promise.all([...byStream].map(([streamKey, sessions]) => reindexStartedAgain(env, streamKey, sessions)));
  return { ended: done, remaining: all.length - done.length, failed: batch.length - done.length };
}

/** Indexes again whatever of `ended` the stream holds now (a client that started again meanwhile). */
async function reindexStartedAgain(env: Env, streamKey: string, ended: EndedSession[]): Promise<void> {
  if (ended.length === 0) return;
  const held = await streamObject(env, streamKey).heldSessions(ended);
  await Promise.all(held.map((s) => serverRegistry(env, s.serverId).track(s.serverId, s.serviceId, s.clientId, { streamKey, role: s.role })));
}
