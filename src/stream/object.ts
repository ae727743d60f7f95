import { DurableObject } from "cloudflare:workers";
import { serverTimeoutMs } from "../config";
import type { Env } from "../env";
import { shardOf, type ProcessId, type ProcessStatus } from "../server/registry";
import { withRetry } from "../platform/retry";
import { serverRegistry } from "../stubs";
import type { Role, SessionId } from "../srs/hook";
import { AuthFailures, STREAM_FAILURES_LOGGED, type AttemptKind } from "./auth-failures";
import { DecisionLog, type StreamEvent } from "./decision-log";
import type { StreamName } from "./name";
import { decidePlay, decidePublish, Denials, isFailedGuess, type Decision, type PlayAuth, type PlayToken, type StreamPolicy } from "./rules";

export type { StreamEvent } from "./decision-log";

/**
 * A publisher session as the admin API shows it. `state`: "live" (it holds
 * the stream), "suspended" (its server is silent: it blocks nobody until the
 * same process is heard from again), "conflict" (its server came back while
 * a newer publisher held the stream: the newer one keeps it).
 */
export interface Publisher extends SessionId {
  ip: string;
  since: string;
  state: "live" | "suspended" | "conflict";
}

/** What the admin API reports for one stream. */
export interface StreamState extends StreamName {
  maxViewers: number | null;
  playAuth: PlayAuth;
  /** A publisher holds the stream now. */
  live: boolean;
  /** The holder, else the newest suspended publisher, else null. */
  publisher: Publisher | null;
  /** Every other publisher session that received no stop event. */
  conflicts: Publisher[];
  /** Viewers that count toward maxViewers. */
  viewers: number;
  /** Viewers of silent servers: kept, not counted, back if their process returns. */
  suspendedViewers: number;
  createdAt: string;
  updatedAt: string;
}

/** What a stop event or a fence tells the decision log. */
export interface EndCause {
  action: string;
  ip?: string;
  reason?: string;
}

/** A session ended by an operator, as the admin API answers it. */
export interface EndedSession extends SessionId {
  role: Role;
}

export interface PolicyChange {
  maxViewers?: number | null;
  playAuth?: PlayAuth;
  rotateKey?: boolean;
}

/** A key minted by the Worker; the object keeps only its hash, and only if it creates or rotates. */
export interface CandidateKey {
  key: string;
  hash: string;
}

export interface ConfigureResult {
  created: boolean;
  state: StreamState;
  /** For the KV catalogue only; never sent to admin clients. */
  keyHash: string;
  /** Plaintext, present only when the key was created or rotated by this call. */
  publishKey?: string;
  /** The hash this call's rotation replaced, so that a caller who cannot deliver the new key can put it back. */
  replacedKeyHash?: string;
}

interface StreamRow extends Record<string, SqlStorageValue> {
  vhost: string;
  app: string;
  stream: string;
  key_hash: string;
  max_viewers: number | null;
  play_auth: string;
  created_at: number;
  updated_at: number;
}

interface PublisherRow extends Record<string, SqlStorageValue> {
  server_id: string;
  service_id: string;
  client_id: string;
  ip: string;
  since: number;
  /** Order in which publishers became live: at admission, and again when their server returns. */
  ord: number;
}

/** One SRS process (server_id + service_id): the unit that goes silent, returns or dies together. */
interface Process {
  serverId: string;
  serviceId: string;
  /** Viewers of this process on this stream. */
  viewers: number;
  suspended: boolean;
  /** The newest registry notice applied (-1: none). */
  seq: number;
}

/** A round of liveness questions to the registry, shared by the hooks that arrive while it runs. */
interface Round {
  done: Promise<void>;
  witness: string | null;
}

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS stream (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    vhost TEXT NOT NULL, app TEXT NOT NULL, stream TEXT NOT NULL,
    key_hash TEXT NOT NULL, max_viewers INTEGER, play_auth TEXT NOT NULL,
    created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
  CREATE TABLE IF NOT EXISTS publishers (
    server_id TEXT NOT NULL, service_id TEXT NOT NULL, client_id TEXT NOT NULL,
    ip TEXT NOT NULL, since INTEGER NOT NULL, ord INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (server_id, service_id, client_id)) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS viewers (
    server_id TEXT NOT NULL, service_id TEXT NOT NULL, client_id TEXT NOT NULL,
    ip TEXT NOT NULL, since INTEGER NOT NULL,
    PRIMARY KEY (server_id, service_id, client_id)) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS processes (
    server_id TEXT NOT NULL, service_id TEXT NOT NULL, suspended INTEGER NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (server_id, service_id)) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS replaced (
    server_id TEXT NOT NULL, service_id TEXT NOT NULL, at INTEGER NOT NULL,
    PRIMARY KEY (server_id, service_id)) WITHOUT ROWID;
  ${AuthFailures.schema}
  ${DecisionLog.schema}`;

/** A replaced process cannot speak for long; a day later its entry is only clutter. */
const REPLACED_KEPT_MS = 24 * 3600 * 1000;

/**
 * One object per stream (vhost/app/stream) holds its policy and sessions.
 *
 * Every decision is synchronous from the read of the state to the write of
 * the result: SQLite calls on ctx.storage.sql do not yield, so no other hook
 * can interleave. That is what makes "50 simultaneous on_play, cap 10,
 * exactly 10 admitted" hold without any lock of our own.
 *
 * Viewers are rows of their own (one INSERT or DELETE per hook, whatever the
 * audience); counts per SRS process are kept in memory.
 *
 * Sessions belong to processes, and a process is live or suspended (its
 * server is silent: see ServerRegistry). Suspended sessions neither count nor
 * block, but are kept until a stop event, a restart or SESSION_GRACE_S ends
 * them. The registry pushes changes of status (applyStatus); before a
 * decision rests on the status of other processes, the stream also asks:
 * - a refusal because of other sessions (publisher busy, cap reached) may rest
 *   on ghosts (a crashed, restarted or silent server's sessions);
 * - an admission possible only because other sessions are suspended may rest
 *   on a server that has just come back.
 * Either way one round of questions to the registry, shared by every hook
 * that arrives while it runs, and the decision is taken again. Admissions that
 * rest on nothing of the kind never pay for it.
 *
 * An object for a stream that was never created stores nothing: its tables
 * are created by the first PUT, so hooks naming random streams cost nothing
 * lasting.
 */
export class StreamObject extends DurableObject<Env> {
  private sql: SqlStorage;
  private ready = false;
  private row: StreamRow | null = null;
  private publishers: PublisherRow[] = [];
  private processes = new Map<string, Process>();
  private viewers = 0;
  private suspendedViewers = 0;
  private replaced = new Set<string>();
  private round: Round | null = null;
  private alarmAt: number | null = null;
  private failures!: AuthFailures;
  private log!: DecisionLog;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    const exists = this.sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'stream'").toArray().length > 0;
    if (exists) this.prepare();
    ctx.blockConcurrencyWhile(async () => {
      this.alarmAt = await ctx.storage.getAlarm();
    });
  }

  /** Creates (or upgrades) the tables and loads the state into memory. */
  private prepare(): void {
    if (this.ready) return;
    this.sql.exec(SCHEMA);
    if (this.sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'publisher'").toArray().length > 0) {
      // The single-publisher table of earlier versions.
      this.sql.exec("INSERT OR IGNORE INTO publishers SELECT server_id, service_id, client_id, ip, since, 0 FROM publisher; DROP TABLE publisher;");
    }
    this.failures = new AuthFailures(this.sql);
    this.log = new DecisionLog(this.sql);
    this.row = this.sql.exec<StreamRow>("SELECT * FROM stream").toArray()[0] ?? null;
    this.publishers = this.sql.exec<PublisherRow>("SELECT * FROM publishers ORDER BY ord, since").toArray();
    for (const r of this.sql.exec<{ server_id: string; service_id: string; suspended: number; seq: number }>("SELECT * FROM processes")) {
      this.processes.set(processKey(r.server_id, r.service_id), { serverId: r.server_id, serviceId: r.service_id, viewers: 0, suspended: r.suspended === 1, seq: r.seq });
    }
    for (const r of this.sql.exec<{ server_id: string; service_id: string; n: number }>(
      "SELECT server_id, service_id, COUNT(*) AS n FROM viewers GROUP BY server_id, service_id",
    )) {
      this.process(r.server_id, r.service_id).viewers = r.n;
    }
    this.recount();
    for (const r of this.sql.exec<{ server_id: string; service_id: string }>("SELECT server_id, service_id FROM replaced")) {
      this.replaced.add(processKey(r.server_id, r.service_id));
    }
    this.ready = true;
  }

  // --- hooks -----------------------------------------------------------------

  /** `guessLimit` is AUTH_FAILURES_PER_MINUTE as the Worker read it, so one setting governs every object. */
  async publish(session: SessionId, ip: string, presentedKeyHash: string | null, guessLimit: number): Promise<Decision> {
    if (!this.ready) return { allow: false, denial: Denials.unknownStream };
    // A start hook of a process this stream holds suspended: it is back, and the registry says what of it survived.
    if (this.isSuspended(session.serverId, session.serviceId)) await this.refresh(session, true);
    let decision = this.tryPublish(session, ip, presentedKeyHash, guessLimit, false);
    const restsOnSuspended = decision.allow && decision.admit && this.publishers.some((p) => this.isSuspended(p.server_id, p.service_id));
    if ((!decision.allow && decision.restsOn === "publisher") || restsOnSuspended) {
      await this.refresh(session);
      // Decided again in any case: the blocker may have unpublished meanwhile.
      decision = this.tryPublish(session, ip, presentedKeyHash, guessLimit, true);
    } else if (decision.allow && decision.admit) {
      this.admitPublisher(session, ip);
    }
    this.recordDecision("on_publish", session, ip, decision);
    return decision;
  }

  async play(session: SessionId, ip: string, token: PlayToken, guessLimit: number): Promise<Decision> {
    if (!this.ready) return { allow: false, denial: Denials.unknownStream };
    if (this.isSuspended(session.serverId, session.serviceId)) await this.refresh(session, true);
    let decision = this.tryPlay(session, ip, token, guessLimit, false);
    const cap = this.row?.max_viewers ?? null;
    const restsOnSuspended = decision.allow && decision.admit && cap !== null && this.viewers + this.suspendedViewers >= cap;
    if ((!decision.allow && decision.restsOn === "viewers") || restsOnSuspended) {
      await this.refresh(session);
      decision = this.tryPlay(session, ip, token, guessLimit, true);
    } else if (decision.allow && decision.admit) {
      this.admitViewer(session, ip);
    }
    this.recordDecision("on_play", session, ip, decision);
    return decision;
  }

  /**
   * Ends the session in the given role, or in both roles when role is null.
   * Idempotent: ending a session never seen changes nothing and logs nothing
   * (duplicate HLS stops must not flush real decisions out of the log).
   */
  end(session: SessionId, role: Role | null, cause: EndCause): number {
    if (!this.ready) return 0;
    let ended = 0;
    if (role !== "viewer") ended += this.deletePublishers(session.serverId, session.serviceId, session.clientId, Number.MAX_SAFE_INTEGER);
    if (role !== "publisher") ended += this.deleteViewers(session.serverId, session.serviceId, session.clientId, Number.MAX_SAFE_INTEGER);
    if (ended > 0) this.record(cause.action, session.serverId, session.clientId, cause.ip ?? "", "end", cause.reason ?? "session ended");
    this.dropProcessIfIdle(session.serverId, session.serviceId);
    return ended;
  }

  /**
   * Ends sessions by hand (DELETE /admin/streams/{app}/{stream}/sessions):
   * all of them, or those of one server and/or one client id. SRS keeps
   * streaming to the clients; only streamgate's accounting lets them go.
   */
  endSessions(filter: { serverId?: string; clientId?: string }): EndedSession[] {
    if (!this.ready) return [];
    const match = (r: { server_id: string; client_id: string }) =>
      (filter.serverId === undefined || r.server_id === filter.serverId) && (filter.clientId === undefined || r.client_id === filter.clientId);
    const ended: EndedSession[] = [];
    for (const p of this.publishers.filter(match)) {
      ended.push({ role: "publisher", serverId: p.server_id, serviceId: p.service_id, clientId: p.client_id });
    }
    const conditions = ["1 = 1"];
    const args: string[] = [];
    if (filter.serverId !== undefined) (conditions.push("server_id = ?"), args.push(filter.serverId));
    if (filter.clientId !== undefined) (conditions.push("client_id = ?"), args.push(filter.clientId));
    for (const v of this.sql.exec<{ server_id: string; service_id: string; client_id: string }>(
      `SELECT server_id, service_id, client_id FROM viewers WHERE ${conditions.join(" AND ")}`,
      ...args,
    )) {
      ended.push({ role: "viewer", serverId: v.server_id, serviceId: v.service_id, clientId: v.client_id });
    }
    for (const s of ended) {
      if (s.role === "publisher") this.deletePublishers(s.serverId, s.serviceId, s.clientId, Number.MAX_SAFE_INTEGER);
      else this.deleteViewers(s.serverId, s.serviceId, s.clientId, Number.MAX_SAFE_INTEGER);
    }
    for (const s of ended) this.dropProcessIfIdle(s.serverId, s.serviceId);
    if (ended.length > 0) {
      const scope = [filter.serverId && `server ${filter.serverId}`, filter.clientId && `client ${filter.clientId}`].filter(Boolean).join(", ");
      this.record("admin", filter.serverId ?? "", filter.clientId ?? "", "", "end", `ended ${ended.length} session(s) by operator${scope ? ` (${scope})` : ""}`);
    }
    return ended;
  }

  /** Which of these sessions the stream holds (a client may have started a new one meanwhile). */
  heldSessions(sessions: EndedSession[]): EndedSession[] {
    if (!this.ready) return [];
    return sessions.filter((x) =>
      x.role === "publisher" ? this.publishers.some((p) => isSession(p, x)) : this.isViewing(x),
    );
  }

  /**
   * What the registry knows about one process: pushed as a notice, or the
   * answer to this stream's own question. Older news than what the stream
   * has applied is ignored. Returns the number of sessions ended.
   */
  applyStatus(news: ProcessStatus): number {
    if (!this.ready) return 0;
    const { serverId, serviceId } = news;
    let ended = 0;
    if (news.cutoff > 0) {
      // Sessions admitted up to the cutoff are over for good: a restart, or SESSION_GRACE_S of silence.
      if (news.replaced) this.rememberReplaced(serverId, serviceId);
      ended = this.deletePublishers(serverId, serviceId, null, news.cutoff) + this.deleteViewers(serverId, serviceId, null, news.cutoff);
      if (ended > 0) this.record("fence", serverId, "", "", "end", `ended ${ended} session(s) of server ${serverId} (service ${serviceId}): ${news.why}`);
    }
    if (news.status === "ended" || !this.holdsSessionsOf(serverId, serviceId)) {
      this.dropProcessIfIdle(serverId, serviceId);
      return ended;
    }
    const known = this.processes.get(processKey(serverId, serviceId));
    if (!known || known.seq < news.seq) this.setSuspended(serverId, serviceId, news.status === "suspended", news.seq, news.why);
    return ended;
  }

  /** The last decisions, newest first. */
  events(): StreamEvent[] {
    return this.ready ? this.log.list() : [];
  }

  /** Background check, so the counts operators see converge even if a notice was lost. */
  async alarm(): Promise<void> {
    this.alarmAt = null;
    if (!this.ready) return;
    await this.refresh(null);
    if (this.publishers.length > 0 || this.viewers + this.suspendedViewers > 0) this.armAlarm();
  }

  // --- admin -----------------------------------------------------------------

  configure(name: StreamName, change: PolicyChange, candidate: CandidateKey): ConfigureResult {
    this.prepare();
    const now = Date.now();
    const created = this.row === null;
    const rotate = created || change.rotateKey === true;
    const row: StreamRow = {
      vhost: name.vhost,
      app: name.app,
      stream: name.stream,
      key_hash: rotate ? candidate.hash : this.row!.key_hash,
      max_viewers: change.maxViewers !== undefined ? change.maxViewers : (this.row?.max_viewers ?? null),
      play_auth: change.playAuth ?? this.row?.play_auth ?? "open",
      created_at: this.row?.created_at ?? now,
      updated_at: now,
    };
    this.sql.exec(
      `INSERT OR REPLACE INTO stream (id, vhost, app, stream, key_hash, max_viewers, play_auth, created_at, updated_at)
       VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?)`,
      row.vhost, row.app, row.stream, row.key_hash, row.max_viewers, row.play_auth, row.created_at, row.updated_at,
    );
    const replaced = rotate && !created ? this.row!.key_hash : undefined;
    this.row = row;
    return {
      created,
      state: this.state()!,
      keyHash: row.key_hash,
      ...(rotate ? { publishKey: candidate.key } : {}),
      ...(replaced !== undefined ? { replacedKeyHash: replaced } : {}),
    };
  }

  /**
   * Undoes a key change whose new key could not be delivered: puts `previous`
   * back (or, for a stream this change created, removes it) only if the key is
   * still `ifCurrent`, so a concurrent rotation is never undone.
   */
  undoKeyChange(ifCurrent: string, previous: string | null): boolean {
    if (!this.row || this.row.key_hash !== ifCurrent) return false;
    if (previous === null) return this.remove();
    this.sql.exec("UPDATE stream SET key_hash = ? WHERE id = 1", previous);
    this.row = { ...this.row, key_hash: previous };
    return true;
  }

  /**
   * Revokes the stream: its key and policy are gone, so the very next
   * on_publish or on_play is denied. Sessions already live are kept (SRS does
   * not stop them) so that their stop events still balance the counts.
   */
  remove(): boolean {
    if (!this.row) return false;
    this.sql.exec("DELETE FROM stream");
    this.row = null;
    return true;
  }

  state(): StreamState | null {
    if (!this.row) return null;
    const holder = this.holder();
    const suspended = this.publishers.filter((p) => this.isSuspended(p.server_id, p.service_id));
    const shown = holder ?? suspended.at(-1) ?? null;
    const view = (p: PublisherRow): Publisher => ({
      serverId: p.server_id,
      serviceId: p.service_id,
      clientId: p.client_id,
      ip: p.ip,
      since: iso(p.since),
      state: this.isSuspended(p.server_id, p.service_id) ? "suspended" : p === holder ? "live" : "conflict",
    });
    return {
      vhost: this.row.vhost,
      app: this.row.app,
      stream: this.row.stream,
      maxViewers: this.row.max_viewers,
      playAuth: this.row.play_auth as PlayAuth,
      live: holder !== null,
      publisher: shown ? view(shown) : null,
      conflicts: this.publishers.filter((p) => p !== shown).map(view),
      viewers: this.viewers,
      suspendedViewers: this.suspendedViewers,
      createdAt: iso(this.row.created_at),
      updatedAt: iso(this.row.updated_at),
    };
  }

  // --- decisions -------------------------------------------------------------

  /** `admit`: store the admission (the second, final decision); otherwise only decide. */
  private tryPublish(session: SessionId, ip: string, presentedKeyHash: string | null, guessLimit: number, admit: boolean): Decision {
    if (this.replaced.has(processKey(session.serverId, session.serviceId))) return { allow: false, denial: Denials.retiredProcess };
    this.heardFrom(session);
    const others = this.publishers.filter((p) => !this.isSuspended(p.server_id, p.service_id) && !isSession(p, session));
    const decision = decidePublish(
      this.policy(),
      others.map(sessionOf),
      this.publishers.some((p) => isSession(p, session)),
      presentedKeyHash,
      () => this.overLimit("publish", ip, guessLimit),
    );
    this.countFailure("publish", ip, decision);
    if (admit && decision.allow && decision.admit) this.admitPublisher(session, ip);
    return decision;
  }

  private tryPlay(session: SessionId, ip: string, token: PlayToken, guessLimit: number, admit: boolean): Decision {
    if (this.replaced.has(processKey(session.serverId, session.serviceId))) return { allow: false, denial: Denials.retiredProcess };
    this.heardFrom(session);
    const decision = decidePlay(this.policy(), this.viewers, this.isViewing(session), token, () => this.overLimit("play", ip, guessLimit));
    this.countFailure("play", ip, decision);
    if (admit && decision.allow && decision.admit) this.admitViewer(session, ip);
    return decision;
  }

  private admitPublisher(session: SessionId, ip: string): void {
    const ord = this.nextOrd();
    const row: PublisherRow = { server_id: session.serverId, service_id: session.serviceId, client_id: session.clientId, ip, since: Date.now(), ord };
    this.sql.exec(
      "INSERT INTO publishers (server_id, service_id, client_id, ip, since, ord) VALUES (?, ?, ?, ?, ?, ?)",
      row.server_id, row.service_id, row.client_id, row.ip, row.since, row.ord,
    );
    this.publishers.push(row);
    this.armAlarm();
  }

  private admitViewer(session: SessionId, ip: string): void {
    this.sql.exec(
      "INSERT INTO viewers (server_id, service_id, client_id, ip, since) VALUES (?, ?, ?, ?, ?)",
      session.serverId, session.serviceId, session.clientId, ip, Date.now(),
    );
    this.process(session.serverId, session.serviceId).viewers++;
    this.recount();
    this.armAlarm();
  }

  /**
   * The publisher that holds the stream: of those whose server is not silent,
   * the one live the longest. A publisher whose server returns after another
   * took the stream is live again but does not take it back (a conflict);
   * it holds the stream again once the other one stops.
   */
  private holder(): PublisherRow | null {
    return this.publishers.find((p) => !this.isSuspended(p.server_id, p.service_id)) ?? null;
  }

  private nextOrd(): number {
    return this.publishers.reduce((max, p) => Math.max(max, p.ord), 0) + 1;
  }

  // --- brute-force limit -----------------------------------------------------

  private overLimit(kind: AttemptKind, ip: string, limit: number): boolean {
    return this.row !== null && this.failures.overLimit(kind, ip, limit);
  }

  /**
   * Counts a wrong key or bad token. Past the stream-wide budget (guessers
   * rotating spoofed ips), failures are answered as usual but cost no write
   * and no log entry.
   */
  private countFailure(kind: AttemptKind, ip: string, decision: Decision): void {
    if (!this.row || decision.allow || !isFailedGuess(decision.denial)) return;
    const budget = this.failures.spendBudget();
    if (budget === "over") return;
    this.failures.count(kind, ip);
    if (budget === "last") this.record("guesses", "", "", "", "deny", `${STREAM_FAILURES_LOGGED} failed keys or tokens this minute: further ones are not counted or logged until the minute ends`, "guesses");
  }

  // --- liveness --------------------------------------------------------------

  /**
   * Asks the registry where every process holding sessions here stands, and
   * applies the answers. A hook arriving while a round runs shares it, unless
   * it brings news the round lacks (its server under another service_id: the
   * first sign of a restart). An unreachable registry changes nothing: a ghost
   * is better than ending or un-blocking a real session.
   */
  private async refresh(hook: SessionId | null, news = false): Promise<void> {
    const witness = hook && (news || this.heldByOtherProcessOf(hook)) ? processKey(hook.serverId, hook.serviceId) : null;
    if (this.round && (witness === null || this.round.witness === witness)) return this.round.done;
    if (this.round) await this.round.done.catch(() => {});
    const round: Round = { witness, done: this.ask(hook) };
    this.round = round;
    try {
      await round.done;
    } finally {
      if (this.round === round) this.round = null;
    }
  }

  private async ask(hook: SessionId | null): Promise<void> {
    const byShard = new Map<number, ProcessId[]>();
    for (const p of this.heldProcesses()) {
      const shard = shardOf(p.serverId);
      byShard.set(shard, [...(byShard.get(shard) ?? []), p]);
    }
    const asked = [...byShard].map(async ([shard, processes]) => {
      // The hook being decided goes to its own server's shard: it may be the first news of a restart.
      const witness = hook && shardOf(hook.serverId) === shard ? { serverId: hook.serverId, serviceId: hook.serviceId } : undefined;
      try {
        // Retried on a retryable platform error (src/platform/retry.ts): asking again changes nothing the first question did not.
        const answers = await withRetry(() => serverRegistry(this.env, processes[0].serverId), (registry) => registry.liveness(processes, witness));
        for (const a of answers) this.applyStatus(a);
      } catch (err) {
        console.error(JSON.stringify({ error: "liveness check failed", server: processes[0].serverId, detail: String(err) }));
      }
    });
    await Promise.all(asked);
  }

  /** Processes that hold sessions here: each viewer group and each publisher's. */
  private heldProcesses(): ProcessId[] {
    const seen = new Map<string, ProcessId>();
    for (const p of this.processes.values()) if (p.viewers > 0) seen.set(processKey(p.serverId, p.serviceId), { serverId: p.serverId, serviceId: p.serviceId });
    for (const p of this.publishers) seen.set(processKey(p.server_id, p.service_id), { serverId: p.server_id, serviceId: p.service_id });
    return [...seen.values()];
  }

  /** Does another process of the hook's server hold sessions here? Then the hook may be news of a restart. */
  private heldByOtherProcessOf(hook: SessionId): boolean {
    return this.heldProcesses().some((p) => p.serverId === hook.serverId && p.serviceId !== hook.serviceId);
  }

  /**
   * A start hook is proof that its process is alive: if it is still suspended
   * here (the registry could not be asked), it is back. The seq is set just
   * below what the stream knew, so the registry's next answer, whatever it
   * says, still applies.
   */
  private heardFrom(session: SessionId): void {
    if (this.isSuspended(session.serverId, session.serviceId)) {
      const p = this.processes.get(processKey(session.serverId, session.serviceId))!;
      this.setSuspended(session.serverId, session.serviceId, false, p.seq - 1, "its server is heard from again");
    }
  }

  private setSuspended(serverId: string, serviceId: string, suspended: boolean, seq: number, why: string): void {
    const p = this.process(serverId, serviceId);
    const changed = p.suspended !== suspended;
    p.suspended = suspended;
    p.seq = seq;
    this.sql.exec(
      "INSERT OR REPLACE INTO processes (server_id, service_id, suspended, seq) VALUES (?, ?, ?, ?)",
      serverId, serviceId, suspended ? 1 : 0, seq,
    );
    if (!changed) return;
    if (!suspended) {
      // Back in the queue of live publishers, behind whoever held the stream meanwhile.
      for (const x of this.publishers.filter((x) => x.server_id === serverId && x.service_id === serviceId)) {
        x.ord = this.nextOrd();
        this.sql.exec("UPDATE publishers SET ord = ? WHERE server_id = ? AND service_id = ? AND client_id = ?", x.ord, x.server_id, x.service_id, x.client_id);
      }
      this.publishers.sort((a, b) => a.ord - b.ord);
    }
    this.recount();
    const held = p.viewers + this.publishers.filter((x) => x.server_id === serverId && x.service_id === serviceId).length;
    if (held > 0) {
      this.record(suspended ? "suspend" : "resume", serverId, "", "", suspended ? "suspend" : "resume", `${held} session(s) of server ${serverId} (service ${serviceId}) ${suspended ? "suspended" : "count again"}: ${why}`);
    }
    if (!suspended) this.reportConflicts(serverId, serviceId);
  }

  /** A returning publisher that finds the stream held by another is in conflict: logged. */
  private reportConflicts(serverId: string, serviceId: string): void {
    const holder = this.holder();
    if (!holder) return;
    for (const p of this.publishers) {
      if (p === holder || p.server_id !== serverId || p.service_id !== serviceId) continue;
      this.record("conflict", p.server_id, p.client_id, p.ip, "conflict",
        `publisher ${p.client_id} on server ${p.server_id} is back while client ${holder.client_id} on server ${holder.server_id} holds the stream: the holder keeps it`);
    }
  }

  private isSuspended(serverId: string, serviceId: string): boolean {
    return this.processes.get(processKey(serverId, serviceId))?.suspended ?? false;
  }

  private process(serverId: string, serviceId: string): Process {
    const key = processKey(serverId, serviceId);
    let p = this.processes.get(key);
    if (!p) {
      p = { serverId, serviceId, viewers: 0, suspended: false, seq: -1 };
      this.processes.set(key, p);
    }
    return p;
  }

  private holdsSessionsOf(serverId: string, serviceId: string): boolean {
    return (this.processes.get(processKey(serverId, serviceId))?.viewers ?? 0) > 0 || this.publishers.some((p) => p.server_id === serverId && p.service_id === serviceId);
  }

  private dropProcessIfIdle(serverId: string, serviceId: string): void {
    if (this.holdsSessionsOf(serverId, serviceId)) return;
    if (this.processes.delete(processKey(serverId, serviceId))) {
      this.sql.exec("DELETE FROM processes WHERE server_id = ? AND service_id = ?", serverId, serviceId);
    }
  }

  private rememberReplaced(serverId: string, serviceId: string): void {
    const key = processKey(serverId, serviceId);
    if (this.replaced.has(key)) return;
    this.replaced.add(key);
    const now = Date.now();
    this.sql.exec("INSERT OR REPLACE INTO replaced (server_id, service_id, at) VALUES (?, ?, ?)", serverId, serviceId, now);
    for (const r of this.sql.exec<{ server_id: string; service_id: string }>(
      "DELETE FROM replaced WHERE at < ? RETURNING server_id, service_id", now - REPLACED_KEPT_MS,
    )) {
      this.replaced.delete(processKey(r.server_id, r.service_id));
    }
  }

  private armAlarm(): void {
    if (this.alarmAt !== null) return;
    // The registry tells streams about silences and restarts itself;
    // this slower sweep catches whatever its notices missed.
    this.alarmAt = Date.now() + 2 * serverTimeoutMs(this.env);
    void this.ctx.storage.setAlarm(this.alarmAt);
  }

  // --- sessions --------------------------------------------------------------

  /** Deletes publisher sessions of a process (clientId null: all) admitted up to `cutoff`. */
  private deletePublishers(serverId: string, serviceId: string, clientId: string | null, cutoff: number): number {
    const gone = this.publishers.filter(
      (p) => p.server_id === serverId && p.service_id === serviceId && (clientId === null || p.client_id === clientId) && p.since <= cutoff,
    );
    for (const p of gone) {
      this.sql.exec("DELETE FROM publishers WHERE server_id = ? AND service_id = ? AND client_id = ?", p.server_id, p.service_id, p.client_id);
    }
    if (gone.length > 0) this.publishers = this.publishers.filter((p) => !gone.includes(p));
    return gone.length;
  }

  private deleteViewers(serverId: string, serviceId: string, clientId: string | null, cutoff: number): number {
    const removed =
      clientId === null
        ? this.sql.exec("DELETE FROM viewers WHERE server_id = ? AND service_id = ? AND since <= ?", serverId, serviceId, cutoff).rowsWritten
        : this.sql.exec("DELETE FROM viewers WHERE server_id = ? AND service_id = ? AND client_id = ? AND since <= ?", serverId, serviceId, clientId, cutoff).rowsWritten;
    if (removed > 0) {
      this.process(serverId, serviceId).viewers -= removed;
      this.recount();
    }
    return removed;
  }

  private recount(): void {
    let live = 0;
    let suspended = 0;
    for (const p of this.processes.values()) {
      if (p.suspended) suspended += p.viewers;
      else live += p.viewers;
    }
    this.viewers = live;
    this.suspendedViewers = suspended;
  }

  // --- decision log ----------------------------------------------------------

  /** A guesser over the limit is answered without a log entry: it cannot flush real decisions out. */
  private recordDecision(action: string, session: SessionId, ip: string, decision: Decision): void {
    if (!decision.allow && decision.denial.code === Denials.rateLimited.code) return;
    const guess = !decision.allow && isFailedGuess(decision.denial);
    if (guess && this.failures.overBudget()) return;
    const reason = decision.allow ? (decision.admit ? "admitted" : "already live") : decision.denial.reason;
    this.record(action, session.serverId, session.clientId, ip, decision.allow ? "allow" : "deny", reason, guess ? "guesses" : "decisions");
  }

  /** Streams that do not exist keep no log, so hooks naming random streams store nothing. */
  private record(action: string, server: string, client: string, ip: string, decision: StreamEvent["decision"], reason: string, ring: "decisions" | "guesses" = "decisions"): void {
    if (!this.row) return;
    this.log.append(action, server, client, ip, decision, reason, ring);
  }

  // --- helpers ---------------------------------------------------------------

  private policy(): StreamPolicy | null {
    if (!this.row) return null;
    return { keyHash: this.row.key_hash, maxViewers: this.row.max_viewers, playAuth: this.row.play_auth as PlayAuth };
  }

  private isViewing(session: SessionId): boolean {
    return (
      this.sql
        .exec("SELECT 1 FROM viewers WHERE server_id = ? AND service_id = ? AND client_id = ?", session.serverId, session.serviceId, session.clientId)
        .toArray().length > 0
    );
  }
}

function processKey(serverId: string, serviceId: string): string {
  return `${serverId}\n${serviceId}`;
}

function isSession(p: PublisherRow, s: SessionId): boolean {
  return p.server_id === s.serverId && p.service_id === s.serviceId && p.client_id === s.clientId;
}

function sessionOf(p: PublisherRow): SessionId {
  return { serverId: p.server_id, serviceId: p.service_id, clientId: p.client_id };
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
