/**
 * A stream's policy version and the push of it still owed to its viewer shards (tables
 * policy_version and push_pending). Every PUT, DELETE and revocation advances the version (a shard
 * keeps the newest policy it was told, whatever the order of arrival) and owes every shard a push;
 * the stream object pushes at once and, for shards a push could not reach, again from its alarm.
 */
export interface PendingPush {
  key: string;
  version: number;
  /** No round has run yet: every shard is told; else only those a round could not reach. */
  whole: boolean;
}

export class PolicyPushes {
  static schema = `
    CREATE TABLE IF NOT EXISTS policy_version (id INTEGER PRIMARY KEY CHECK (id = 1), v INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS push_pending (
      id INTEGER PRIMARY KEY CHECK (id = 1), stream_key TEXT NOT NULL, version INTEGER NOT NULL, whole INTEGER NOT NULL);`;

  /** The current policy version. */
  version: number;

  constructor(private sql: SqlStorage) {
    this.version = sql.exec<{ v: number }>("SELECT v FROM policy_version").toArray()[0]?.v ?? 0;
  }

  /** A new version of the stream `key`'s policy, owed to every shard. */
  advance(key: string): void {
    this.version++;
    this.sql.exec("INSERT OR REPLACE INTO policy_version (id, v) VALUES (1, ?)", this.version);
    this.owe(key, true);
  }

  /** A push of the current version owed (`whole`: to every shard, else to those not reached). */
  owe(key: string, whole: boolean): void {
    this.sql.exec("INSERT OR REPLACE INTO push_pending (id, stream_key, version, whole) VALUES (1, ?, ?, ?)", key, this.version, whole ? 1 : 0);
  }

  pending(): PendingPush | null {
    const r = this.sql.exec<{ stream_key: string; version: number; whole: number }>("SELECT stream_key, version, whole FROM push_pending").toArray()[0];
    return r ? { key: r.stream_key, version: r.version, whole: r.whole === 1 } : null;
  }

  /** Every shard has the owed version. */
  settled(): void {
    this.sql.exec("DELETE FROM push_pending");
  }

  /** A round reached some shards: only those it could not reach are owed the push. */
  reachedSome(): void {
    this.sql.exec("UPDATE push_pending SET whole = 0");
  }
}
