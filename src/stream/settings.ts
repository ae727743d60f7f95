/**
 * A stream's settings as the operator's PUT sets them (table stream, one row): the hash of its
 * publish key and its policy. The stream object (src/stream/object.ts) decides with them, pushes
 * their viewer part to the viewer shards, and reports them in the admin API.
 */
import { addColumns } from "../platform/sql";
import type { Revocation, ViewerPolicy } from "../viewers/lease";
import { streamKey, type StreamName } from "./name";
import type { OnDuplicatePublish, OnExtraViewerSession, PlayAuth, StreamPolicy } from "./rules";
import type { StreamState } from "./state";

/** A PUT /admin/streams/{app}/{stream} body, validated (src/admin/validate.ts): absent fields keep their value. */
export interface PolicyChange {
  maxViewers?: number | null;
  playAuth?: PlayAuth;
  onDuplicatePublish?: OnDuplicatePublish;
  maxSessionsPerViewer?: number | null;
  onExtraViewerSession?: OnExtraViewerSession;
  rotateKey?: boolean;
}

/** A key minted by the Worker; the object keeps only its hash, and only if it creates or rotates. */
export interface CandidateKey {
  key: string;
  hash: string;
}

interface StreamRow extends Record<string, SqlStorageValue> {
  vhost: string;
  app: string;
  stream: string;
  key_hash: string;
  max_viewers: number | null;
  play_auth: string;
  on_duplicate_publish: string;
  max_sessions_per_viewer: number | null;
  on_extra_viewer_session: string;
  created_at: number;
  updated_at: number;
}

/** The settings fields of the admin API's stream state. */
export type SettingsState = Pick<
  StreamState,
  "vhost" | "app" | "stream" | "maxViewers" | "playAuth" | "onDuplicatePublish" | "maxSessionsPerViewer" | "onExtraViewerSession" | "createdAt" | "updatedAt"
>;

export class StreamSettings {
  static schema = `
    CREATE TABLE IF NOT EXISTS stream (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      vhost TEXT NOT NULL, app TEXT NOT NULL, stream TEXT NOT NULL,
      key_hash TEXT NOT NULL, max_viewers INTEGER, play_auth TEXT NOT NULL,
      created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);`;

  /** Null: the stream does not exist (never created, or deleted). */
  private row: StreamRow | null;

  /** After `schema` ran: upgrades the table and reads the row. */
  constructor(private sql: SqlStorage) {
    addColumns(sql, "stream", {
      on_duplicate_publish: "TEXT NOT NULL DEFAULT 'deny'",
      max_sessions_per_viewer: "INTEGER",
      on_extra_viewer_session: "TEXT NOT NULL DEFAULT 'deny'",
    });
    this.row = sql.exec<StreamRow>("SELECT * FROM stream").toArray()[0] ?? null;
  }

  get exists(): boolean {
    return this.row !== null;
  }

  /** vhost/app/stream; null when the stream does not exist. */
  get key(): string | null {
    return this.row && streamKey(this.row);
  }

  /** Undefined when the stream does not exist; null: unlimited. */
  get maxViewers(): number | null | undefined {
    return this.row ? this.row.max_viewers : undefined;
  }

  get playAuth(): PlayAuth | null {
    return this.row && (this.row.play_auth as PlayAuth);
  }

  get onDuplicatePublish(): OnDuplicatePublish | null {
    return this.row && (this.row.on_duplicate_publish as OnDuplicatePublish);
  }

  get keyHash(): string | null {
    return this.row && this.row.key_hash;
  }

  /**
   * Creates the stream or changes it: fields absent from `change` keep their value; the key is
   * `candidate` if the stream is created or `rotateKey` asks. Returns the hash a rotation replaced.
   */
  apply(name: StreamName, change: PolicyChange, candidate: CandidateKey): { created: boolean; replacedKeyHash?: string } {
    const now = Date.now();
    const old = this.row;
    const rotate = old === null || change.rotateKey === true;
    const row: StreamRow = {
      vhost: name.vhost,
      app: name.app,
      stream: name.stream,
      key_hash: rotate ? candidate.hash : old.key_hash,
      max_viewers: change.maxViewers !== undefined ? change.maxViewers : (old?.max_viewers ?? null),
      play_auth: change.playAuth ?? old?.play_auth ?? "open",
      on_duplicate_publish: change.onDuplicatePublish ?? old?.on_duplicate_publish ?? "deny",
      max_sessions_per_viewer: change.maxSessionsPerViewer !== undefined ? change.maxSessionsPerViewer : (old?.max_sessions_per_viewer ?? null),
      on_extra_viewer_session: change.onExtraViewerSession ?? old?.on_extra_viewer_session ?? "deny",
      created_at: old?.created_at ?? now,
      updated_at: now,
    };
    this.sql.exec(
      `INSERT OR REPLACE INTO stream (id, vhost, app, stream, key_hash, max_viewers, play_auth, on_duplicate_publish,
         max_sessions_per_viewer, on_extra_viewer_session, created_at, updated_at)
       VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      row.vhost, row.app, row.stream, row.key_hash, row.max_viewers, row.play_auth, row.on_duplicate_publish,
      row.max_sessions_per_viewer, row.on_extra_viewer_session, row.created_at, row.updated_at,
    );
    this.row = row;
    return old === null ? { created: true } : rotate ? { created: false, replacedKeyHash: old.key_hash } : { created: false };
  }

  /** Puts the key `previous` back, only if the key is still `ifCurrent` (so a concurrent rotation is never undone). */
  restoreKey(ifCurrent: string, previous: string): boolean {
    if (!this.row || this.row.key_hash !== ifCurrent) return false;
    this.sql.exec("UPDATE stream SET key_hash = ? WHERE id = 1", previous);
    this.row = { ...this.row, key_hash: previous };
    return true;
  }

  /** Deletes the stream: returns its key, or null if it did not exist. */
  remove(): string | null {
    const key = this.key;
    if (key === null) return null;
    this.sql.exec("DELETE FROM stream");
    this.row = null;
    return key;
  }

  /** What a publish or a refused play is decided on. */
  policy(): StreamPolicy | null {
    if (!this.row) return null;
    return { keyHash: this.row.key_hash, maxViewers: this.row.max_viewers, playAuth: this.row.play_auth as PlayAuth };
  }

  /** What the viewer shards are told, with the stream's active revocations. */
  viewerPolicy(revocations: Revocation[]): ViewerPolicy | null {
    if (!this.row) return null;
    return {
      maxViewers: this.row.max_viewers,
      playAuth: this.row.play_auth as PlayAuth,
      maxSessionsPerViewer: this.row.max_sessions_per_viewer,
      onExtraViewerSession: this.row.on_extra_viewer_session as OnExtraViewerSession,
      revocations,
    };
  }

  state(): SettingsState | null {
    if (!this.row) return null;
    return {
      vhost: this.row.vhost,
      app: this.row.app,
      stream: this.row.stream,
      maxViewers: this.row.max_viewers,
      playAuth: this.row.play_auth as PlayAuth,
      onDuplicatePublish: this.row.on_duplicate_publish as OnDuplicatePublish,
      maxSessionsPerViewer: this.row.max_sessions_per_viewer,
      onExtraViewerSession: this.row.on_extra_viewer_session as OnExtraViewerSession,
      createdAt: new Date(this.row.created_at).toISOString(),
      updatedAt: new Date(this.row.updated_at).toISOString(),
    };
  }
}
