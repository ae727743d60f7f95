import { maxTokenTtlS } from "../config";
import type { Env } from "../env";
import type { Revocation } from "../viewers/lease";

/** Active revocations one stream keeps at most: past it, one revocation of every token ({"before"}) does the job. */
export const MAX_REVOCATIONS = 1000;

/**
 * A stream's revocations of play tokens (POST /admin/streams/{app}/{stream}/revocations).
 * A revocation covers tokens issued before a moment, of one viewer id or of
 * every viewer. They travel with the viewer policy to the shards, which
 * refuse covered tokens (4019). One row per viewer id ('' for every viewer):
 * a later revocation of the same viewer is merged into it (the later
 * `before` and the later expiry of the two), so it covers what both did.
 *
 * How long one lasts:
 * - Of one viewer: until every token it covers has expired, `before` +
 *   MAX_TOKEN_TTL_S (a v2 token lives no longer from its issue), with the
 *   setting as it is when the revocation is read, not when it was made: a
 *   raised setting makes tokens issued before it live longer, and so their
 *   revocation. (`expires` as stored, sized when it was made, stands in when
 *   the setting cannot be read.)
 * - Of every viewer: for good. It covers v1 tokens, which carry no issue
 *   time, so none of them can be told to have been issued after it, and a v1
 *   token's expiry is bounded only from the moment it is played (exp − now ≤
 *   MAX_TOKEN_TTL_S): one issued before the revocation, expiring later than
 *   any bound, can be played at any time. The stream refuses v1 tokens from
 *   then on. One row at most per stream.
 */
export class Revocations {
  static schema = `
    CREATE TABLE IF NOT EXISTS revocations (sub TEXT PRIMARY KEY, before INTEGER NOT NULL, expires INTEGER NOT NULL) WITHOUT ROWID;`;

  constructor(
    private sql: SqlStorage,
    private env: Env,
  ) {}

  /** The active ones at `now` (Unix seconds); expired ones are deleted. */
  list(now: number): Revocation[] {
    const ttl = this.ttl();
    if (ttl === null) this.sql.exec("DELETE FROM revocations WHERE sub != '' AND expires <= ?", now);
    else this.sql.exec("DELETE FROM revocations WHERE sub != '' AND before + ? <= ?", ttl, now);
    return this.sql
      .exec<{ sub: string; before: number; expires: number }>("SELECT sub, before, expires FROM revocations ORDER BY sub")
      .toArray()
      .map((r) => ({ sub: r.sub === "" ? null : r.sub, before: r.before, expires: r.sub === "" ? null : ttl === null ? r.expires : r.before + ttl }));
  }

  /**
   * Adds one (`expires`: its end as sized now, kept for when the setting
   * cannot be read); an earlier revocation of the same scope is kept if it
   * covers more. Returns the revocation in force, or null when
   * MAX_REVOCATIONS are active already.
   */
  add(sub: string | null, before: number, expires: number, now: number): Revocation | null {
    const active = this.list(now);
    const same = active.find((r) => r.sub === sub);
    // Of one viewer, covering only tokens expired by now ("before" long past): nothing to keep, and not a refusal
    // (null reads as the cap). The one in force, if any, covers more; the caller still ends live sessions it covers.
    if (sub !== null) {
      const ttl = this.ttl();
      const ends = ttl === null ? expires : before + ttl;
      if (ends <= now) return same ?? { sub, before, expires: ends };
    }
    // A revocation of every token is the way out past the cap (one row at most): never refused for it.
    if (!same && sub !== null && active.length >= MAX_REVOCATIONS) return null;
    const merged = { before: Math.max(before, same?.before ?? 0), expires: Math.max(expires, same?.expires ?? 0) };
    this.sql.exec("INSERT OR REPLACE INTO revocations (sub, before, expires) VALUES (?, ?, ?)", sub ?? "", merged.before, merged.expires);
    // Revocations of one viewer that this one covers entirely (earlier tokens; it lasts for good) add nothing:
    // they go, which also makes room under the cap.
    if (sub === null) this.sql.exec("DELETE FROM revocations WHERE sub != '' AND before <= ?", merged.before);
    return this.list(now).find((r) => r.sub === sub) ?? null;
  }

  clear(): void {
    this.sql.exec("DELETE FROM revocations");
  }

  /** MAX_TOKEN_TTL_S as set now; null when it is malformed (token plays answer 500 naming it meanwhile). */
  private ttl(): number | null {
    try {
      return maxTokenTtlS(this.env);
    } catch {
      return null;
    }
  }
}
