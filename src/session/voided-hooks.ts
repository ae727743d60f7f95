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
 */

/** Far beyond any attempt's run time (a hook's calls get 10 s, its undo 2 s more). */
const VOID_HOOK_MS = 60_000;

const SCHEMA = "CREATE TABLE IF NOT EXISTS voided_hooks (hook_id TEXT PRIMARY KEY, at INTEGER NOT NULL) WITHOUT ROWID";

export class VoidedHooks {
  private at = new Map<string, number>();

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
    return hookId !== "" && this.at.has(hookId);
  }
}
