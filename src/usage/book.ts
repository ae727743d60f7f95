/**
 * Usage as one object records it (a stream object its publishers, a viewer shard its server's
 * viewers of every stream), in SQLite so that it survives the object's restarts:
 *
 * - usage_hours: per stream and hour, the milliseconds of viewer and publisher sessions in that
 *   hour (a session is added when it ends, split over the hours it spans), and the peak number
 *   of sessions held at once here within the hour;
 * - usage_minutes: per stream, each minute in which the number of sessions held here changed,
 *   with its peak and the number held after the last change (which then holds until the next).
 *
 * Hour rows are kept USAGE_RETENTION_DAYS (older ones are never reported, and deleted by prune()),
 * minute rows MINUTES_KEPT_MS (the console's last hour, and a publish's peak viewers), except each
 * stream's newest older one while it says sessions are held (the count the kept minutes start from,
 * and, as the latest row, how many are held now; one saying none goes too).
 *
 * Minute rows and hour peaks wait in memory until flush() (the viewer shard calls it at most a
 * second later): a busy stream changes its count many times a minute and gets one row write per
 * minute instead of one per change. Reads flush first. A crash before the flush loses only the
 * peaks of that second (reconcile() takes up the counts held after a restart); session time
 * (addSession) is written at once, with the decision that ended the session.
 */
import { addColumns } from "../platform/sql";
import { RecentCounts } from "./recent-counts";
import { floorTo, HOUR_MS, MINUTE_MS } from "./time";

export { floorTo, HOUR_MS, MINUTE_MS };
export const MINUTES_KEPT_MS = 48 * HOUR_MS;
/** A flush that fails this many times in a row drops what waits (usage/book.ts flush). */
const FLUSH_TRIES = 3;
/** Pruning runs at most this often per object. */
const PRUNE_EVERY_MS = HOUR_MS;
export type UsageRole = "viewer" | "publisher";

/** One hour of one object's usage of one stream. */
export interface HourUsage {
  hour: number;
  viewerMs: number;
  publishMs: number;
  peak: number;
}

/** A session still open, counted up to `now` in queries. */
export interface OpenSession {
  since: number;
}


export class UsageBook {
  private static schema = `
    CREATE TABLE IF NOT EXISTS usage_hours (
      stream_key TEXT NOT NULL, hour INTEGER NOT NULL, viewer_ms INTEGER NOT NULL DEFAULT 0, publish_ms INTEGER NOT NULL DEFAULT 0,
      peak INTEGER NOT NULL DEFAULT 0, last_end INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (stream_key, hour)) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS usage_minutes (
      stream_key TEXT NOT NULL, minute INTEGER NOT NULL, peak INTEGER NOT NULL, last INTEGER NOT NULL,
      PRIMARY KEY (stream_key, minute)) WITHOUT ROWID;`;

  private ready: boolean;
  private prunedAt = 0;
  /**
   * Per stream, what this object last wrote of it: its latest minute row, and the peak it wrote
   * for the current hour (a floor of the row's: writes take the MAX). Spares a read and most
   * peak writes on every change of the count; a stream not in it is read from the table.
   */
  private written = new Map<string, { minute: number; last: number; hour: number; hourPeak: number }>();
  /** Minute rows not yet written, per stream and minute (flush). */
  private unwritten = new Map<string, Map<number, { peak: number; last: number }>>();
  /** Hour peaks not yet written, per stream and hour (flush). */
  private unwrittenPeaks = new Map<string, Map<number, number>>();
  private failedFlushes = 0;
  /** Each stream's latest counts, second by second (a fence's minute, src/usage/recent-counts.ts). */
  private recent = new RecentCounts();

  /** `retentionMs`: USAGE_RETENTION_DAYS as the object reads it. */
  constructor(
    private sql: SqlStorage,
    private retentionMs: () => number,
  ) {
    this.ready = sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'usage_hours'").toArray().length > 0;
    // When the latest session ended (reconcile()): tables of a version without it.
    if (this.ready) addColumns(sql, "usage_hours", { last_end: "INTEGER NOT NULL DEFAULT 0" });
  }

  private prepare(): void {
    if (this.ready) return;
    this.sql.exec(UsageBook.schema);
    this.ready = true;
  }

  /** A session of `role` ran from `since` to `end`: its time goes to the hours it spans (those still kept). */
  addSession(streamKey: string, role: UsageRole, since: number, end: number): void {
    const now = Date.now();
    const from = Math.max(since, this.oldestKept(now));
    if (end <= from) return;
    this.prepare();
    const column = role === "viewer" ? "viewer_ms" : "publish_ms";
    // The hour of its end also notes when it ended, in the same write: a restart that lost the count's change with
    // the memory dates it by that (reconcile()).
    for (const [hour, ms] of splitByHour(from, end)) {
      this.sql.exec(
        `INSERT INTO usage_hours (stream_key, hour, ${column}, last_end) VALUES (?, ?, ?, ?)
         ON CONFLICT (stream_key, hour) DO UPDATE SET ${column} = ${column} + excluded.${column}, last_end = MAX(last_end, excluded.last_end)`,
        streamKey, hour, ms, hour + HOUR_MS > end ? end : 0,
      );
    }
    this.pruneNow(now);
  }

  /** The number of sessions held here for the stream is now `count` (after an admission or an end). */
  held(streamKey: string, count: number, at = Date.now()): void {
    this.prepare();
    const minute = floorTo(at, MINUTE_MS);
    const hour = floorTo(at, HOUR_MS);
    const known = this.written.get(streamKey);
    const before = known ?? this.latest(streamKey);
    const carried = before?.last ?? 0;
    if (before) {
      // The hours the previous count held through, without a change, had it as their peak.
      const start = Math.max(floorTo(before.minute, HOUR_MS) + HOUR_MS, this.oldestKept(at));
      for (let h = start; h < hour; h += HOUR_MS) this.peakAt(streamKey, h, carried);
    }
    const peak = Math.max(carried, count);
    const hourPeak = known?.hour === hour ? known.hourPeak : 0;
    if (peak > hourPeak) this.peakAt(streamKey, hour, peak);
    const minutes = inner(this.unwritten, streamKey);
    const row = minutes.get(minute);
    minutes.set(minute, { peak: Math.max(row?.peak ?? 0, peak), last: count });
    this.recent.note(streamKey, count, at);
    // Nothing held: once flushed, the table says as much as the memory would (only streams with sessions here stay in it).
    if (count === 0) this.written.delete(streamKey);
    else this.written.set(streamKey, { minute, last: count, hour, hourPeak: Math.max(hourPeak, peak) });
  }

  /**
   * `n` sessions held here since before `start` and ended only now by a fence were gone from
   * `start` on (the last moment their server was known alive): the counts recorded after it drop
   * by `n`. Exact, since a silent server's sessions do not change: they were part of every count
   * after `start`. The minute and hour holding `start` keep them as peak up to `start` only: the
   * counts recorded there after it (the restarted process's viewers, admitted before the fence's
   * notice) drop by `n` too, as far as the counts per second kept in memory tell (else that minute
   * keeps its peak as recorded: an upper bound). Call before the count held now is told (held()).
   */
  retract(streamKey: string, n: number, start: number): void {
    if (!this.ready || n <= 0) return;
    try {
      this.flush();
    } catch (err) {
      console.error(JSON.stringify({ error: "usage rows not written: a fence's sessions count as peak until now", stream: streamKey, detail: String(err) }));
      return;
    }
    this.written.delete(streamKey);
    const now = Date.now();
    const minute = floorTo(start, MINUTE_MS);
    const hour = floorTo(start, HOUR_MS);
    // The first minute and hour that begin at `start` or later: none of the n was held there.
    const minuteAfter = start > minute ? minute + MINUTE_MS : minute;
    const hourAfter = start > hour ? hour + HOUR_MS : hour;
    // The count held at `start` (the n among it), from the latest row before the minutes after it.
    const before = this.rowBefore(streamKey, minuteAfter);
    // A row for the minute holding `start` itself: changes came in that minute (before `start` or after it).
    const straddled = before?.minute === minute && start > minute;
    const carried = (straddled ? this.rowBefore(streamKey, minute) : before)?.last ?? 0;
    if (before && carried > 0) {
      // The hours the count held through without a change, before the one holding `start`, had it as their peak: held()
      // writes them only at the next change, which would find the rows written here (none held), not that count.
      const hours: SqlStorageValue[][] = [];
      for (let h = Math.max(floorTo(before.minute, HOUR_MS) + HOUR_MS, this.oldestKept(now)); h < start; h += HOUR_MS) hours.push([streamKey, h, carried]);
      insertRows(this.sql, "INSERT INTO usage_hours (stream_key, hour, peak) VALUES", "ON CONFLICT (stream_key, hour) DO UPDATE SET peak = MAX(peak, excluded.peak)", hours);
    }
    // The minute holding `start`: its count up to `start`, and what came after it less n.
    if (straddled) {
      const split = this.recent.around(streamKey, minute, start);
      if (split) this.sql.exec("UPDATE usage_minutes SET peak = ?, last = MAX(0, last - ?) WHERE stream_key = ? AND minute = ?", Math.max(carried, split.upTo, split.after - n, 0), n, streamKey, minute);
      else this.sql.exec("UPDATE usage_minutes SET last = MAX(0, last - ?) WHERE stream_key = ? AND minute = ?", n, streamKey, minute);
    } else if (start > minute) {
      // No change in that minute: it held the count until `start`, then n fewer.
      this.sql.exec("INSERT OR IGNORE INTO usage_minutes (stream_key, minute, peak, last) VALUES (?, ?, ?, ?)", streamKey, minute, carried, Math.max(0, carried - n));
    } else {
      // `start` is the minute's first moment: n fewer from then on (a row there, if any, is lowered below).
      this.sql.exec("INSERT OR IGNORE INTO usage_minutes (stream_key, minute, peak, last) VALUES (?, ?, ?, ?)", streamKey, minute, Math.max(0, carried - n) + n, carried);
    }
    this.sql.exec("UPDATE usage_minutes SET peak = MAX(0, peak - ?), last = MAX(0, last - ?) WHERE stream_key = ? AND minute >= ?", n, n, streamKey, minuteAfter);
    this.sql.exec("UPDATE usage_hours SET peak = MAX(0, peak - ?) WHERE stream_key = ? AND hour >= ?", n, streamKey, hourAfter);
    this.recent.lower(streamKey, start, n);
    // The hour holding `start`: the most its minutes held, now that the minute holding `start` is right (while they are kept).
    if (start > hour && hour >= now - MINUTES_KEPT_MS) {
      const into = this.rowBefore(streamKey, hour)?.last ?? 0;
      const most = this.sql.exec<{ peak: number | null }>("SELECT MAX(peak) AS peak FROM usage_minutes WHERE stream_key = ? AND minute >= ? AND minute < ?", streamKey, hour, hour + HOUR_MS).one().peak ?? 0;
      this.sql.exec(
        "INSERT INTO usage_hours (stream_key, hour, peak) VALUES (?, ?, ?) ON CONFLICT (stream_key, hour) DO UPDATE SET peak = excluded.peak",
        streamKey, hour, Math.max(into, most),
      );
    }
  }

  /**
   * After a restart, with `counts` the sessions held here per stream (streams not in it: none): a
   * stream whose latest minute row says otherwise lost its last changes with the memory (written by
   * flush() at most a second after them). Its count holds from when they came, as far as it is known:
   * the newest admission still held (`newest`, a lost play's own time), the latest session end noted
   * with its viewer-seconds (a lost stop's), or the latest minute written, whichever is later; not from
   * now, which may be hours later.
   */
  reconcile(counts: Map<string, number>, newest: (streamKey: string) => number | undefined = () => undefined, now = Date.now()): void {
    const latest = this.ready
      ? this.sql.exec<{ stream_key: string; minute: number; last: number }>(
          "SELECT stream_key, minute, last FROM usage_minutes m WHERE minute = (SELECT MAX(minute) FROM usage_minutes WHERE stream_key = m.stream_key)",
        ).toArray()
      : [];
    const said = new Map(latest.map((r) => [r.stream_key, r]));
    // The latest session end noted since the latest minute written (a lost stop's own time).
    const lastEnd = (streamKey: string, minute: number) =>
      this.sql.exec<{ at: number | null }>("SELECT MAX(last_end) AS at FROM usage_hours WHERE stream_key = ? AND hour >= ?", streamKey, floorTo(minute, HOUR_MS)).one().at ?? 0;
    const since = (streamKey: string) => {
      const minute = said.get(streamKey)?.minute ?? 0;
      return Math.min(now, Math.max(minute, newest(streamKey) ?? 0, this.ready ? lastEnd(streamKey, minute) : 0) || now);
    };
    for (const [streamKey, n] of counts) if ((said.get(streamKey)?.last ?? 0) !== n) this.held(streamKey, n, since(streamKey));
    for (const [streamKey, r] of said) if (r.last !== 0 && !counts.has(streamKey)) this.held(streamKey, 0, since(streamKey));
    this.flushQuietly();
  }

  /** Writes the minute rows and hour peaks waiting in memory, in as few statements as insertRows can. */
  flush(): void {
    if (!this.waiting) return;
    const [unwritten, unwrittenPeaks] = [this.unwritten, this.unwrittenPeaks];
    this.unwritten = new Map();
    this.unwrittenPeaks = new Map();
    const minutes: SqlStorageValue[][] = [];
    for (const [streamKey, byMinute] of unwritten) for (const [minute, r] of byMinute) minutes.push([streamKey, minute, r.peak, r.last]);
    const peaks: SqlStorageValue[][] = [];
    for (const [streamKey, byHour] of unwrittenPeaks) for (const [hour, peak] of byHour) peaks.push([streamKey, hour, peak]);
    try {
      insertRows(this.sql, "INSERT INTO usage_minutes (stream_key, minute, peak, last) VALUES", "ON CONFLICT (stream_key, minute) DO UPDATE SET peak = MAX(peak, excluded.peak), last = excluded.last", minutes);
      insertRows(this.sql, "INSERT INTO usage_hours (stream_key, hour, peak) VALUES", "ON CONFLICT (stream_key, hour) DO UPDATE SET peak = MAX(peak, excluded.peak)", peaks);
      this.failedFlushes = 0;
    } catch (err) {
      // What the cache (written) counts on as written waits for the next flush (the writes are idempotent),
      // merged with what came meanwhile; after FLUSH_TRIES failures in a row it is dropped, and so is the cache.
      if (++this.failedFlushes < FLUSH_TRIES) this.requeue(unwritten, unwrittenPeaks);
      else this.written.clear();
      throw err;
    }
  }

  /** flush() before a read or after a restart: a failure is logged, and the rows wait for the next flush. */
  private flushQuietly(): void {
    try {
      this.flush();
    } catch (err) {
      console.error(JSON.stringify({ error: "usage rows not written", detail: String(err) }));
    }
  }

  /** Rows wait for flush(). */
  get waiting(): boolean {
    return this.unwritten.size > 0 || this.unwrittenPeaks.size > 0;
  }

  /** Rows of a failed flush wait again, under the ones that came since (newer: their `last` wins). */
  private requeue(minutes: Map<string, Map<number, { peak: number; last: number }>>, peaks: Map<string, Map<number, number>>): void {
    for (const [streamKey, byMinute] of minutes) {
      const now = inner(this.unwritten, streamKey);
      for (const [minute, r] of byMinute) {
        const newer = now.get(minute);
        now.set(minute, newer ? { peak: Math.max(newer.peak, r.peak), last: newer.last } : r);
      }
    }
    for (const [streamKey, byHour] of peaks) {
      const now = inner(this.unwrittenPeaks, streamKey);
      for (const [hour, peak] of byHour) now.set(hour, Math.max(now.get(hour) ?? 0, peak));
    }
  }

  /**
   * The stream's hours in [from, to) that have usage here, open sessions (of `role`) counted up
   * to `now`, and the hours since the last change given the count that holds now as their peak.
   */
  hours(streamKey: string, from: number, to: number, role: UsageRole, open: OpenSession[], now = Date.now()): HourUsage[] {
    // Hours past the retention are not reported, whether or not a prune removed them yet (and one is due now).
    from = Math.max(from, this.oldestKept(now));
    this.prune(now);
    const byHour = new Map<number, HourUsage>();
    const at = (hour: number) => {
      let h = byHour.get(hour);
      if (!h) byHour.set(hour, (h = { hour, viewerMs: 0, publishMs: 0, peak: 0 }));
      return h;
    };
    this.flushQuietly();
    if (this.ready) {
      for (const r of this.sql.exec<{ hour: number; viewer_ms: number; publish_ms: number; peak: number }>(
        "SELECT hour, viewer_ms, publish_ms, peak FROM usage_hours WHERE stream_key = ? AND hour >= ? AND hour < ?", streamKey, from, to,
      )) {
        Object.assign(at(r.hour), { viewerMs: r.viewer_ms, publishMs: r.publish_ms, peak: r.peak });
      }
      const latest = this.latest(streamKey);
      if (latest && latest.last > 0) {
        for (let hour = Math.max(from, floorTo(latest.minute, HOUR_MS)); hour < Math.min(to, now + 1); hour += HOUR_MS) {
          at(hour).peak = Math.max(at(hour).peak, latest.last);
        }
      }
    }
    for (const s of open) {
      for (const [hour, ms] of splitByHour(Math.max(s.since, from), Math.min(now, to))) {
        if (role === "viewer") at(hour).viewerMs += ms;
        else at(hour).publishMs += ms;
      }
    }
    return [...byHour.values()].sort((a, b) => a.hour - b.hour);
  }

  /** The peak number of sessions held here in each minute of [from, to) (minute-aligned). */
  minutes(streamKey: string, from: number, to: number, now = Date.now()): number[] {
    const out: number[] = [];
    this.flushQuietly();
    if (!this.ready) return Array.from({ length: Math.max(0, (to - from) / MINUTE_MS) }, () => 0);
    let carried = this.rowBefore(streamKey, from)?.last ?? 0;
    const rows = new Map(
      this.sql.exec<{ minute: number; peak: number; last: number }>("SELECT minute, peak, last FROM usage_minutes WHERE stream_key = ? AND minute >= ? AND minute < ?", streamKey, from, to)
        .toArray()
        .map((r) => [r.minute, r]),
    );
    for (let minute = from; minute < to; minute += MINUTE_MS) {
      const r = rows.get(minute);
      // A minute not begun yet holds nobody (the count held now holds until a change, not past now).
      out.push(minute > now ? 0 : r ? r.peak : carried);
      if (r) carried = r.last;
    }
    return out;
  }

  /** The peak number of sessions held here at once between `from` and `to` (minute resolution while kept, else hourly). */
  peakDuring(streamKey: string, from: number, to: number, now = Date.now()): number {
    const minutesFrom = Math.max(floorTo(from, MINUTE_MS), floorTo(now - MINUTES_KEPT_MS, MINUTE_MS) + MINUTE_MS);
    let peak = Math.max(0, ...this.minutes(streamKey, minutesFrom, floorTo(to, MINUTE_MS) + MINUTE_MS));
    if (from < minutesFrom) for (const h of this.hours(streamKey, floorTo(from, HOUR_MS), minutesFrom, "viewer", [], now)) peak = Math.max(peak, h.peak);
    return peak;
  }

  /** The stream's latest minute row written before `t` (flushed rows only). */
  private rowBefore(streamKey: string, t: number): { minute: number; last: number } | undefined {
    return this.sql.exec<{ minute: number; last: number }>("SELECT minute, last FROM usage_minutes WHERE stream_key = ? AND minute < ? ORDER BY minute DESC LIMIT 1", streamKey, t).toArray()[0];
  }

  private latest(streamKey: string): { minute: number; last: number } | undefined {
    // Rows waiting for flush() are newer than the table's.
    const minutes = this.unwritten.get(streamKey);
    if (minutes?.size) {
      const minute = Math.max(...minutes.keys());
      return { minute, last: minutes.get(minute)!.last };
    }
    return this.sql.exec<{ minute: number; last: number }>("SELECT minute, last FROM usage_minutes WHERE stream_key = ? ORDER BY minute DESC LIMIT 1", streamKey).toArray()[0];
  }

  /** The hour's peak is at least `count` (written by flush()). */
  private peakAt(streamKey: string, hour: number, count: number): void {
    const byHour = inner(this.unwrittenPeaks, streamKey);
    byHour.set(hour, Math.max(byHour.get(hour) ?? 0, count));
  }

  /** The start of the oldest hour kept: USAGE_RETENTION_DAYS back from `now`. */
  private oldestKept(now: number): number {
    return floorTo(now - this.retentionMs(), HOUR_MS);
  }

  /**
   * Drops hours older than the retention and minutes older than MINUTES_KEPT_MS (but each stream's
   * latest), at most once per PRUNE_EVERY_MS: called where sessions end, on reads, and from the
   * owning object's alarm, so that an object with no session ending any more prunes too.
   */
  prune(now = Date.now()): void {
    if (this.ready) this.pruneNow(now);
  }

  private pruneNow(now: number): void {
    if (now - this.prunedAt < PRUNE_EVERY_MS) return;
    this.prunedAt = now;
    // Rows still waiting for their write would bring back what this deletes.
    this.flushQuietly();
    this.sql.exec("DELETE FROM usage_hours WHERE hour < ?", this.oldestKept(now));
    // Of a stream's rows older than that, the newest stays while it says sessions are held: its count holds until the
    // stream's next row, so it is what the minutes kept show before their first change (deleting it, because a newer
    // row existed, showed a viewer watching for days as 0 in every minute before the next change); as the latest
    // row, it says how many are held now. One saying none says what no row says, and goes too: else every stream
    // the object ever held kept a row for good.
    const before = now - MINUTES_KEPT_MS;
    this.sql.exec(
      `DELETE FROM usage_minutes WHERE minute < ? AND (last = 0 OR
         minute < (SELECT MAX(minute) FROM usage_minutes AS m WHERE m.stream_key = usage_minutes.stream_key AND m.minute < ?))`,
      before, before,
    );
  }
}

/** The stream's map of rows waiting in `outer`, made when it has none. */
function inner<K, V>(outer: Map<string, Map<K, V>>, streamKey: string): Map<K, V> {
  let m = outer.get(streamKey);
  if (!m) outer.set(streamKey, (m = new Map()));
  return m;
}

/** [from, to) as (hour, milliseconds in it) pairs. */
export function splitByHour(from: number, to: number): [number, number][] {
  const out: [number, number][] = [];
  for (let hour = floorTo(from, HOUR_MS); hour < to; hour += HOUR_MS) {
    const ms = Math.min(to, hour + HOUR_MS) - Math.max(from, hour);
    if (ms > 0) out.push([hour, ms]);
  }
  return out;
}

/** Bound parameters per SQL statement in a Durable Object: at most 100 (https://developers.cloudflare.com/durable-objects/platform/limits/). */
const MAX_BOUND_PARAMETERS = 100;

/**
 * Writes rows with as few statements as the bound-parameter limit allows: `head` is the statement up to
 * VALUES, `tail` what follows the value list (an ON CONFLICT clause, or ""). Every row has the same length.
 */
export function insertRows(sql: SqlStorage, head: string, tail: string, rows: SqlStorageValue[][]): void {
  if (rows.length === 0) return;
  const width = rows[0].length;
  const perStatement = Math.floor(MAX_BOUND_PARAMETERS / width);
  const tuple = `(${Array(width).fill("?").join(", ")})`;
  for (let i = 0; i < rows.length; i += perStatement) {
    const chunk = rows.slice(i, i + perStatement);
    sql.exec([head, Array(chunk.length).fill(tuple).join(", "), tail].filter(Boolean).join(" "), ...chunk.flat());
  }
}
