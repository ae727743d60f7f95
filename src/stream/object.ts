import { DurableObject } from "cloudflare:workers";
import type { Env } from "../env";
import { KeptAnswers } from "../platform/kept-answers";
import { type NoticeAnswer, type ProcessStatus } from "../server/registry";
import { callsOf, countCalls, type LoadCount } from "../platform/load";
import { HOOK_DEADLINE_MS } from "../platform/retry";
import type { SessionId } from "../srs/hook";
import { AuthFailures } from "./auth-failures";
import { DecisionLog, type StreamEvent } from "./decision-log";
import type { StreamName } from "./name";
import { decideToken, Denials, tokenSub, type Decision, type PlayToken, type StreamPolicy } from "./rules";
import { Revocations } from "./revocations";
import { PolicyPushes } from "./policy-pushes";
import { ShardPolicy } from "./shard-policy";
import { StreamSettings, type CandidateKey, type PolicyChange } from "./settings";
import { streamState, type StreamState } from "./state";
import { SessionBook, type EndedSession, type Publisher } from "./sessions";
import { PublisherApi, STREAM_DELETED, type OperatorAction } from "./publisher-api";
import { LivenessRounds } from "./liveness-rounds";
import { VoidedHooks } from "../session/voided-hooks";
import { PublishAttempts, sessionKey } from "./publish-attempts";
import { PublisherAdmission, type PublisherParts } from "./publisher-admission";
import { PublisherEnds, type EndCause } from "./publisher-ends";
import { DecisionRecords } from "./decision-records";
import { LeaseBook } from "./leases";
import { SlotRounds } from "./slot-rounds";
import { AlarmSchedule } from "./alarm-schedule";
import { isLeave, type LeaseAnswer, type LeaseReport, type Revocation } from "../viewers/lease";
import { StreamActivity } from "../usage/stream-activity";
import type { HourUsage } from "../usage/book";
import type { WebhookEvent } from "../events/event";
import { iso } from "../usage/report";

export type { StreamEvent } from "./decision-log";
export { PUSH_RETRY_MS } from "./shard-policy";
export type { EndedSession, Publisher } from "./sessions";
export type { EndCause } from "./publisher-ends";
export type { CandidateKey, PolicyChange } from "./settings";
export { audienceOf, type StreamState } from "./state";

export interface ConfigureResult {
  created: boolean;
  state: StreamState;
  /** For the KV catalogue only; never sent to admin clients. */
  keyHash: string;
  /** Plaintext, present only when the key was created or rotated by this call. */
  publishKey?: string;
  /** The hash this call's rotation replaced, so that a caller who cannot deliver the new key can put it back. */
  replacedKeyHash?: string;
  /** The publisher sessions at the moment of a rotation: they used the old key (they are kicked). */
  rotatedPublishers?: SessionId[];
}

const SCHEMA = `
  ${StreamSettings.schema}
  ${PolicyPushes.schema}
  ${SessionBook.schema}
  ${LeaseBook.schema}
  ${AuthFailures.schema}
  ${DecisionLog.schema}
  ${Revocations.schema}`;

/**
 * One object per stream (vhost/app/stream) holds its settings, its publisher
 * sessions and its viewer budget.
 *
 * Every decision is synchronous from the read of the state to the write of
 * the result: SQLite calls on ctx.storage.sql do not yield, so no other hook
 * can interleave. That is what makes "exactly one publisher" and "the slots
 * leased to the viewer shards never exceed the cap" hold without any lock of
 * our own.
 *
 * This class is the object's RPC surface and its wiring; the work is done by:
 * - a publisher admitted: `publish`, in PublisherAdmission
 *   (publisher-admission.ts, with rules.ts decidePublish); ended: `end`, in
 *   PublisherEnds (publisher-ends.ts); its session kept by a SessionBook
 *   (sessions.ts); the registry asked by LivenessRounds (liveness-rounds.ts)
 *   and SRS's HTTP API by PublisherApi (publisher-api.ts: ghosts, takeovers);
 * - a viewer is admitted by its server's viewer shard (src/viewers/admission.ts)
 *   within the slots leased here (`viewerLease`: LeaseBook in leases.ts,
 *   SlotRounds in slot-rounds.ts);
 * - the settings (key hash, policy) kept by StreamSettings (settings.ts);
 *   what the shards are told of them, and its pushes, by ShardPolicy
 *   (shard-policy.ts);
 * - failed guesses counted and decisions logged by DecisionRecords
 *   (decision-records.ts, over auth-failures.ts and decision-log.ts);
 * - when the alarm fires, for its checks and sweeps, by AlarmSchedule
 *   (alarm-schedule.ts).
 *
 * Sessions belong to processes, and a process is live or suspended (its
 * server is silent: see ServerRegistry). Suspended sessions neither count nor
 * block, but are kept until a stop event, a restart or SESSION_GRACE_S ends
 * them. The registry pushes changes of status (applyStatus); a decision that
 * rests on the status of other processes asks first (publisher-admission.ts;
 * for slots, slot-rounds.ts).
 *
 * An object for a stream that was never created stores nothing: its tables
 * are created by the first PUT, so hooks naming random streams cost nothing
 * lasting.
 */
export class StreamObject extends DurableObject<Env> {
  private sql: SqlStorage;
  private ready = false;
  /** The key hash and the policy; null until the tables exist (a stream never created). */
  private settings: StreamSettings | null = null;
  private sessions!: SessionBook;
  private leases!: LeaseBook;
  /** Grants, recalls and the shards waiting for slots (src/stream/slot-rounds.ts). */
  private rounds!: SlotRounds;
  /** When the alarm fires, for a check of the rounds owed or a sweep (src/stream/alarm-schedule.ts). */
  private alarms: AlarmSchedule;
  private failures!: AuthFailures;
  private log!: DecisionLog;
  /** The viewer policy, its version and its pushes to the shards (src/stream/shard-policy.ts). */
  private shardPolicy!: ShardPolicy;
  /** The questions to the registry about the processes holding sessions here (src/stream/liveness-rounds.ts). */
  private liveness: LivenessRounds;
  /** Start hooks whose admission the Worker undid: hook id → when. */
  private voidHooks = new VoidedHooks();
  /** Publish decisions under way and sessions a takeover indexed, in memory (src/stream/publish-attempts.ts). */
  private attempts = new PublishAttempts();
  /** Ghosts of lost on_unpublish and takeovers, through SRS's HTTP API (src/stream/publisher-api.ts). */
  private publisherApi: PublisherApi;
  /** Usage and events of the publish sessions (src/usage/stream-activity.ts). */
  private activity!: StreamActivity;
  /** Answers of operators' ends, for their retries (src/platform/kept-answers.ts). */
  private kept: KeptAnswers;
  /** Failed guesses counted, decisions logged (src/stream/decision-records.ts). */
  private records = new DecisionRecords({ exists: () => this.exists, failures: () => this.failures, log: () => this.log });
  /** Where a publisher is admitted (src/stream/publisher-admission.ts). */
  private admission: PublisherAdmission;
  /** Where a publisher session ends (src/stream/publisher-ends.ts). */
  private ends: PublisherEnds;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.alarms = new AlarmSchedule(ctx.storage, () => this.env);
    this.kept = new KeptAnswers(this.sql);
    this.liveness = new LivenessRounds(() => this.env, () => this.sessions, (news) => this.applyStatus(news));
    this.publisherApi = new PublisherApi({
      env: () => this.env,
      sessions: () => this.sessions,
      streamKey: () => this.settings?.key ?? null,
      name: () => (this.ready ? this.activity.streamKey || null : null),
      voided: (hookId) => this.voided(hookId),
      record: (...line) => this.records.record(...line),
      waitUntil: (work) => this.ctx.waitUntil(work),
    });
    // What a publisher's admission and its end both work with.
    const publishers: PublisherParts = {
      sessions: () => this.sessions,
      liveness: this.liveness,
      publisherApi: this.publisherApi,
      attempts: this.attempts,
      voidHooks: this.voidHooks,
      records: this.records,
    };
    this.admission = new PublisherAdmission({ ...publishers, settings: () => this.settings, armSweep: () => this.alarms.armSweep() });
    this.ends = new PublisherEnds({ ...publishers, sql: this.sql });
    countCalls(this, env, ["publish", "viewerLease", "refusePlay", "end", "endSessions", "endByOperator", "heldSessions", "applyStatus", "events", "eventSources", "recordKick", "recordKickWaiting", "kicksNotQueued", "publisherSessions", "viewerLimitReached", "keepEvents", "publishUsage", "configure", "pushPolicy", "pushRevocations", "revoke", "revocationList", "undoKeyChange", "remove", "state"]);
    const exists = this.sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'stream'").toArray().length > 0;
    if (exists) this.prepare();
    ctx.blockConcurrencyWhile(() => this.alarms.load());
  }

  /** Creates (or upgrades) the tables and loads the state into memory. */
  private prepare(): void {
    if (this.ready) return;
    this.sql.exec(SCHEMA);
    this.shardPolicy = new ShardPolicy(this.sql, {
      env: () => this.env,
      settings: () => this.settings!,
      exists: () => this.exists,
      leases: () => this.leases,
      rounds: () => this.rounds,
      armCheck: (at) => this.alarms.armCheck(at),
      pushSettled: () => this.pushSettled(),
      keepEvents: (events) => void this.keepEvents(events),
    });
    this.failures = new AuthFailures(this.sql);
    this.log = new DecisionLog(this.sql);
    this.settings = new StreamSettings(this.sql);
    this.activity = new StreamActivity(this.sql, this.env, this.ctx, () => this.alarms.armSweep(), () => this.settings?.key ?? null, () => new Set(this.leases.shards().map((r) => r.serverId)));
    this.sessions = new SessionBook(this.sql, (...line) => this.records.record(...line), this.activity);
    this.leases = new LeaseBook(this.sql, (serverId) => this.activity.shardLeft(serverId));
    this.rounds = new SlotRounds(this.env, this.leases, {
      cap: () => this.settings?.maxViewers,
      policy: () => this.shardPolicy.viewerPolicy(),
      version: () => this.policyVersion,
      armCheck: (at) => this.alarms.armCheck(at),
      endRevokedOn: (key, serverId, revocations) => this.shardPolicy.endRevokedOn(key, serverId, revocations),
      waitUntil: (work) => this.ctx.waitUntil(work),
    });
    this.voidHooks.load(this.sql);
    this.ready = true;
  }

  /** 0 for a stream never created (no tables: nothing was ever pushed). */
  private get policyVersion(): number {
    return this.ready ? this.shardPolicy.version : 0;
  }

  /** Calls this object received since its isolate started, by method, and its starts (bench only: LOAD_COUNTERS). */
  loadCount(): LoadCount {
    return callsOf(this);
  }

  // --- hooks: publishers admitted and ended, plays refused ------------------

  /**
   * `guessLimit` is AUTH_FAILURES_PER_MINUTE as the Worker read it, so one setting governs every object;
   * `answerWithinMs` is what is left of the hook's deadline: the calls to SRS's API fit in it.
   */
  async publish(session: SessionId, ip: string, presentedKeyHash: string | null, guessLimit: number, hookId = "", answerWithinMs = HOOK_DEADLINE_MS): Promise<Decision> {
    if (!this.ready) return { allow: false, denial: Denials.unknownStream };
    // A stop event of the session while this attempt waits makes it late (src/stream/publish-attempts.ts).
    const watch = this.attempts.begin(sessionKey(session));
    try {
      return await this.admission.decide(session, ip, presentedKeyHash, guessLimit, hookId, answerWithinMs, () => this.voided(hookId) ?? watch.late());
    } finally {
      watch.done();
    }
  }

  /**
   * An on_play with a bad or missing token on a playAuth "token" stream: the
   * shard leaves it to the stream, which counts failed guesses per ip (the
   * brute-force limit) and logs them.
   */
  refusePlay(session: SessionId, ip: string, token: PlayToken, guessLimit: number): Decision {
    if (!this.ready) return { allow: false, denial: Denials.unknownStream };
    const decision = decideToken(this.policy(), token, () => this.records.overLimit("play", ip, guessLimit));
    // The policy changed since the shard read it: the shard reads it again and decides.
    if (decision.allow) return decision;
    this.records.countFailure("play", ip, decision);
    this.records.recordDecision("on_play", session, ip, decision, tokenSub(token));
    return decision;
  }

  /**
   * Ends a publisher session (on_unpublish, on_close, an undone admission).
   * Idempotent: ending a session never seen changes nothing and logs nothing.
   */
  end(session: SessionId, cause: EndCause): number {
    if (!this.ready) return 0;
    return this.ends.end(session, cause);
  }

  // --- viewer shards: their leases of slots ---------------------------------

  /** A viewer shard's message (src/viewers/lease.ts): its lease as it stands, and the slots it wants (src/stream/slot-rounds.ts). */
  async viewerLease(report: LeaseReport): Promise<LeaseAnswer> {
    const gone = { policy: null, version: this.policyVersion, seq: report.seq, granted: report.granted, tight: false };
    if (!this.exists) return gone;
    // A leave brings no viewer: its time is noted if the record goes (LeaseBook's forgotten: shardLeft).
    if (!isLeave(report)) this.activity.noteShard(report.serverId);
    this.forgetOldShards();
    return (await this.rounds.lease(report)) ?? gone;
  }

  /** A viewer shard refused a viewer for the cap (stream.viewer_limit_reached, at most one a minute). */
  viewerLimitReached(serverId: string, maxViewers: number): number {
    return this.exists ? this.activity.viewerLimitReached(serverId, maxViewers) : 0;
  }

  // --- registry: news of the processes holding sessions here ----------------

  /**
   * What the registry knows about one process: pushed as a notice, or the
   * answer to this stream's own question. Older news than what the stream
   * has applied is ignored. Answers the number of sessions ended (NoticeAnswer).
   */
  applyStatus(news: ProcessStatus): NoticeAnswer {
    if (!this.ready) return { ended: 0, kept: 0 };
    const ended = this.sessions.apply(news);
    // Sessions of the process admitted after the cutoff stay here, and so must their index entries.
    const keptClients = news.cutoff > 0 ? this.sessions.clientsOf(news.serverId, news.serviceId) : [];
    return { ended, kept: keptClients.length, keptClients };
  }

  /** Which of these sessions the stream holds (a client may have started a new one meanwhile). */
  heldSessions(sessions: EndedSession[]): EndedSession[] {
    return this.ready ? this.sessions.held(sessions) : [];
  }

  // --- admin: settings and their pushes to the viewer shards ----------------

  configure(name: StreamName, change: PolicyChange, candidate: CandidateKey): ConfigureResult {
    this.prepare();
    const { created, replacedKeyHash } = this.settings!.apply(name, change, candidate);
    // A stream created again (after a DELETE) starts with an empty decision log and no revocations.
    if (created) {
      this.log.clear();
      this.shardPolicy.forgetRevocations();
    }
    // A slot handed between shards for a viewer's newer session is not granted past a cap set meanwhile.
    this.leases.dropHandOffs();
    this.shardPolicy.bumpVersion(this.settings!.key!);
    return {
      created,
      state: this.state()!,
      keyHash: this.settings!.keyHash!,
      ...(created || replacedKeyHash !== undefined ? { publishKey: candidate.key } : {}),
      ...(replacedKeyHash !== undefined ? { replacedKeyHash, rotatedPublishers: this.kickingPublishers(candidate.hash) } : {}),
    };
  }

  /**
   * Undoes a key change whose new key could not be delivered: puts `previous`
   * back (or, for a stream this change created, removes it) only if the key is
   * still `ifCurrent`, so a concurrent rotation is never undone.
   */
  undoKeyChange(ifCurrent: string, previous: string | null): boolean {
    if (this.settings?.keyHash !== ifCurrent) return false;
    // Undone, the change kicks nobody (the Worker queues no kick for it): its publishers' own stops are their own.
    if (previous === null) return this.removeStream();
    const restored = this.settings.restoreKey(ifCurrent, previous);
    if (restored) this.publisherApi.operatorKicksCalledOff(this.publisherSessions(), ifCurrent);
    return restored;
  }

  /**
   * Revokes the stream: its key and policy are gone, so the very next
   * on_publish or on_play is denied. Sessions already live are kept (SRS does
   * not stop them) so that their stop events still balance the counts.
   */
  remove(): boolean {
    if (!this.removeStream()) return false;
    this.kickingPublishers(STREAM_DELETED);
    return true;
  }

  private removeStream(): boolean {
    const key = this.settings?.remove() ?? null;
    if (key === null) return false;
    this.leases.dropHandOffs();
    this.shardPolicy.bumpVersion(key);
    return true;
  }

  state(): StreamState | null {
    const settings = this.settings?.state();
    return settings ? streamState(settings, this.sessions.publishersView(), this.leases.shards()) : null;
  }


  /**
   * Tells every viewer shard of the stream its new policy (after a PUT or a
   * DELETE), taking back their unused slots: a lower cap or a new playAuth
   * holds for the very next viewer. Returns the shards that could not be
   * reached (pushed to again from the alarm every PUSH_RETRY_MS).
   */
  async pushPolicy(key: string): Promise<string[]> {
    if (!this.ready) return [];
    return this.shardPolicy.push(key);
  }

  /** Tells every viewer shard the stream's revocations, leaving them their slots. */
  async pushRevocations(key: string): Promise<string[]> {
    if (!this.ready) return [];
    return this.shardPolicy.pushRevocations(key);
  }

  /**
   * Revokes the tokens of viewer `sub` (null: every viewer) issued before
   * `before` (Unix seconds), until `expires`. The caller pushes the policy to
   * the shards, then ends the sessions the revocation covers. Null when
   * MAX_REVOCATIONS are active already.
   */
  revoke(sub: string | null, before: number, expires: number): Revocation | null {
    if (!this.exists) return null;
    const added = this.shardPolicy.revoke(this.settings!.key!, sub, before, expires);
    if (!added) return null;
    this.records.record("revoke", "", "", "", "end", `tokens ${sub === null ? "of every viewer" : `of viewer ${sub}`} issued before ${iso(before * 1000)} revoked`);
    return added;
  }

  revocationList(): Revocation[] | null {
    if (!this.exists) return null;
    return this.shardPolicy.revocationList();
  }

  // --- admin: sessions ended by hand, kicks ---------------------------------

  /**
   * Ends sessions by hand (DELETE /admin/streams/{app}/{stream}/sessions):
   * all of them, or those of one server and/or one client id. SRS keeps
   * streaming to the clients; only streamgate's accounting lets them go.
   */
  async endSessions(filter: { serverId?: string; clientId?: string }, callId?: string): Promise<EndedSession[]> {
    if (!this.ready) return [];
    if (this.sessions.matching(filter)) await this.ends.endedMeanwhile();
    return this.kept.once(callId, () => this.ends.endByOperator(filter));
  }

  /**
   * Ends one publisher session by hand (DELETE /admin/servers/{id}/sessions, through its server's index), as
   * endSessions does: what a restart or SESSION_GRACE_S ended already ends as they did, not by the operator.
   */
  async endByOperator(session: SessionId, reason: string): Promise<number> {
    if (!this.ready) return 0;
    if (this.sessions.isPublishing(session)) await this.ends.endedMeanwhile();
    return this.end(session, { action: "admin", reason });
  }

  /** Every publisher session (live, suspended, in conflict): what a rotated key or a deleted stream kicks. */
  publisherSessions(): SessionId[] {
    if (!this.ready) return [];
    const { publisher, conflicts } = this.sessions.publishersView();
    return [publisher, ...conflicts].filter((p): p is Publisher => p !== null).map((p) => ({ serverId: p.serverId, serviceId: p.serviceId, clientId: p.clientId }));
  }

  /** The publishers a rotated key or a deleted stream kicks (the Worker queues the kicks): their stop events end them as "operator". */
  private kickingPublishers(action: OperatorAction): SessionId[] {
    const publishers = this.publisherSessions();
    this.publisherApi.operatorKicking(publishers, action);
    return publishers;
  }

  /**
   * Publishers a rotated key or a deleted stream marked whose kicks could not be queued (their registry shard
   * unreachable). `action`: the rotation's new key hash, or STREAM_DELETED.
   */
  kicksNotQueued(publishers: SessionId[], action?: OperatorAction): void {
    if (this.ready) this.publisherApi.operatorKicksCalledOff(publishers, action);
  }

  /** A kick's first try failed; it is tried again (its outcome comes as recordKick). */
  recordKickWaiting(serverId: string, clientId: string, reason: string): void {
    if (this.ready) this.log.append("kick-wait", serverId, clientId, "", "kick", reason);
  }

  /**
   * The outcome of a kick (src/srs/kicks.ts), for the decision log. `publisher`: the kick was a
   * publisher's (a viewer's says nothing about a publisher that has the same client id), of the process
   * `serviceId`; `kicked`: its server let it go (its stop event, if it comes now, is the kick's doing).
   */
  recordKick(serverId: string, clientId: string, reason: string, publisher?: { serviceId: string; kicked: boolean }): void {
    if (!this.ready) return;
    this.log.append("kick", serverId, clientId, "", "kick", reason);
    if (publisher) this.publisherApi.operatorKickDone({ serverId, serviceId: publisher.serviceId, clientId }, publisher.kicked);
  }

  // --- decision log, events and usage ---------------------------------------

  /** The last decisions, newest first. */
  events(): StreamEvent[] {
    return this.ready ? this.log.list() : [];
  }

  /** The viewer shards that ever asked this stream for slots or its policy: where its viewers, their decisions and usage are. */
  eventSources(): string[] {
    return this.ready ? this.leases.logSources() : [];
  }

  /**
   * Events an admin call made about this stream's sessions (session.ended_by_operator,
   * src/events/operator.ts): kept in the outbox, and queued as the stream's own are. False: this
   * object has no outbox (a stream never created here), the caller queues them itself.
   */
  keepEvents(events: WebhookEvent[]): boolean {
    if (!this.ready) return false;
    for (const e of events) this.activity.outbox.add(e);
    return true;
  }

  /** This stream's publish usage in [from, to) and the viewer shards that may hold its viewers' in that range (src/usage/report.ts). */
  publishUsage(from: number, to: number): { hours: HourUsage[]; shards: string[] } {
    if (!this.ready) return { hours: [], shards: [] };
    this.forgetOldShards();
    return { hours: this.activity.usage.hours(this.activity.streamKey, from, to, "publisher", this.sessions.openPublishes()), shards: this.activity.viewerShards(from) };
  }

  /** The viewer shards of edges gone for longer than USAGE_RETENTION_DAYS go (src/usage/stream-activity.ts forgetShards). */
  private forgetOldShards(): void {
    // Read only when a shard is old enough to go (forgetShards runs at most hourly): lease messages call this too.
    let holding: Set<string> | null = null;
    this.activity.forgetShards((serverId) => (holding ??= new Set(this.leases.shards().map((r) => r.serverId))).has(serverId));
  }

  // --- alarm ----------------------------------------------------------------

  /**
   * Background: the rounds for shards waiting for slots; and a check, so the
   * counts operators see converge even if a notice was lost, and events not
   * yet queued.
   */
  async alarm(): Promise<void> {
    this.alarms.fired();
    if (!this.ready) return;
    const now = Date.now();
    // After a restart nothing is scheduled in memory: the stored waiting shards get their round.
    const pending = this.shardPolicy.pending();
    const checkDue = this.alarms.takeCheck(pending !== null || this.leases.waiting().length > 0, now);
    if (checkDue) {
      if (pending) await this.shardPolicy.retry(pending);
      await this.rounds.checkWaiting(this.exists ? this.activity.streamKey : null);
    }
    // The sweep too, unless the alarm fired early for a round only; events waiting in the outbox (a queue that
    // refused them) go with either.
    if (checkDue && this.alarms.sweepLater(now)) {
      if (this.activity.outbox.pending()) await this.activity.outbox.flush();
    } else {
      this.alarms.takeSweep();
      await this.liveness.refresh(null);
      // With SRS_API_URL: a live publisher its server's API no longer has is a ghost of lost stop events (also on a
      // deleted stream, whose publishers stay until their stop events: a kicked one's may have been lost).
      await this.publisherApi.sweepGhosts(this.sessions.livePublishersBesides()).catch((err) => {
        console.error(JSON.stringify({ error: "ghost sweep failed", stream: this.activity.streamKey, detail: String(err) }));
      });
      await this.activity.outbox.flush();
      this.activity.usage.prune(now);
      this.forgetOldShards();
      if (!this.sessions.isEmpty() || this.activity.outbox.pending()) this.alarms.armSweep();
    }
    this.alarms.setNext();
  }

  /** Every shard has the policy: the alarm set for the push's retry is not needed (else a thousand streams created at once wake 5 s later). */
  private pushSettled(): void {
    if (this.leases.waiting().length === 0) this.alarms.dropCheck(() => this.sessions.isEmpty() && !this.activity.outbox.pending());
  }

  // --- helpers --------------------------------------------------------------

  /** A late attempt of a start hook the Worker undid (src/session/voided-hooks.ts): refused. */
  private voided(hookId: string): Decision | null {
    return this.voidHooks.has(hookId) ? { allow: false, denial: Denials.admissionUndone } : null;
  }

  /** The stream exists (created, not deleted). */
  private get exists(): boolean {
    return this.settings?.exists === true;
  }

  private policy(): StreamPolicy | null {
    return this.settings?.policy() ?? null;
  }
}
