import { DurableObject } from "cloudflare:workers";
import type { Env } from "../env";
import type { Role, SessionId } from "../srs/hook";
import type { StreamName } from "./name";
import { decidePlay, decidePublish, sameSession, type Decision, type PlayAuth, type StreamPolicy } from "./rules";

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

/**
 * One object per stream (vhost/app/stream) holds its policy and live sessions.
 *
 * Every method that decides is synchronous from start to finish: SQLite calls
 * on ctx.storage.sql do not yield, so no other hook can interleave between the
 * read of the state and the write of the decision. That is what makes "50
 * simultaneous on_play, cap 10, exactly 10 admitted" hold without any lock.
 *
 * Viewers are rows of their own (one INSERT or DELETE per hook, whatever the
 * audience); the count is kept in memory and recounted only when the object wakes.
 */
export class StreamObject extends DurableObject<Env> {
  private sql: SqlStorage;
  private row: StreamRow | null;
  private publisher: PublisherRow | null;
  private viewers: number;

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
    `);
    this.row = this.sql.exec<StreamRow>("SELECT * FROM stream").toArray()[0] ?? null;
    this.publisher = this.sql.exec<PublisherRow>("SELECT * FROM publisher").toArray()[0] ?? null;
    this.viewers = this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM viewers").one().n;
  }

  // --- hooks -----------------------------------------------------------------

  publish(session: SessionId, ip: string, presentedKeyHash: string | null): Decision {
    const decision = decidePublish(this.policy(), this.publisherSession(), session, presentedKeyHash);
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
    }
    return decision;
  }

  play(session: SessionId, ip: string): Decision {
    const decision = decidePlay(this.policy(), this.viewers, this.isViewing(session));
    if (decision.allow && decision.admit) {
      this.sql.exec(
        "INSERT INTO viewers (server_id, service_id, client_id, ip, since) VALUES (?, ?, ?, ?, ?)",
        session.serverId, session.serviceId, session.clientId, ip, Date.now(),
      );
      this.viewers++;
    }
    return decision;
  }

  /**
   * Ends the session in the given role, or in both roles when role is null
   * (on_close names no stream, so it does not know which one it held).
   * Idempotent: ending a session never seen changes nothing.
   */
  end(session: SessionId, role: Role | null): number {
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
      this.viewers -= removed;
      ended += removed;
    }
    return ended;
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

  // --- helpers ---------------------------------------------------------------

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

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
