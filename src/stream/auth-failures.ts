/**
 * The brute-force limit: failed publish keys and failed play tokens, counted
 * per client ip per stream in fixed one-minute windows, publishes and plays
 * apart.
 *
 * What it protects: not the key space (keys carry 192 random bits, tokens a
 * 256-bit HMAC: guessing is hopeless at any rate), but the stream's object and
 * its decision log. Once an ip is over the limit, its further failures are
 * answered "rate limited" without a write and without a log entry, so a
 * guesser cannot flush real decisions out of the 100-entry log.
 *
 * It never refuses a correct key or a valid token: the check runs only after
 * the key or token failed. So an attacker who claims someone else's ip (SRS
 * takes the ip of HTTP-FLV, HLS and WebRTC viewers from X-Forwarded-For) or
 * shares a carrier NAT with them cannot lock them out, and viewers' failures,
 * counted apart, never touch a publisher's counter.
 */
export type AttemptKind = "publish" | "play";

/** The limit counts failures in windows this long. */
export const WINDOW_MS = 60_000;

/**
 * Failures per stream per window, over all ips, that are counted and logged.
 * Past it (a guesser rotating spoofed ips), failures cost no write and no
 * log line: the log keeps the real decisions.
 */
export const STREAM_FAILURES_LOGGED = 20;

export class AuthFailures {
  /** Failures at this stream in the current window, all ips (in memory: a lost count only relaxes the budget). */
  private window = { start: 0, failures: 0 };

  constructor(private sql: SqlStorage) {}

  /** Spends one failure of the stream-wide budget: "ok", "last" (this one uses it up) or "over". */
  spendBudget(now = Date.now()): "ok" | "last" | "over" {
    if (now - this.window.start >= WINDOW_MS) this.window = { start: now, failures: 0 };
    this.window.failures++;
    if (this.window.failures < STREAM_FAILURES_LOGGED) return "ok";
    return this.window.failures === STREAM_FAILURES_LOGGED ? "last" : "over";
  }

  overBudget(now = Date.now()): boolean {
    return now - this.window.start < WINDOW_MS && this.window.failures > STREAM_FAILURES_LOGGED;
  }

  static schema = `
    CREATE TABLE IF NOT EXISTS auth_failures (
      kind TEXT NOT NULL, ip TEXT NOT NULL, window_start INTEGER NOT NULL, failures INTEGER NOT NULL,
      PRIMARY KEY (kind, ip)) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS auth_failures_by_window ON auth_failures (window_start);
    DROP TABLE IF EXISTS guesses;`;

  /** Has this ip used up its failures of this kind at this stream in the current window? */
  overLimit(kind: AttemptKind, ip: string, limit: number, now = Date.now()): boolean {
    const row = this.sql
      .exec<{ window_start: number; failures: number }>("SELECT window_start, failures FROM auth_failures WHERE kind = ? AND ip = ?", kind, ip)
      .toArray()[0];
    return !!row && now - row.window_start < WINDOW_MS && row.failures >= limit;
  }

  /** Counts one failure (a wrong key, a forged or malformed token) against the ip. */
  count(kind: AttemptKind, ip: string, now = Date.now()): void {
    this.sql.exec("DELETE FROM auth_failures WHERE window_start <= ?", now - WINDOW_MS);
    this.sql.exec(
      `INSERT INTO auth_failures (kind, ip, window_start, failures) VALUES (?, ?, ?, 1)
       ON CONFLICT (kind, ip) DO UPDATE SET failures = failures + 1`,
      kind, ip, now,
    );
  }
}
