/**
 * Start hooks whose admission the Worker undid (src/session/lifecycle.ts).
 * A hook's attempts can outlive its answer: the platform may fail a call to
 * the Worker (retried) while the object goes on with it, waiting on another
 * object. If the Worker has since undone that hook's admission, the late
 * attempt must not admit again; it is refused (4008, the answer goes nowhere).
 * Kept in the deciding object's memory, VOID_HOOK_MS each.
 */

/** Far beyond any attempt's run time. */
const VOID_HOOK_MS = 60_000;

export class VoidedHooks {
  private at = new Map<string, number>();

  add(hookId: string): void {
    const now = Date.now();
    for (const [id, at] of this.at) if (at < now - VOID_HOOK_MS) this.at.delete(id);
    this.at.set(hookId, now);
  }

  has(hookId: string): boolean {
    return hookId !== "" && this.at.has(hookId);
  }
}
