/**
 * Each stream's latest counts of sessions held, second by second, in memory: what a restart's fence
 * needs to take its sessions back exactly from the minute holding the old process's last heartbeat
 * (src/usage/book.ts retract), where the restarted process's viewers, admitted before the fence's
 * notice (players reconnect within seconds; SRS's first heartbeat comes later), were counted beside
 * them. Lost with the object's memory: a fence then leaves that minute's peak as recorded.
 */
import { floorTo, MINUTE_MS } from "./time";

/**
 * How far back the counts are kept. A fence within 3 minutes of the heartbeat finds its whole minute;
 * fences come seconds after it (at the restarted process's first heartbeat).
 */
export const SECONDS_KEPT_MS = 4 * MINUTE_MS;
/** A second's changes kept one by one, up to this many (then only its peak: that second is read as an upper bound). */
const CHANGES_PER_SECOND_KEPT = 8;

/** One second of a stream's counts: the most held, and each change with its time (null once there were too many). */
interface Second {
  peak: number;
  changes: [at: number, count: number][] | null;
}

/** A stream's seconds (by the second's start, oldest first), and since when they are whole (every change since then is in them). */
interface StreamSeconds {
  since: number;
  seconds: Map<number, Second>;
}

export class RecentCounts {
  private streams = new Map<string, StreamSeconds>();
  private prunedAt = 0;
  /** When this object (its memory) started. */
  private startedAt = Date.now();

  /** The stream's count is `count` from `at` on. */
  note(streamKey: string, count: number, at: number): void {
    let record = this.streams.get(streamKey);
    // A stream with nothing kept had no change since this object started, or for SECONDS_KEPT_MS: whole from then.
    if (!record) this.streams.set(streamKey, (record = { since: Math.max(this.startedAt, at - SECONDS_KEPT_MS), seconds: new Map() }));
    const second = floorTo(at, 1000);
    const kept = record.seconds.get(second);
    if (!kept) record.seconds.set(second, { peak: count, changes: [[at, count]] });
    else {
      kept.peak = Math.max(kept.peak, count);
      if (kept.changes && kept.changes.length < CHANGES_PER_SECOND_KEPT) kept.changes.push([at, count]);
      else kept.changes = null;
    }
    dropOld(record, at);
    // The other streams' old seconds go now and then (a stream that no longer changes keeps its last ones until then).
    if (at - this.prunedAt >= SECONDS_KEPT_MS) {
      this.prunedAt = at;
      for (const [key, r] of this.streams) if (dropOld(r, at) === 0) this.streams.delete(key);
    }
  }

  /**
   * The most held in `minute` before `start`, and from it on (in the second holding `start`, change by change;
   * a second with too many changes counts as before it: an upper bound); undefined when the counts kept do not
   * cover the whole minute (forgotten, or this object started within it).
   */
  around(streamKey: string, minute: number, start: number): { upTo: number; after: number } | undefined {
    const record = this.streams.get(streamKey);
    if (!record || record.since > minute) return undefined;
    let upTo = 0;
    let after = 0;
    const cut = floorTo(start, 1000);
    for (const [second, kept] of record.seconds) {
      if (second < minute || second >= minute + MINUTE_MS) continue;
      if (second < cut || (second === cut && !kept.changes)) upTo = Math.max(upTo, kept.peak);
      else if (second > cut) after = Math.max(after, kept.peak);
      else {
        for (const [at, count] of kept.changes!) {
          if (at < start) upTo = Math.max(upTo, count);
          else after = Math.max(after, count);
        }
      }
    }
    return { upTo, after };
  }

  /** n fewer were held from `start` on (a fence took them back): the counts kept since say so, for a later fence. */
  lower(streamKey: string, start: number, n: number): void {
    const record = this.streams.get(streamKey);
    if (!record) return;
    const cut = floorTo(start, 1000);
    for (const [second, kept] of record.seconds) {
      if (second < cut) continue;
      if (kept.changes) {
        for (const c of kept.changes) if (c[0] >= start) c[1] = Math.max(0, c[1] - n);
        kept.peak = Math.max(0, ...kept.changes.map((c) => c[1]));
      } else if (second > cut) kept.peak = Math.max(0, kept.peak - n);
    }
  }
}

/** Drops a stream's seconds older than SECONDS_KEPT_MS before `at`; how many are left. */
function dropOld(record: StreamSeconds, at: number): number {
  for (const s of record.seconds.keys()) {
    if (s >= at - SECONDS_KEPT_MS) break;
    record.seconds.delete(s);
    record.since = s + 1000;
  }
  return record.seconds.size;
}
