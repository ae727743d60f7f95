/**
 * A viewer shard's SQLite tables. A shard whose server never played a stream
 * that exists stores nothing: the tables come with its first write (prepare),
 * and every read before then finds nothing (rows), so a flood of hooks naming
 * made-up streams leaves no storage behind.
 */
import { addColumns } from "../platform/sql";

const SCHEMA = `
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS viewers (
        stream_key TEXT NOT NULL, service_id TEXT NOT NULL, client_id TEXT NOT NULL, ip TEXT NOT NULL, since INTEGER NOT NULL,
        PRIMARY KEY (stream_key, service_id, client_id)) WITHOUT ROWID;
      -- sub: the token's viewer id ('' for none); iat: its issue time (0 for a v1 token, NULL without a valid token);
      -- seat: the viewer holds a seat (src/viewers/seats.ts); webrtc_hook: for a WebRTC player (src/srs/hook.ts isWebrtc), the id of the hook that admitted it.
      CREATE INDEX IF NOT EXISTS viewers_by_client ON viewers (service_id, client_id);
      CREATE TABLE IF NOT EXISTS processes (service_id TEXT PRIMARY KEY, suspended INTEGER NOT NULL, seq INTEGER NOT NULL) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS replaced (service_id TEXT PRIMARY KEY, at INTEGER NOT NULL) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS leases (stream_key TEXT PRIMARY KEY, granted INTEGER NOT NULL, seq INTEGER NOT NULL) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS events (
        stream_key TEXT NOT NULL, slot INTEGER NOT NULL, seq INTEGER NOT NULL, at INTEGER NOT NULL, action TEXT NOT NULL,
        client TEXT NOT NULL, ip TEXT NOT NULL, decision TEXT NOT NULL, reason TEXT NOT NULL,
        PRIMARY KEY (stream_key, slot)) WITHOUT ROWID;`;

export class ShardTables {
  /** The tables exist (this isolate created them, or found them). */
  ready = false;

  constructor(readonly sql: SqlStorage) {}

  /** True if an earlier isolate created the tables: then they are opened (with the columns a newer version adds). */
  open(): boolean {
    if (this.sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'viewers'").toArray().length === 0) return false;
    this.create();
    return true;
  }

  /** Creates the tables, once, before the first write. */
  prepare(): void {
    if (!this.ready) this.create();
  }

  /** A read: nothing before the tables exist. */
  rows<T extends Record<string, SqlStorageValue>>(query: string, ...args: SqlStorageValue[]): T[] {
    return this.ready ? this.sql.exec<T>(query, ...args).toArray() : [];
  }

  private create(): void {
    this.sql.exec(SCHEMA);
    addColumns(this.sql, "viewers", { sub: "TEXT NOT NULL DEFAULT ''", iat: "INTEGER", seat: "INTEGER NOT NULL DEFAULT 0", webrtc_hook: "TEXT" });
    // tight: the stream's last word on the lease (src/viewers/shard-leases.ts), kept across a restart of the shard.
    addColumns(this.sql, "leases", { tight: "INTEGER NOT NULL DEFAULT 0" });
    this.sql.exec("CREATE INDEX IF NOT EXISTS viewers_by_sub ON viewers (stream_key, sub)");
    this.ready = true;
  }
}
