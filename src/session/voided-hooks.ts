/**
 * Start hooks whose admission the Worker undid (src/session/lifecycle.ts).
 * A hook's attempts can outlive its answer: the platform may fail a call to
 * the Worker (retried) while the object goes on with it, waiting on another
 * object, and a call the Worker gave up on at the hook's deadline may still
 * be on its way. If the Worker has since undone that hook's admission, the
 * late attempt must not admit again; it is refused (4008, the answer goes
 * nowhere). Kept VOID_HOOK_MS each, in memory (every on_play checks) and
 * stored, so an object evicted between the undo and the late attempt still
 * refuses it (an undo is rare: one row then).
 *
 * An undo ends the session it names only if no later hook of the same client
 * was allowed meanwhile (SRS sent its on_publish / on_play again): each
 * allowed start hook confirms its session (in memory, CONFIRMED_KEPT at most;
 * beyond that, or after an eviction, an undo ends the session it names).
 *
 * A stop event (no hook to void) ends the session of the hook that confirmed
 * it: that hook is void from then on too (in memory only, CONFIRMED_KEPT at
 * most), so an attempt of it still on its way (the platform retried the call,
 * the retry was answered, the client started and stopped) admits nothing.
 */

/** Far beyond any attempt's run time (a hook's calls get 10 s, its undo 2 s more). */
const VOID_HOOK_MS = 60_000;
const CONFIRMED_KEPT = 10_000;

const SCHEMA = "CREATE TABLE IF NOT EXISTS voided_hooks (hook_id TEXT PRIMARY KEY, at INTEGER NOT NULL) WITHOUT ROWID";

export class VoidedHooks {
  private at = new Map<string, number>();
  /** Session key → the start hook that last allowed it. */
  private confirmedBy = new Map<string, string>();
  /** Hooks whose session a stop event ended (in memory only). */
  private stopped = new Set<string>();

  /** Reads the hooks voided within VOID_HOOK_MS (the object's tables exist). */
  load(sql: SqlStorage): void {
    sql.exec(SCHEMA);
    sql.exec("DELETE FROM voided_hooks WHERE at < ?", Date.now() - VOID_HOOK_MS);
    for (const r of sql.exec<{ hook_id: string; at: number }>("SELECT hook_id, at FROM voided_hooks")) this.at.set(r.hook_id, r.at);
  }

  /** Voids a hook, stored in `sql` (the object's tables exist). */
  add(hookId: string, sql: SqlStorage): void {
    const now = Date.now();
    for (const [id, at] of this.at) if (at < now - VOID_HOOK_MS) this.at.delete(id);
    this.at.set(hookId, now);
    sql.exec(SCHEMA);
    sql.exec("DELETE FROM voided_hooks WHERE at < ?", now - VOID_HOOK_MS);
    sql.exec("INSERT OR REPLACE INTO voided_hooks (hook_id, at) VALUES (?, ?)", hookId, now);
  }

  has(hookId: string): boolean {
    return hookId !== "" && (this.at.has(hookId) || this.stopped.has(hookId));
  }

  /** A start hook allowed the session `key` (an admission or a repeat): the session is that hook's. */
  confirm(key: string, hookId: string): void {
    if (this.confirmedBy.size >= CONFIRMED_KEPT) this.confirmedBy.clear();
    this.confirmedBy.set(key, hookId);
  }

  /**
   * A session is about to end. With `voidHook` (an undo), that hook is voided, and the answer is
   * false if the session is another hook's since (the undo leaves it); else true. Without, and
   * `stopEvent` (SRS's own stop of the session, which it sends only after a start hook was answered
   * allowed), the hook that confirmed the session is void from now on (in memory). Other ends (a
   * revocation, a replaced screen) void nothing: a retry of that hook is answered by the rules.
   */
  ending(key: string, voidHook: string | undefined, sql: SqlStorage, stopEvent = false): boolean {
    const by = this.confirmedBy.get(key);
    if (voidHook) {
      this.add(voidHook, sql);
      if (by !== undefined && by !== voidHook) return false;
    } else if (stopEvent && by !== undefined) {
      if (this.stopped.size >= CONFIRMED_KEPT) this.stopped.clear();
      this.stopped.add(by);
    }
    this.confirmedBy.delete(key);
    return true;
  }

  /** The start hook that last allowed the session `key` (undefined: none known, e.g. after an eviction). */
  confirmerOf(key: string): string | undefined {
    return this.confirmedBy.get(key);
  }
}
