/**
 * Answers of the calls that end sessions by hand (an operator's end, a
 * revocation, a seat given to a newer screen), kept for a while so that a
 * retry of a call whose answer the platform lost gets the first attempt's
 * answer. Such a call is safe to repeat (what ended stays ended), but its
 * answer is what the caller kicks and reports: a retry that found nothing
 * left to end would kick nothing and send no event for sessions the first
 * attempt ended (src/platform/retry.ts: a retryable error may come after the
 * object acted).
 *
 * The caller draws one call id per call and sends it with every attempt.
 * An answer is stored in the same synchronous step as the ends it reports,
 * so the two are committed together; an answer that ended nothing is not
 * stored (a retry finds the same nothing, and an object that ends nothing
 * writes nothing).
 */

/** Far past every retry's budget (RETRY.budgetMs); pruned at each new answer. */
export const ANSWER_KEPT_MS = 10 * 60_000;

export class KeptAnswers {
  private created = false;

  constructor(private readonly sql: SqlStorage) {}

  /** `run`'s answer, or the answer it gave an earlier attempt of the same call (`callId` undefined: not kept). */
  once<T>(callId: string | undefined, run: () => T, endedNothing: (answer: T) => boolean = (a) => (Array.isArray(a) ? a.length === 0 : !a)): T {
    if (callId === undefined) return run();
    if (this.exists()) {
      const kept = this.sql.exec<{ answer: string }>("SELECT answer FROM kept_answers WHERE call_id = ?", callId).toArray()[0];
      if (kept) return JSON.parse(kept.answer) as T;
    }
    const answer = run();
    if (endedNothing(answer)) return answer;
    // The ends are done: an answer that cannot be kept (too big for a row, 2 MB on Cloudflare: some 20,000 viewers
    // of one stream on one edge) is still answered, only its retry would find nothing. Thrown, it would have the
    // caller report an object that ended its sessions as unreachable, and kick none of them.
    try {
      if (!this.exists()) {
        this.sql.exec("CREATE TABLE IF NOT EXISTS kept_answers (call_id TEXT PRIMARY KEY, answer TEXT NOT NULL, at INTEGER NOT NULL) WITHOUT ROWID");
        this.created = true;
      }
      const now = Date.now();
      this.sql.exec("DELETE FROM kept_answers WHERE at < ?", now - ANSWER_KEPT_MS);
      this.sql.exec("INSERT OR REPLACE INTO kept_answers (call_id, answer, at) VALUES (?, ?, ?)", callId, JSON.stringify(answer), now);
    } catch (err) {
      console.error(JSON.stringify({ error: "answer of an end by hand not kept: a retry of it would answer nothing", call: callId, detail: String(err).slice(0, 300) }));
    }
    return answer;
  }

  private exists(): boolean {
    if (!this.created) {
      this.created = this.sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'kept_answers'").toArray().length > 0;
    }
    return this.created;
  }
}
