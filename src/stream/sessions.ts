import { ForgottenProcesses } from "../session/forgotten-processes";
import type { ProcessId, ProcessStatus } from "../server/registry";
import { endingsOf } from "../server/endings";
import type { Role, SessionId } from "../srs/hook";
import type { StreamEvent } from "./decision-log";
import type { EndedPublish, EndReason } from "../usage/stream-activity";
import { fenceEnd } from "../usage/shard-activity";

/** Told of every publish session that starts or ends (usage and events: src/usage/stream-activity.ts). */
export interface PublishListener {
  started(serverId: string, clientId: string, at: number): void;
  ended(p: EndedPublish, end: number, reason: EndReason): void;
}

/**
 * A publisher session as the admin API shows it. `state`: "live" (it holds
 * the stream), "suspended" (its server is silent: it blocks nobody until the
 * same process is heard from again), "conflict" (its server came back while
 * another publisher held the stream: the holder keeps it).
 */
export interface Publisher extends SessionId {
  ip: string;
  since: string;
  state: "live" | "suspended" | "conflict";
}

/** A session ended by an operator, as the admin API answers it. */
export interface EndedSession extends SessionId {
  role: Role;
}

/** Writes a line to the stream's decision log (the book says what happened; the stream keeps the log). */
export type Recorder = (action: string, server: string, client: string, ip: string, decision: StreamEvent["decision"], reason: string) => void;

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
  suspended: boolean;
  /** The newest registry news applied (-1: none). */
  seq: number;
  /** Has a row in the processes table (written only when a status is applied). */
  stored: boolean;
}

/** Sessions admitted up to any time (an end that is not a cutoff). */
const ALL = Number.MAX_SAFE_INTEGER;

/** A replaced process cannot speak for long; a day later its entry is only clutter. */
const REPLACED_KEPT_MS = 24 * 3600 * 1000;

/**
 * A stream's publisher sessions, each belonging to an SRS process that is
 * live or suspended, plus the processes a restart replaced. (Viewers are kept
 * by the viewer shards of their servers: src/viewers/shard.ts.) Every method
 * is synchronous: the stream object calls them inside one decision, where no
 * other hook can interleave.
 */
export class SessionBook {
  static schema = `
    CREATE TABLE IF NOT EXISTS publishers (
      server_id TEXT NOT NULL, service_id TEXT NOT NULL, client_id TEXT NOT NULL,
      ip TEXT NOT NULL, since INTEGER NOT NULL, ord INTEGER NOT NULL DEFAULT 0,
      PRIMARY KEY (server_id, service_id, client_id)) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS processes (
      server_id TEXT NOT NULL, service_id TEXT NOT NULL, suspended INTEGER NOT NULL, seq INTEGER NOT NULL,
      PRIMARY KEY (server_id, service_id)) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS replaced (
      server_id TEXT NOT NULL, service_id TEXT NOT NULL, at INTEGER NOT NULL,
      PRIMARY KEY (server_id, service_id)) WITHOUT ROWID;`;

  private publishers: PublisherRow[];
  private processes = new Map<string, Process>();
  /** The last news applied to processes dropped for holding nothing here. */
  private dropped = new ForgottenProcesses();
  private replaced = new Set<string>();

  constructor(
    private sql: SqlStorage,
    private record: Recorder,
    private listener?: PublishListener,
  ) {
    if (sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'publisher'").toArray().length > 0) {
      // The single-publisher table of earlier versions.
      sql.exec("INSERT OR IGNORE INTO publishers SELECT server_id, service_id, client_id, ip, since, 0 FROM publisher; DROP TABLE publisher;");
    }
    // Viewers admitted by versions before the viewer shards: no longer counted here (the shards count from now on).
    sql.exec("DROP TABLE IF EXISTS viewers");
    this.publishers = sql.exec<PublisherRow>("SELECT * FROM publishers ORDER BY ord, since").toArray();
    for (const r of sql.exec<{ server_id: string; service_id: string; suspended: number; seq: number }>("SELECT * FROM processes")) {
      this.processes.set(processKey(r.server_id, r.service_id), { serverId: r.server_id, serviceId: r.service_id, suspended: r.suspended === 1, seq: r.seq, stored: true });
    }
    for (const r of sql.exec<{ server_id: string; service_id: string }>("SELECT server_id, service_id FROM replaced")) {
      this.replaced.add(processKey(r.server_id, r.service_id));
    }
  }

  // --- questions a decision asks -------------------------------------------------

  /** A process a restart replaced: its late start hooks are refused. */
  isReplaced(session: SessionId): boolean {
    return this.replaced.has(processKey(session.serverId, session.serviceId));
  }

  isSuspended(serverId: string, serviceId: string): boolean {
    return this.processes.get(processKey(serverId, serviceId))?.suspended ?? false;
  }

  isPublishing(session: SessionId): boolean {
    return this.publishers.some((p) => isSession(p, session));
  }

  /** Publishers that count now (their server is not silent), other than `session`. */
  livePublishersBesides(session?: SessionId): SessionId[] {
    return this.publishers.filter((p) => !this.isSuspended(p.server_id, p.service_id) && !(session && isSession(p, session))).map(sessionOf);
  }

  hasSuspendedPublishers(): boolean {
    return this.publishers.some((p) => this.isSuspended(p.server_id, p.service_id));
  }

  /** Publish sessions that count now (their server is not silent), for usage up to now. */
  openPublishes(): { since: number }[] {
    return this.publishers.filter((p) => !this.isSuspended(p.server_id, p.service_id)).map((p) => ({ since: p.since }));
  }

  isEmpty(): boolean {
    return this.publishers.length === 0;
  }

  /** Processes that hold sessions here: each publisher's. */
  heldProcesses(): ProcessId[] {
    const seen = new Map<string, ProcessId>();
    for (const p of this.publishers) seen.set(processKey(p.server_id, p.service_id), { serverId: p.server_id, serviceId: p.service_id });
    return [...seen.values()];
  }

  /** The client ids of the process's publisher sessions here. */
  clientsOf(serverId: string, serviceId: string): string[] {
    return this.publishersOf(serverId, serviceId).map((p) => p.client_id);
  }

  private publishersOf(serverId: string, serviceId: string): PublisherRow[] {
    return this.publishers.filter((p) => p.server_id === serverId && p.service_id === serviceId);
  }

  /** Does another process of the hook's server hold sessions here? Then the hook may be news of a restart. */
  heldByOtherProcessOf(hook: SessionId): boolean {
    return this.publishers.some((p) => p.server_id === hook.serverId && p.service_id !== hook.serviceId);
  }

  /** Which of these publisher sessions are held (a client may have started a new one meanwhile). */
  held(sessions: EndedSession[]): EndedSession[] {
    return sessions.filter((x) => x.role === "publisher" && this.isPublishing(x));
  }

  // --- admissions and ends ----------------------------------------------------------

  admitPublisher(session: SessionId, ip: string): void {
    const row: PublisherRow = { server_id: session.serverId, service_id: session.serviceId, client_id: session.clientId, ip, since: Date.now(), ord: this.nextOrd() };
    this.sql.exec(
      "INSERT INTO publishers (server_id, service_id, client_id, ip, since, ord) VALUES (?, ?, ?, ?, ?, ?)",
      row.server_id, row.service_id, row.client_id, row.ip, row.since, row.ord,
    );
    this.publishers.push(row);
    this.listener?.started(row.server_id, row.client_id, row.since);
  }

  /** Ends the publisher session; returns how many ended (0 or 1). */
  end(session: SessionId, reason: EndReason = "stop"): number {
    const ended = this.deletePublishers(session.serverId, session.serviceId, session.clientId, ALL, reason);
    this.dropProcessIfIdle(session.serverId, session.serviceId);
    return ended;
  }

  /** Whether a publisher session matches the filter (endMatching would end it). */
  matching(filter: { serverId?: string; clientId?: string }): boolean {
    return this.publishers.some((p) => (filter.serverId === undefined || p.server_id === filter.serverId) && (filter.clientId === undefined || p.client_id === filter.clientId));
  }

  /** Ends every publisher session of one server and/or one client id (both undefined: all). */
  endMatching(filter: { serverId?: string; clientId?: string }): EndedSession[] {
    const ended: EndedSession[] = [];
    for (const p of this.publishers) {
      if ((filter.serverId === undefined || p.server_id === filter.serverId) && (filter.clientId === undefined || p.client_id === filter.clientId)) {
        ended.push({ role: "publisher", serverId: p.server_id, serviceId: p.service_id, clientId: p.client_id });
      }
    }
    for (const s of ended) this.end(s, "operator");
    return ended;
  }

  // --- what the registry says about processes ---------------------------------------

  /**
   * Applies the registry's news about one process (a notice, or the answer to
   * the stream's own question): sessions admitted up to `cutoff` end for good
   * (a restart, SESSION_GRACE_S), then the process is live or suspended,
   * unless the book already applied newer news. Returns the sessions ended.
   */
  apply(news: ProcessStatus): number {
    const { serverId, serviceId } = news;
    let ended = 0;
    if (news.replaced && news.cutoff > 0) this.rememberReplaced(serverId, serviceId);
    // They end at the last moment their server was known alive, not now (those of an earlier end, at its own).
    for (const e of endingsOf(news)) {
      const n = this.deletePublishers(serverId, serviceId, null, e.cutoff, e.reason, fenceEnd(e.lastAlive));
      if (n > 0) this.record("fence", serverId, "", "", "end", `ended ${n} session(s) of server ${serverId} (service ${serviceId}): ${e.why}`);
      ended += n;
    }
    if (news.status === "ended" || !this.holdsSessionsOf(serverId, serviceId)) {
      this.dropProcessIfIdle(serverId, serviceId);
      return ended;
    }
    const key = processKey(serverId, serviceId);
    if ((this.processes.get(key)?.seq ?? this.dropped.seqOf(key)) < news.seq) this.setSuspended(serverId, serviceId, news.status === "suspended", news.seq, news.why);
    return ended;
  }

  /**
   * A start hook is proof that its process is alive: if it is still suspended
   * here (the registry could not be asked), it is back. The seq is set just
   * below what the book knew, so the registry's next answer, whatever it
   * says, still applies.
   */
  heardFrom(session: SessionId): void {
    if (this.isSuspended(session.serverId, session.serviceId)) {
      const p = this.processes.get(processKey(session.serverId, session.serviceId))!;
      this.setSuspended(session.serverId, session.serviceId, false, p.seq - 1, "its server is heard from again");
    }
  }

  // --- the admin view ----------------------------------------------------------------

  /**
   * The publisher that holds the stream: of those whose server is not silent,
   * the one live the longest. A publisher whose server returns after another
   * took the stream is live again but does not take it back (a conflict);
   * it holds the stream again once the other one stops.
   */
  publishersView(): { live: boolean; publisher: Publisher | null; conflicts: Publisher[] } {
    const holder = this.holder();
    const shown = holder ?? this.publishers.filter((p) => this.isSuspended(p.server_id, p.service_id)).at(-1) ?? null;
    const view = (p: PublisherRow): Publisher => ({
      serverId: p.server_id,
      serviceId: p.service_id,
      clientId: p.client_id,
      ip: p.ip,
      since: new Date(p.since).toISOString(),
      state: this.isSuspended(p.server_id, p.service_id) ? "suspended" : p === holder ? "live" : "conflict",
    });
    return { live: holder !== null, publisher: shown ? view(shown) : null, conflicts: this.publishers.filter((p) => p !== shown).map(view) };
  }

  // --- inside --------------------------------------------------------------------------

  private holder(): PublisherRow | null {
    return this.publishers.find((p) => !this.isSuspended(p.server_id, p.service_id)) ?? null;
  }

  private nextOrd(): number {
    return this.publishers.reduce((max, p) => Math.max(max, p.ord), 0) + 1;
  }

  private setSuspended(serverId: string, serviceId: string, suspended: boolean, seq: number, why: string): void {
    const p = this.process(serverId, serviceId);
    const changed = p.suspended !== suspended;
    p.suspended = suspended;
    p.seq = seq;
    p.stored = true;
    this.sql.exec(
      "INSERT OR REPLACE INTO processes (server_id, service_id, suspended, seq) VALUES (?, ?, ?, ?)",
      serverId, serviceId, suspended ? 1 : 0, seq,
    );
    if (!changed) return;
    if (!suspended) {
      // Back in the queue of live publishers, behind whoever held the stream meanwhile.
      for (const x of this.publishersOf(serverId, serviceId)) {
        x.ord = this.nextOrd();
        this.sql.exec("UPDATE publishers SET ord = ? WHERE server_id = ? AND service_id = ? AND client_id = ?", x.ord, x.server_id, x.service_id, x.client_id);
      }
      this.publishers.sort((a, b) => a.ord - b.ord);
    }
    const held = this.publishersOf(serverId, serviceId).length;
    if (held > 0) {
      const what = suspended ? "suspended" : "count again";
      this.record(suspended ? "suspend" : "resume", serverId, "", "", suspended ? "suspend" : "resume", `${held} session(s) of server ${serverId} (service ${serviceId}) ${what}: ${why}`);
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

  private process(serverId: string, serviceId: string): Process {
    const key = processKey(serverId, serviceId);
    let p = this.processes.get(key);
    if (!p) {
      // A process seen before starts from the news it was last told: an older notice, late, changes nothing.
      p = { serverId, serviceId, suspended: false, seq: this.dropped.seqOf(key), stored: false };
      this.processes.set(key, p);
    }
    return p;
  }

  private holdsSessionsOf(serverId: string, serviceId: string): boolean {
    return this.publishers.some((p) => p.server_id === serverId && p.service_id === serviceId);
  }

  /** Forgets a process without sessions here; its row, if it has one, costs a write only then (not on every last stop). */
  private dropProcessIfIdle(serverId: string, serviceId: string): void {
    if (this.holdsSessionsOf(serverId, serviceId)) return;
    const key = processKey(serverId, serviceId);
    const p = this.processes.get(key);
    if (!p) return;
    this.processes.delete(key);
    this.dropped.remember(key, p.seq);
    if (p.stored) this.sql.exec("DELETE FROM processes WHERE server_id = ? AND service_id = ?", serverId, serviceId);
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

  /** Deletes publisher sessions of a process (clientId null: all) admitted up to `cutoff`; they ended at `endAt`. */
  private deletePublishers(serverId: string, serviceId: string, clientId: string | null, cutoff: number, reason: EndReason, endAt = Date.now()): number {
    const gone = this.publishers.filter(
      (p) => p.server_id === serverId && p.service_id === serviceId && (clientId === null || p.client_id === clientId) && p.since <= cutoff,
    );
    for (const p of gone) {
      this.sql.exec("DELETE FROM publishers WHERE server_id = ? AND service_id = ? AND client_id = ?", p.server_id, p.service_id, p.client_id);
      this.listener?.ended({ serverId: p.server_id, clientId: p.client_id, since: p.since }, endAt, reason);
    }
    if (gone.length > 0) this.publishers = this.publishers.filter((p) => !gone.includes(p));
    return gone.length;
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
