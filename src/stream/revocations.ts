import type { Revocation } from "../viewers/lease";

/** Active revocations one stream keeps at most: past it, one revocation of every token ({"before"}) does the job. */
export const MAX_REVOCATIONS = 1000;

/**
 * A stream's revocations of play tokens (POST /admin/streams/{app}/{stream}/revocations).
 * A revocation covers tokens issued before a moment, of one viewer id or of
 * every viewer, and goes once every token it covers has expired. They travel
 * with the viewer policy to the shards, which refuse covered tokens (4019).
 * One row per viewer id ('' for every viewer): a later revocation of the same
 * viewer replaces the earlier one (it covers more).
 */
export class Revocations {
  static schema = `
    CREATE TABLE IF NOT EXISTS revocations (sub TEXT PRIMARY KEY, before INTEGER NOT NULL, expires INTEGER NOT NULL) WITHOUT ROWID;`;

  constructor(private sql: SqlStorage) {}

  /** The active ones at `now` (Unix seconds); expired ones are deleted. */
  list(now: number): Revocation[] {
    this.sql.exec("DELETE FROM revocations WHERE expires <= ?", now);
    return this.sql
      .exec<{ sub: string; before: number; expires: number }>("SELECT sub, before, expires FROM revocations ORDER BY sub")
      .toArray()
      .map((r) => ({ sub: r.sub === "" ? null : r.sub, before: r.before, expires: r.expires }));
  }

  /**
   * Adds one; an earlier revocation of the same scope is kept if it covers
   * more. Returns the revocation in force, or null when MAX_REVOCATIONS are
   * active already.
   */
  add(sub: string | null, before: number, expires: number, now: number): Revocation | null {
    const active = this.list(now);
    const same = active.find((r) => r.sub === sub);
    // A revocation of every token is the way out past the cap (one row at most): never refused for it.
    if (!same && sub !== null && active.length >= MAX_REVOCATIONS) return null;
    const merged = { sub, before: Math.max(before, same?.before ?? 0), expires: Math.max(expires, same?.expires ?? 0) };
    this.sql.exec("INSERT OR REPLACE INTO revocations (sub, before, expires) VALUES (?, ?, ?)", sub ?? "", merged.before, merged.expires);
    // Revocations of one viewer that this one covers entirely (earlier tokens, gone no later) add nothing: they go,
    // which also makes room under the cap.
    if (sub === null) this.sql.exec("DELETE FROM revocations WHERE sub != '' AND before <= ? AND expires <= ?", merged.before, merged.expires);
    return merged;
  }

  clear(): void {
    this.sql.exec("DELETE FROM revocations");
  }
}
