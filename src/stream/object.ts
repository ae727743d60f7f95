import { DurableObject } from "cloudflare:workers";
import { serverTimeoutMs } from "../config";
import type { Env } from "../env";
import type { Fence, Liveness } from "../server/registry";
import { serverRegistry } from "../stubs";
import type { Role, SessionId } from "../srs/hook";
import type { StreamName } from "./name";
import { decidePlay, decidePublish, Denials, isFailedGuess, sameSession, type Decision, type Denial, type PlayAuth, type PlayToken, type StreamPolicy } from "./rules";

export interface Publisher extends SessionId {
  ip: string;
  since: string;
}

/** What the admin API reports for one stream. */
export interface StreamState extends StreamName {
  maxViewers: number | null;
  playAuth: PlayAuth;
  live: boolean;
  publisher: Publisher | null;
  viewers: number;
  createdAt: string;
  updatedAt: string;
}

/** One line of a stream's decision log, as GET /admin/streams/{app}/{stream}/events shows it. */
export interface StreamEvent {
  at: string;
  action: string;
  server: string;
  client: string;
  ip: string;
  decision: "allow" | "deny" | "end";
  reason: string;
}

/** What a stop event or a fence tells the decision log. */
export interface EndCause {
  action: string;
  ip?: string;
  reason?: string;
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
}

/** Viewers of one SRS process (server_id + service_id): the unit that dies together. */
interface ViewerGroup {
  serverId: string;
  serviceId: string;
  count: number;
  /** When the server registry last confirmed this process alive (0: never). */
  verifiedAt: number;
}

/** The brute-force limit counts failed guesses per client ip in windows this long. */
const GUESS_WINDOW_MS = 60_000;

/** The decision log keeps this many events per stream. */
const EVENTS_KEPT = 100;

/** A viewer-cap denial trusts a liveness check this recent instead of asking again. */
const VERIFY_TTL_MS = 1000;

/**
 * One object per stream (vhost/app/stream) holds its policy and live sessions.
 *
 * Every decision is synchronous from the read of the state to the write of
 * the result: SQLite calls on ctx.storage.sql do not yield, so no other hook
 * can interleave. That is what makes "50 simultaneous on_play, cap 10,
 * exactly 10 admitted" hold without any lock of our own.
 *
 * Viewers are rows of their own (one INSERT or DELETE per hook, whatever the
 * audience); counts per SRS process are kept in memory and recounted only
 * when the object wakes.
 *
 * A denial that rests on other sessions (publisher busy, cap reached) may rest
 * on ghosts: SRS sends no stop events when a server crashes or restarts. So
 * before such a denial stands, the stream asks the servers involved whether
 * those processes are still alive, ends the sessions of dead ones and decides
 * again. Allowed hooks never pay for this.
 */
export class StreamObject extends DurableObject<Env> {
  private sql: SqlStorage;
  private row: StreamRow | null;
  private publisher: PublisherRow | null;
  private viewers = 0;
  private groups = new Map<string, ViewerGroup>();
  /** Processes (server + service) a restart replaced: their late start hooks are refused here too. */
  private replaced = new Set<string>();
  private verifying: Promise<void> | null = null;
  private alarmAt: number | null = null;
  /** Sequence number of the newest decision-log entry. */
  private eventSeq = 0;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(`
      CREATE TABLE IF NOT EXISTS stream (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        vhost TEXT NOT NULL, app TEXT NOT NULL, stream TEXT NOT NULL,
        key_hash TEXT NOT NULL, max_viewers INTEGER, play_auth TEXT NOT NULL,
        created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS publisher (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        server_id TEXT NOT NULL, service_id TEXT NOT NULL, client_id TEXT NOT NULL,
        ip TEXT NOT NULL, since INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS viewers (
        server_id TEXT NOT NULL, service_id TEXT NOT NULL, client_id TEXT NOT NULL,
        ip TEXT NOT NULL, since INTEGER NOT NULL,
        PRIMARY KEY (server_id, service_id, client_id)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS replaced (
        server_id TEXT NOT NULL, service_id TEXT NOT NULL, at INTEGER NOT NULL,
        PRIMARY KEY (server_id, service_id)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS guesses (
        ip TEXT PRIMARY KEY, window_start INTEGER NOT NULL, failures INTEGER NOT NULL) WITHOUT ROWID;
      CREATE INDEX IF NOT EXISTS guesses_by_window ON guesses (window_start);
      CREATE TABLE IF NOT EXISTS events (
        slot INTEGER PRIMARY KEY, seq INTEGER NOT NULL, at INTEGER NOT NULL, action TEXT NOT NULL,
        server TEXT NOT NULL, client TEXT NOT NULL, ip TEXT NOT NULL, decision TEXT NOT NULL, reason TEXT NOT NULL);
    `);
    this.eventSeq = this.sql.exec<{ seq: number | null }>("SELECT MAX(seq) AS seq FROM events").one().seq ?? 0;
    this.row = this.sql.exec<StreamRow>("SELECT * FROM stream").toArray()[0] ?? null;
    this.publisher = this.sql.exec<PublisherRow>("SELECT * FROM publisher").toArray()[0] ?? null;
    this.recountViewers(null);
    for (const r of this.sql.exec<{ server_id: string; service_id: string }>("SELECT server_id, service_id FROM replaced")) {
      this.replaced.add(groupKey(r.server_id, r.service_id));
    }
    ctx.blockConcurrencyWhile(async () => {
      this.alarmAt = await ctx.storage.getAlarm();
    });
  }

  // --- hooks -----------------------------------------------------------------

  /**
   * `guessLimit` is AUTH_FAILURES_PER_MINUTE as the Worker read it, so that
   * one setting governs every object the same way.
   */
  async publish(session: SessionId, ip: string, presentedKeyHash: string | null, guessLimit: number): Promise<Decision> {
    let decision = this.tryPublish(session, ip, presentedKeyHash, guessLimit);
    if (!decision.allow && decision.restsOn === "publisher") {
      const blocking = this.publisherSession()!;
      const cutoff = Date.now();
      this.endIfGone(blocking, await this.isAlive(blocking, session), cutoff);
      // Decided again even if the blocker lives: it may have unpublished meanwhile.
      decision = this.tryPublish(session, ip, presentedKeyHash, guessLimit);
    }
    this.recordDecision("on_publish", session, ip, decision);
    return decision;
  }

  async play(session: SessionId, ip: string, token: PlayToken, guessLimit: number): Promise<Decision> {
    let decision = this.tryPlay(session, ip, token, guessLimit);
    if (!decision.allow && decision.restsOn === "viewers") {
      await this.pruneStaleViewers(session);
      decision = this.tryPlay(session, ip, token, guessLimit);
    }
    this.recordDecision("on_play", session, ip, decision);
    return decision;
  }

  /**
   * Ends the session in the given role, or in both roles when role is null.
   * Idempotent: ending a session never seen changes nothing.
   */
  end(session: SessionId, role: Role | null, cause: EndCause): number {
    let ended = 0;
    if (role !== "viewer") {
      const publisher = this.publisherSession();
      if (publisher && sameSession(publisher, session)) {
        this.sql.exec("DELETE FROM publisher");
        this.publisher = null;
        ended++;
      }
    }
    if (role !== "publisher") {
      const removed = this.sql.exec(
        "DELETE FROM viewers WHERE server_id = ? AND service_id = ? AND client_id = ?",
        session.serverId, session.serviceId, session.clientId,
      ).rowsWritten;
      if (removed > 0) this.countViewer(session, -removed);
      ended += removed;
    }
    this.record(cause.action, session.serverId, session.clientId, cause.ip ?? "", "end", cause.reason ?? (ended ? "session ended" : "no live session"));
    return ended;
  }

  /**
   * Ends the sessions a server's process (serviceId null: any process of that
   * server) started at or before the fence's cutoff. Called when the process
   * is known to be gone; sessions admitted after the cutoff belong to a
   * revived server. A process replaced by a restart is also remembered, so
   * that a start hook of it still in flight is refused rather than admitted.
   */
  endSessionsOf(fence: Fence): number {
    const { serverId, serviceId, cutoff } = fence;
    if (fence.replaced && serviceId !== null) this.rememberReplaced(serverId, serviceId);
    let ended = 0;
    const p = this.publisher;
    if (p && p.server_id === serverId && (serviceId === null || p.service_id === serviceId) && p.since <= cutoff) {
      this.sql.exec("DELETE FROM publisher");
      this.publisher = null;
      ended++;
    }
    const removed =
      serviceId === null
        ? this.sql.exec("DELETE FROM viewers WHERE server_id = ? AND since <= ?", serverId, cutoff).rowsWritten
        : this.sql.exec("DELETE FROM viewers WHERE server_id = ? AND service_id = ? AND since <= ?", serverId, serviceId, cutoff).rowsWritten;
    if (removed > 0) this.recountViewers(serverId);
    ended += removed;
    if (ended > 0) {
      const process = serviceId === null ? "" : ` (service ${serviceId})`;
      this.record("fence", serverId, "", "", "end", `ended ${ended} session(s) of server ${serverId}${process}: ${fence.why}`);
    }
    return ended;
  }

  /** The last EVENTS_KEPT decisions, newest first. */
  events(): StreamEvent[] {
    return this.sql
      .exec<{ at: number; action: string; server: string; client: string; ip: string; decision: string; reason: string }>(
        "SELECT at, action, server, client, ip, decision, reason FROM events ORDER BY seq DESC LIMIT ?",
        EVENTS_KEPT,
      )
      .toArray()
      .map((e) => ({ ...e, at: iso(e.at), decision: e.decision as StreamEvent["decision"] }));
  }

  /** Background pruning, so the counts operators see converge even when no hook asks. */
  async alarm(): Promise<void> {
    this.alarmAt = null;
    const everyone = [...this.groups.values()].map(({ serverId, serviceId }) => ({ serverId, serviceId }));
    const p = this.publisherSession();
    if (p) everyone.push({ serverId: p.serverId, serviceId: p.serviceId });
    await this.verify(everyone, null);
    if (this.publisher || this.viewers > 0) this.armAlarm();
  }

  // --- admin -----------------------------------------------------------------

  configure(name: StreamName, change: PolicyChange, candidate: CandidateKey): ConfigureResult {
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
    this.row = row;
    return { created, state: this.state()!, keyHash: row.key_hash, ...(rotate ? { publishKey: candidate.key } : {}) };
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
    const p = this.publisher;
    return {
      vhost: this.row.vhost,
      app: this.row.app,
      stream: this.row.stream,
      maxViewers: this.row.max_viewers,
      playAuth: this.row.play_auth as PlayAuth,
      live: p !== null,
      publisher: p
        ? { serverId: p.server_id, serviceId: p.service_id, clientId: p.client_id, ip: p.ip, since: iso(p.since) }
        : null,
      viewers: this.viewers,
      createdAt: iso(this.row.created_at),
      updatedAt: iso(this.row.updated_at),
    };
  }

  // --- decisions -------------------------------------------------------------

  private tryPublish(session: SessionId, ip: string, presentedKeyHash: string | null, guessLimit: number): Decision {
    if (this.replaced.has(groupKey(session.serverId, session.serviceId))) return { allow: false, denial: Denials.retiredProcess };
    const decision = decidePublish(this.policy(), this.publisherSession(), session, presentedKeyHash, this.throttled(ip, guessLimit));
    if (!decision.allow) this.countGuess(ip, decision.denial);
    if (decision.allow && decision.admit) {
      const row: PublisherRow = {
        server_id: session.serverId,
        service_id: session.serviceId,
        client_id: session.clientId,
        ip,
        since: Date.now(),
      };
      this.sql.exec(
        "INSERT INTO publisher (id, server_id, service_id, client_id, ip, since) VALUES (1, ?, ?, ?, ?, ?)",
        row.server_id, row.service_id, row.client_id, row.ip, row.since,
      );
      this.publisher = row;
      this.armAlarm();
    }
    return decision;
  }

  private tryPlay(session: SessionId, ip: string, token: PlayToken, guessLimit: number): Decision {
    if (this.replaced.has(groupKey(session.serverId, session.serviceId))) return { allow: false, denial: Denials.retiredProcess };
    const decision = decidePlay(this.policy(), this.viewers, this.isViewing(session), token, this.throttled(ip, guessLimit));
    if (!decision.allow) this.countGuess(ip, decision.denial);
    if (decision.allow && decision.admit) {
      this.sql.exec(
        "INSERT INTO viewers (server_id, service_id, client_id, ip, since) VALUES (?, ?, ?, ?, ?)",
        session.serverId, session.serviceId, session.clientId, ip, Date.now(),
      );
      this.countViewer(session, 1);
      this.armAlarm();
    }
    return decision;
  }

  // --- brute-force limit -----------------------------------------------------

  /** Has this client ip used up its failed guesses at this stream in the current window? */
  private throttled(ip: string, guessLimit: number): boolean {
    const row = this.sql
      .exec<{ window_start: number; failures: number }>("SELECT window_start, failures FROM guesses WHERE ip = ?", ip)
      .toArray()[0];
    return !!row && Date.now() - row.window_start < GUESS_WINDOW_MS && row.failures >= guessLimit;
  }

  /**
   * Counts a wrong key or bad token against the client's ip (one row per ip,
   * fixed one-minute windows). Other ips, such as the key's real holder, keep
   * their own count. Streams that do not exist count nothing.
   */
  private countGuess(ip: string, denial: Denial): void {
    if (!this.row || !isFailedGuess(denial)) return;
    const now = Date.now();
    this.sql.exec("DELETE FROM guesses WHERE window_start <= ?", now - GUESS_WINDOW_MS);
    this.sql.exec(
      `INSERT INTO guesses (ip, window_start, failures) VALUES (?, ?, 1)
       ON CONFLICT (ip) DO UPDATE SET failures = failures + 1`,
      ip, now,
    );
  }

  // --- liveness --------------------------------------------------------------

  /**
   * Confirms the viewer groups a cap denial rests on. A group is checked when
   * its last confirmation is older than VERIFY_TTL_MS, and always when the
   * hook comes from the same server under another service_id (the first sign
   * of a restart). A denial arriving while a round of checks is under way
   * waits for it first, so a flash crowd at the cap causes one round, not one
   * per viewer.
   */
  private async pruneStaleViewers(hook: SessionId): Promise<void> {
    const started = Date.now();
    if (this.verifying) await this.verifying;
    const due = [...this.groups.values()].filter(
      (g) => g.verifiedAt < started - VERIFY_TTL_MS || (g.serverId === hook.serverId && g.serviceId !== hook.serviceId),
    );
    if (due.length === 0) return;
    const round = this.verify(due, hook);
    this.verifying = round;
    try {
      await round;
    } finally {
      if (this.verifying === round) this.verifying = null;
    }
  }

  /** Asks each process's server whether it is alive; ends the sessions of those that are not. */
  private async verify(processes: { serverId: string; serviceId: string }[], hook: SessionId | null): Promise<void> {
    const cutoff = Date.now();
    const verdicts = await Promise.all(processes.map((p) => this.isAlive(p, hook)));
    processes.forEach((p, i) => {
      if (this.endIfGone(p, verdicts[i], cutoff)) return;
      const group = this.groups.get(groupKey(p.serverId, p.serviceId));
      if (group) group.verifiedAt = Date.now();
    });
  }

  /** Acts on a liveness answer; true when the process's sessions were ended. */
  private endIfGone(p: { serverId: string; serviceId: string }, liveness: Liveness, cutoff: number): boolean {
    if (liveness === "alive") return false;
    const why = liveness === "replaced" ? "its server restarted" : `its server sent no heartbeat for ${serverTimeoutMs(this.env) / 1000} s`;
    this.endSessionsOf({ serverId: p.serverId, serviceId: p.serviceId, cutoff, why, replaced: liveness === "replaced" });
    return true;
  }

  private rememberReplaced(serverId: string, serviceId: string): void {
    const key = groupKey(serverId, serviceId);
    if (this.replaced.has(key)) return;
    this.replaced.add(key);
    const now = Date.now();
    this.sql.exec("INSERT OR REPLACE INTO replaced (server_id, service_id, at) VALUES (?, ?, ?)", serverId, serviceId, now);
    // A replaced process cannot speak for long; a day later its entry is only clutter.
    for (const r of this.sql.exec<{ server_id: string; service_id: string }>(
      "DELETE FROM replaced WHERE at < ? RETURNING server_id, service_id", now - 24 * 3600 * 1000,
    )) {
      this.replaced.delete(groupKey(r.server_id, r.service_id));
    }
  }

  /** An unreachable registry presumes the process alive: a ghost is better than ending a real session. */
  private async isAlive(process: { serverId: string; serviceId: string }, hook: SessionId | null): Promise<Liveness> {
    const witness = hook && hook.serverId === process.serverId ? { serverId: hook.serverId, serviceId: hook.serviceId } : undefined;
    try {
      return await serverRegistry(this.env, process.serverId).isAlive(process.serverId, process.serviceId, witness);
    } catch (err) {
      console.error(JSON.stringify({ error: "liveness check failed", server: process.serverId, detail: String(err) }));
      return "alive";
    }
  }

  private armAlarm(): void {
    if (this.alarmAt !== null) return;
    // The registry ends a dead or restarted server's sessions itself;
    // this slower sweep catches whatever their fan-out missed.
    this.alarmAt = Date.now() + 2 * serverTimeoutMs(this.env);
    void this.ctx.storage.setAlarm(this.alarmAt);
  }

  // --- decision log ----------------------------------------------------------

  private recordDecision(action: string, session: SessionId, ip: string, decision: Decision): void {
    const reason = decision.allow ? (decision.admit ? "admitted" : "already live") : decision.denial.reason;
    this.record(action, session.serverId, session.clientId, ip, decision.allow ? "allow" : "deny", reason);
  }

  /**
   * Appends to the decision log: a ring of EVENTS_KEPT slots, so one
   * single-row write replaces the oldest entry, whatever the audience.
   * Streams that do not exist keep no log, so hooks naming random streams
   * store nothing.
   */
  private record(action: string, server: string, client: string, ip: string, decision: StreamEvent["decision"], reason: string): void {
    if (!this.row) return;
    const seq = ++this.eventSeq;
    this.sql.exec(
      "INSERT OR REPLACE INTO events (slot, seq, at, action, server, client, ip, decision, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
      seq % EVENTS_KEPT, seq, Date.now(), action, server, client, ip, decision, reason,
    );
  }

  // --- helpers ---------------------------------------------------------------

  private countViewer(session: SessionId, delta: number): void {
    const key = groupKey(session.serverId, session.serviceId);
    const group = this.groups.get(key) ?? { serverId: session.serverId, serviceId: session.serviceId, count: 0, verifiedAt: 0 };
    group.count += delta;
    if (group.count > 0) this.groups.set(key, group);
    else this.groups.delete(key);
    this.viewers += delta;
  }

  /** Rebuilds the in-memory counts from storage: all of them, or one server's. */
  private recountViewers(serverId: string | null): void {
    const rows =
      serverId === null
        ? this.sql.exec<{ server_id: string; service_id: string; n: number }>(
            "SELECT server_id, service_id, COUNT(*) AS n FROM viewers GROUP BY server_id, service_id",
          )
        : this.sql.exec<{ server_id: string; service_id: string; n: number }>(
            "SELECT server_id, service_id, COUNT(*) AS n FROM viewers WHERE server_id = ? GROUP BY service_id",
            serverId,
          );
    for (const [key, group] of this.groups) {
      if (serverId === null || group.serverId === serverId) {
        this.groups.delete(key);
        this.viewers -= group.count;
      }
    }
    for (const r of rows) {
      this.groups.set(groupKey(r.server_id, r.service_id), { serverId: r.server_id, serviceId: r.service_id, count: r.n, verifiedAt: 0 });
      this.viewers += r.n;
    }
  }

  private policy(): StreamPolicy | null {
    if (!this.row) return null;
    return { keyHash: this.row.key_hash, maxViewers: this.row.max_viewers, playAuth: this.row.play_auth as PlayAuth };
  }

  private publisherSession(): SessionId | null {
    const p = this.publisher;
    return p ? { serverId: p.server_id, serviceId: p.service_id, clientId: p.client_id } : null;
  }

  private isViewing(session: SessionId): boolean {
    return (
      this.sql
        .exec(
          "SELECT 1 FROM viewers WHERE server_id = ? AND service_id = ? AND client_id = ?",
          session.serverId, session.serviceId, session.clientId,
        )
        .toArray().length > 0
    );
  }
}

function groupKey(serverId: string, serviceId: string): string {
  return `${serverId}\n${serviceId}`;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
