/**
 * What a stream object remembers, in memory, of the on_publish attempts it
 * is deciding or has decided, for the platform's worst case: an object call
 * that ran but whose answer was lost, so that the Worker retried it (a second
 * attempt of the same hook) or gave up and undid it
 * (src/session/voided-hooks.ts keeps the undone hooks).
 * - A stop event of a session while one of its publish decisions waits (on
 *   the registry, on SRS's API) makes that attempt late: SRS sends on_unpublish
 *   only after a start hook of the session was answered allowed, so another
 *   attempt was; this one admits nothing (4008, never sent to SRS).
 * - A takeover writes the new publisher's index entry itself before it kicks
 *   the old one (src/stream/publisher-api.ts): every allowed answer of that
 *   hook, a retry's included, then says `indexed`, so the Worker keeps the
 *   admission even if its own index write failed.
 * Lost with an eviction: the rules then fall back to what the stored state
 * alone tells (src/session/lifecycle.ts).
 */
import type { SessionId } from "../srs/hook";
import { Denials, type Decision } from "./rules";

/** A session's key in these maps and in VoidedHooks: server, process and client id. */
export function sessionKey(s: SessionId): string {
  return `${s.serverId}\n${s.serviceId}\n${s.clientId}`;
}

/** Sessions remembered as indexed by their hook's takeover. */
const INDEXED_KEPT = 10_000;

export class PublishAttempts {
  /** Publish decisions under way, by session key. */
  private deciding = new Map<string, Set<{ stopped: boolean }>>();
  /** Session key → the hook whose takeover wrote its index entry before the kick and admitted it. */
  private indexedBy = new Map<string, string>();

  /** A decision of the session `key` begins; `late()` says whether a stop event made it late since, `done()` ends it. */
  begin(key: string): { late: () => Decision | null; done: () => void } {
    const mark = { stopped: false };
    const marks = this.deciding.get(key) ?? new Set();
    marks.add(mark);
    this.deciding.set(key, marks);
    return {
      late: () => (mark.stopped ? { allow: false, denial: Denials.stoppedWhileDeciding } : null),
      done: () => {
        marks.delete(mark);
        if (marks.size === 0 && this.deciding.get(key) === marks) this.deciding.delete(key);
      },
    };
  }

  /** A stop event of the session: its decisions under way are late. */
  stopped(key: string): void {
    for (const mark of this.deciding.get(key) ?? []) mark.stopped = true;
  }

  /** The hook's takeover indexed the session it admitted. */
  indexed(key: string, hookId: string): void {
    if (this.indexedBy.size >= INDEXED_KEPT) this.indexedBy.clear();
    this.indexedBy.set(key, hookId);
  }

  isIndexedBy(key: string, hookId: string): boolean {
    return hookId !== "" && this.indexedBy.get(key) === hookId;
  }

  /** The session ended: nothing of it is indexed by a takeover any more. */
  ended(key: string): void {
    this.indexedBy.delete(key);
  }
}
