/**
 * The life of a session, in one place: start, stop, close, and ending by hand.
 *
 * Viewers live in the viewer shard of their SRS server (src/viewers/shard.ts):
 * one object per server holds its viewers of every stream and admits them
 * within leases of slots granted by each stream's object. So an on_play or an
 * on_stop is one call, to one object, near the server that sent it; on_close
 * finds the client's viewer sessions there too (one shard per server is also
 * the client index for viewers).
 *
 * Publishers live in the stream's object, as the authority for "one publisher
 * per stream", and are indexed in their server's registry shard, because
 * on_close names no stream and restarts must find them. Those two writes are
 * separate, so every step below says what it does when one of them fails: the
 * rule is that an index entry exists for every publisher a stream holds (an
 * entry too many is harmless; one too few leaves a ghost nobody can find).
 * A takeover (onDuplicatePublish "replace") writes the new publisher's entry
 * from the stream itself before it kicks the old one (src/stream/publisher-api.ts)
 * and says so (`indexed`): that admission then stands even if the Worker's own
 * write beside it failed, since undoing it would leave the stream with nobody.
 * A retried call's refusal voids the hook (an earlier attempt may still be
 * deciding), and index entries carry the hook that wrote them, so that a
 * voided hook's late cleanup removes only its own.
 *
 * What ends sessions without a hook of theirs happens elsewhere, by design
 * in the objects that hold them: a restart, a silence or SESSION_GRACE_S is
 * decided by the registry (src/server/epochs.ts, ProcessEpochs.acknowledgeEpoch) and
 * reaches the holders as notices (StreamObject.applyStatus → SessionBook.apply
 * for publishers, ViewerShard.applyStatus for viewers); a viewer's slot comes
 * from a lease (src/viewers/shard-leases.ts asks, src/stream/slot-rounds.ts
 * grants and recalls); a ghost of a lost stop is ended when a refusal would
 * rest on it (src/srs/ghosts.ts).
 *
 * Object calls go through callObject (src/platform/retry.ts): a platform
 * error marked retryable (never overloaded) is retried on a fresh stub, at
 * most 3 attempts within 2 s; and all the calls of one hook share its
 * Deadline (HOOK_DEADLINE_MS, 10 s), so an object that neither answers nor
 * fails holds no hook near SRS's 30 s. What still fails, or does not answer
 * in time, makes the hook fail closed, its reason naming the object
 * ("viewer shard unavailable (overloaded): refused", "… (no answer in
 * time): refused"); an admission it may have made is undone (the undo gets
 * UNDO_WAIT_MS even past the deadline). Each call is safe to repeat: a start
 * of a session already held is "allow" without a second admission
 * (rules.ts: alreadyPublishing, and the shard's own check), a repeated
 * denial only counts one more failed guess against the ip (stricter, never
 * looser); track is an upsert and moves the epoch at most once; end and
 * forget of what is gone change nothing.
 */
import type { Env } from "../env";
import type { IndexedSession } from "../server/registry";
import type { Role, SessionId, StartHook, StreamHook } from "../srs/hook";
import type { EndedSession } from "../stream/object";
import { Denials, TAKEOVER_FAILED, type Decision, type PlayToken } from "../stream/rules";
import { callObject, Deadline, ObjectCallFailed, UNDO_WAIT_MS, unreachableFailure, withRetry, type Unreachable } from "../platform/retry";
import { serverRegistry, streamObject, viewerShard } from "../object-access";
import type { EndedViewer } from "../viewers/shard";
import type { Place } from "../viewers/lease";

type StreamStub = ReturnType<typeof streamObject>;
type RegistryStub = ReturnType<typeof serverRegistry>;
type ShardStub = ReturnType<typeof viewerShard>;

/** What the Worker established about a start hook before it is decided. */
export type Credentials = { role: "publisher"; keyHash: string | null } | { role: "viewer"; token: PlayToken };

/**
 * on_publish / on_play. Both name the hook (hookId), so that an undo also
 * voids attempts of it still running in the object: if an attempt's answer
 * was lost to a platform error, that attempt may have admitted the client,
 * and the hook fails (SRS refuses the client), so the admission is undone.
 */
export async function start(env: Env, hook: StartHook, streamKey: string, credentials: Credentials, guessLimit: () => number, place: Place): Promise<Decision> {
  const limit = guessLimit(); // read here: a malformed setting is the Worker's 500 naming it, not an object failure
  if (credentials.role === "viewer") return play(env, hook, streamKey, credentials.token, limit, place);
  return publish(env, hook, streamKey, credentials.keyHash, limit);
}

/** The one object call of an on_play: the viewer shard of the hook's server decides (src/viewers/admission.ts). */
async function play(env: Env, hook: StartHook, streamKey: string, token: PlayToken, guessLimit: number, place: Place): Promise<Decision> {
  const { serverId, clientId } = hook.session;
  const fields = { action: hook.action, stream: streamKey, server: serverId, client: clientId };
  const deadline = new Deadline();
  const shard = <T>(call: (s: ShardStub) => Promise<T>, withinMs = deadline.left()) =>
    callObject("viewer shard", () => viewerShard(env, serverId), call, "refused", fields, withinMs);
  const hookId = crypto.randomUUID();
  let attempts = 0;
  let result: Decision | Unreachable;
  try {
    result = await shard((s): Promise<Decision | Unreachable> => {
      attempts++;
      return s.play({ streamKey, session: hook.session, ip: hook.ip, token, guessLimit, hookId, place, webrtc: hook.webrtc });
    });
  } catch (err) {
    if (mayHaveRun(err, attempts)) {
      const cause = { action: hook.action, ip: hook.ip, reason: "admission undone: the decision's answer was lost", voidHook: hookId };
      await shard((s) => s.stop(streamKey, hook.session, cause), deadline.left(UNDO_WAIT_MS)).catch(() => {});
    }
    throw err;
  }
  // The shard could not reach the registry or the stream it needed: nothing was admitted; the answer names that object.
  if ("unreachable" in result) throw unreachableFailure(result, "refused", fields);
  return result;
}

/**
 * An on_publish. The index entry is written alongside the decision, not after
 * it, so an admitted client waits for one round trip, not two.
 * Compensations: an admission whose index write failed is undone (and the
 * hook fails: SRS refuses the client); an admission of a process its
 * server's restart already replaced is undone and refused (4006); a denial's
 * entry is dropped again.
 */
async function publish(env: Env, hook: StartHook, streamKey: string, keyHash: string | null, guessLimit: number): Promise<Decision> {
  const { serverId, serviceId, clientId } = hook.session;
  const fields = { action: hook.action, stream: streamKey, server: serverId, client: clientId };
  const deadline = new Deadline();
  const stream = <T>(call: (s: StreamStub) => Promise<T>, withinMs = deadline.left()) =>
    callObject("stream object", () => streamObject(env, streamKey), call, "refused", fields, withinMs);
  const server = <T>(call: (r: RegistryStub) => Promise<T>, withinMs = deadline.left()) =>
    callObject("registry", () => serverRegistry(env, serverId), call, "refused", fields, withinMs);
  const hookId = crypto.randomUUID();
  const tracked = server((r) => r.track(serverId, serviceId, clientId, { streamKey, role: "publisher" }, hookId));
  let attempts = 0;
  const decided = stream((s): Promise<Decision> => {
    attempts++;
    return s.publish(hook.session, hook.ip, keyHash, guessLimit, hookId, deadline.left());
  });
  // An undo voids an attempt that may still admit: its steps get what is left of the deadline, and
  // UNDO_WAIT_MS together at least (so SRS still has its answer within HOOK_DEADLINE_MS + UNDO_WAIT_MS).
  let undoWindow: Deadline | null = null;
  const undoLeft = () => (undoWindow ??= new Deadline(deadline.left(UNDO_WAIT_MS))).left();
  const undo = (reason: string) => stream((s) => s.end(hook.session, { action: hook.action, ip: hook.ip, reason, voidHook: hookId }), undoLeft());
  // The index entry this hook wrote goes (the Worker's, or a takeover's own), and a write of it still on its way writes none.
  const forgetOwnEntry = () => server((r) => r.forget(serverId, serviceId, clientId, [{ streamKey, role: "publisher" }], hookId), undoLeft());
  const [decisionResult, trackResult] = await Promise.allSettled([decided, tracked]);
  if (decisionResult.status === "rejected") {
    // As far as the stream can be reached (else on_close, a restart or an operator can still end it: the index entry was written alongside).
    if (mayHaveRun(decisionResult.reason, attempts)) {
      await undo("admission undone: the decision's answer was lost")
        // Undone, and the stream holds no session of the client (an earlier hook's, which an undo leaves): the index entry
        // goes (the Worker's, and one a takeover's stream wrote before its kick), and a track still on its way writes none.
        .then(() => stream((s) => s.heldSessions([{ role: "publisher", serverId, serviceId, clientId }]), undoLeft()))
        .then((held) => (held.length === 0 ? forgetOwnEntry() : undefined))
        .catch(() => {});
    }
    throw decisionResult.reason;
  }
  const decision = decisionResult.value;
  if (!decision.allow && attempts > 1) {
    // A retried call's refusal: an earlier attempt whose answer was lost may still be deciding (in a takeover: about to
    // kick the old publisher for a client SRS now refuses, and admit it, after the entry was dropped below). The hook is
    // voided at the stream (an admission it made ends) and at the registry (its entry goes; a write still on its way writes none).
    await undo(`refused (${decision.denial.code}): an earlier attempt of this hook admits nothing`)
      .then(forgetOwnEntry)
      .catch(() => {});
    if (trackResult.status === "rejected") throw trackResult.reason;
    return decision;
  }
  // A takeover's stream wrote this hook's index entry itself before kicking the old publisher: the admission
  // stands without the Worker's write (undoing it would leave the old publisher kicked for nobody).
  if (trackResult.status === "rejected" && !(decision.allow && decision.indexed)) {
    // SRS refuses the client (the hook fails), so whatever the stream allowed ends: an admission, our own
    // first attempt's whose answer was lost ("already live" after a retry), or a repeat of a live session
    // (the stream now counts it as this hook's, so an undo of an older hook of the client would leave it).
    if (decision.allow) await undo("admission undone: server index unavailable");
    // The stream holds nothing of this hook now: its index entry goes (a refused takeover's stream wrote
    // one before its kick), and a track still on its way writes none. Other denials wrote nothing.
    if (decision.allow || decision.denial.code === TAKEOVER_FAILED) {
      await forgetOwnEntry().catch(() => {});
    }
    throw trackResult.reason;
  }
  if (trackResult.status === "rejected") return decision;
  if (trackResult.value === "retired") {
    // A hook from a process its server's restart already replaced, still in flight: whatever it was granted would be a ghost.
    await undo(Denials.retiredProcess.reason);
    return { allow: false, denial: Denials.retiredProcess };
  }
  if (!decision.allow) {
    // A denial never concerns a session live in this role (rules.ts). Awaited: left to
    // waitUntil, these piled up behind a flood of denials and stalled answers for seconds.
    await server((r) => r.forget(serverId, serviceId, clientId, [{ streamKey, role: "publisher" }]));
  }
  return decision;
}

/**
 * Could a failed start call have admitted the client? Yes after a retry (an
 * earlier attempt's answer was lost), and also after a single attempt unless
 * the platform refused it as overloaded (it never ran): one slow attempt that
 * admitted and then lost its answer fails like any other. The undo is
 * idempotent, so undoing what never happened costs only its call.
 */
function mayHaveRun(err: unknown, attempts: number): boolean {
  return attempts > 1 || !(err instanceof ObjectCallFailed && err.errorClass === "overloaded");
}

/**
 * on_stop: one call to the viewer shard. on_unpublish: the stream ends the
 * session first; the index entry goes only once it has. SRS never retries a
 * stop event: if this one fails half-way, the entry is still there for
 * on_close, a restart or an operator. SRS sends a client's hooks one after
 * another (each waits for our answer), so no newer session of the same
 * client can slip in between the two writes.
 */
export async function stop(env: Env, hook: StreamHook, streamKey: string, role: Role): Promise<number> {
  const { serverId, serviceId, clientId } = hook.session;
  const fields = { action: hook.action, stream: streamKey, server: serverId, client: clientId };
  const cause = { action: hook.action, ip: hook.ip };
  const deadline = new Deadline();
  if (role === "viewer") {
    return callObject("viewer shard", () => viewerShard(env, serverId), (s) => s.stop(streamKey, hook.session, cause), "stop not recorded", fields, deadline.left());
  }
  const ended = await callObject("stream object", () => streamObject(env, streamKey), (s) => s.end(hook.session, cause), "stop not recorded", fields, deadline.left());
  await callObject(
    "registry",
    () => serverRegistry(env, serverId),
    (r) => r.forget(serverId, serviceId, clientId, [{ streamKey, role }]),
    "stop recorded, index entry kept",
    fields,
    // The stream has ended the session: dropping its entry is worth UNDO_WAIT_MS past the deadline.
    deadline.left(UNDO_WAIT_MS),
  );
  return ended;
}

/**
 * on_close names no stream: the client's viewer sessions are in its server's
 * shard; the index says which streams it publishes, each is ended, and the
 * entries of those that confirmed are dropped. A stream or shard that could
 * not be reached keeps what it holds, and the hook fails.
 */
export async function close(env: Env, session: SessionId): Promise<number> {
  const { serverId, serviceId, clientId } = session;
  const fields = { action: "on_close", server: serverId, client: clientId };
  const deadline = new Deadline();
  const registry = <T>(call: (r: RegistryStub) => Promise<T>, outcome: string, withinMs = deadline.left()) =>
    callObject("registry", () => serverRegistry(env, serverId), call, outcome, fields, withinMs);
  // Settled at once: a shard that fails while the registry is asked must not leave a rejection unhandled.
  const viewing = settled(callObject("viewer shard", () => viewerShard(env, serverId), (s) => s.close(session), "close not recorded", fields, deadline.left()));
  const held = (await registry((r) => r.held(serverId, serviceId, clientId), "close not recorded")).filter((h) => h.role === "publisher");
  const results = await Promise.allSettled(
    held.map((h) =>
      callObject("stream object", () => streamObject(env, h.streamKey), (s) => s.end(session, { action: "on_close" }), "close not recorded", { ...fields, stream: h.streamKey }, deadline.left()),
    ),
  );
  const ended = held.filter((_, i) => results[i].status === "fulfilled");
  // The streams that ended their sessions: their entries go (worth UNDO_WAIT_MS past the deadline).
  const forgotten = ended.length > 0 ? registry((r) => r.forget(serverId, serviceId, clientId, ended), "close recorded, index entries kept", deadline.left(UNDO_WAIT_MS)) : null;
  const [viewers, forgot] = await Promise.all([viewing, settled(forgotten)]);
  // SRS hears of the first failure in the order of the work: a stream that could not end its session, then the rest.
  const failed = [...results, viewers, forgot].find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) throw failed.reason;
  return ended.length + (viewers as PromiseFulfilledResult<number>).value;
}

/**
 * An operator ends a stream's sessions (all, or one server's and/or one
 * client id's): the publishers at the stream (same order as a stop; then,
 * since an operator's call may overlap a client that published again with the
 * same ids, the stream is asked what it holds now, and that is indexed
 * again), the viewers at each shard that holds some. What ended is returned even when a later step fails
 * (its events and kicks are due all the same); `failed` names the viewer shards that could not be asked
 * (their viewers still stand: a repeated call ends them).
 */
export async function endStreamSessions(
  env: Env,
  streamKey: string,
  filter: { serverId?: string; clientId?: string },
): Promise<{ ended: EndedSession[]; failed: string[] } | null> {
  const stream = streamObject(env, streamKey);
  const state = await stream.state();
  if (!state) return null;
  // One call id for every attempt of each call: a retry whose first answer was lost gets that answer (what it
  // ended is what is kicked and reported), not the nothing left to end (src/platform/kept-answers.ts).
  const callId = crypto.randomUUID();
  const ended = await withRetry(() => streamObject(env, streamKey), (s) => s.endSessions(filter, callId));
  const byServer = new Map<string, IndexedSession[]>();
  for (const s of ended) {
    byServer.set(s.serverId, [...(byServer.get(s.serverId) ?? []), { streamKey, role: s.role, serviceId: s.serviceId, clientId: s.clientId }]);
  }
  // The publishers are ended for good: an index entry left (a registry shard unreachable) only counts them in
  // GET /admin/servers until a restart or SERVER_RETENTION_S cleans it; the call goes on to report them.
  // Forgotten first, then what the stream holds again is indexed again (a forget deletes whatever matches).
  const forgotten = await Promise.allSettled([...byServer].map(([serverId, sessions]) => serverRegistry(env, serverId).forgetSessions(serverId, sessions)));
  const reindexed = await Promise.allSettled([reindexStartedAgain(env, streamKey, ended)]);
  for (const r of [...forgotten, ...reindexed]) {
    if (r.status === "rejected") console.error(JSON.stringify({ error: "index not updated after an operator's end", stream: streamKey, detail: String(r.reason) }));
  }
  const scope = [filter.serverId && `server ${filter.serverId}`, filter.clientId && `client ${filter.clientId}`].filter(Boolean).join(", ");
  const reason = `ended by operator${scope ? ` (${scope})` : ""}`;
  const shards = state.shards.map((s) => s.serverId).filter((id) => filter.serverId === undefined || id === filter.serverId);
  const failed: string[] = [];
  const viewers = await Promise.all(shards.map(async (serverId) => {
    try {
      const gone = await withRetry(() => viewerShard(env, serverId), (shard) => shard.endSessions(streamKey, filter.clientId, reason, callId));
      return gone.map((v): EndedSession => ({ role: "viewer", serverId, serviceId: v.serviceId, clientId: v.clientId }));
    } catch (err) {
      console.error(JSON.stringify({ error: "viewer shard unreachable: its viewers not ended", server: serverId, stream: streamKey, detail: String(err) }));
      failed.push(serverId);
      return [];
    }
  }));
  return { ended: [...ended, ...viewers.flat()], failed: failed.sort() };
}

/** A promise's outcome, as Promise.allSettled gives it, handled from the start. */
function settled<T>(p: Promise<T> | null): Promise<PromiseSettledResult<T | null>> {
  return Promise.allSettled([p]).then(([r]) => r);
}

/** Sessions ended per call when an operator ends a server's sessions: bounded work per request. */
export const SERVER_SESSIONS_PER_CALL = 500;

export interface ServerSessionsEnded {
  ended: IndexedSession[];
  remaining: number;
  failed: number;
}

/**
 * An operator ends every session a server's clients hold, whatever process
 * of the server they belong to, SERVER_SESSIONS_PER_CALL at most per call:
 * its publishers (through the index), then its viewers (in its shard).
 * Null for a server never heard of.
 */
export async function endServerSessions(env: Env, serverId: string): Promise<ServerSessionsEnded | null> {
  const registry = serverRegistry(env, serverId);
  if (!(await registry.state(serverId))) return null;
  const reason = `ended by operator (all sessions of server ${serverId})`;
  const all = await registry.sessionsOf(serverId);
  const batch = all.slice(0, SERVER_SESSIONS_PER_CALL);
  const results = await Promise.allSettled(
    batch.map((s) => streamObject(env, s.streamKey).endByOperator({ serverId, serviceId: s.serviceId, clientId: s.clientId }, reason)),
  );
  const done = batch.filter((_, i) => results[i].status === "fulfilled");
  await registry.forgetSessions(serverId, done);
  // Only what a stream ended is answered (and kicked, and reported as ended by the operator): an index entry of a
  // session that had ended already (a restart's notice not delivered yet, a stop whose index cleanup failed) goes
  // all the same, but that session was not the operator's to end.
  const ended = batch.filter((_, i) => results[i].status === "fulfilled" && (results[i] as PromiseFulfilledResult<number>).value > 0);
  const byStream = new Map<string, EndedSession[]>();
  for (const d of done) {
    byStream.set(d.streamKey, [...(byStream.get(d.streamKey) ?? []), { role: d.role, serverId, serviceId: d.serviceId, clientId: d.clientId }]);
  }
  await Promise.all([...byStream].map(([streamKey, sessions]) => reindexStartedAgain(env, streamKey, sessions)));
  const callId = crypto.randomUUID(); // as in endStreamSessions
  // What the streams ended is answered (and kicked) even when the shard cannot be reached: those publishers are
  // gone from the accounting and the index, and a repeated call would find nothing left to end. The shard counts
  // as one more failure (its viewers still stand: a repeated call ends them).
  let viewers: { ended: EndedViewer[]; remaining: number } = { ended: [], remaining: 0 };
  let shardFailed = 0;
  try {
    viewers = await withRetry(() => viewerShard(env, serverId), (shard) => shard.endAll(SERVER_SESSIONS_PER_CALL - batch.length, reason, callId));
  } catch (err) {
    console.error(JSON.stringify({ error: "viewer shard unreachable: its viewers not ended", server: serverId, detail: String(err) }));
    shardFailed = 1;
  }
  return {
    ended: [...ended, ...viewers.ended.map((v): IndexedSession => ({ ...v, role: "viewer" }))],
    remaining: all.length - done.length + viewers.remaining,
    failed: batch.length - done.length + shardFailed,
  };
}

/** Indexes again whatever of `ended` the stream holds now (a client that published again meanwhile). */
async function reindexStartedAgain(env: Env, streamKey: string, ended: EndedSession[]): Promise<void> {
  if (ended.length === 0) return;
  const held = await streamObject(env, streamKey).heldSessions(ended);
  await Promise.all(held.map((s) => serverRegistry(env, s.serverId).track(s.serverId, s.serviceId, s.clientId, { streamKey, role: s.role })));
}
