/**
 * A viewer shard's decision log: a ring of LOG_KEPT decisions per stream,
 * written behind. Lines (and the usage peaks of src/usage/book.ts, flushed
 * with them) wait in memory at most FLUSH_AFTER_MS, or until FLUSH_AT_LINES
 * lines wait, and are then written in a few multi-row statements: one
 * statement per on_play (its session row), two per on_stop (the row and its
 * viewer time), instead of four or five. A crash loses at most those lines
 * and peaks, never a session, an admission or viewer time. Every read of
 * them flushes first.
 */
import type { StreamEvent } from "../stream/decision-log";
import { insertRows } from "../usage/book";
import type { ShardTables } from "./tables";

/** Decisions kept per stream in a shard's log. */
const LOG_KEPT = 100;
/** A stream's ring with no line for this long, of a stream this shard holds nothing of, goes (forgetIdle). */
export const LOG_IDLE_KEPT_MS = 30 * 24 * 3_600_000;
/** forgetIdle runs at most this often. */
const FORGET_EVERY_MS = 3_600_000;
const FLUSH_AFTER_MS = 1_000;
const FLUSH_AT_LINES = 500;

/** What is written with the log's lines (the usage book's waiting peaks). */
interface WrittenAlong {
  flush(): void;
  readonly waiting: boolean;
}

export class ShardLog {
  /** Per stream with a ring here: where its next line goes, and when its last line was made. */
  private next = new Map<string, { slot: number; seq: number; at: number }>();
  private forgotAt = 0;
  private unwritten: SqlStorageValue[][] = [];
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private tables: ShardTables,
    private along: WrittenAlong,
  ) {}

  /** Where each stream's ring goes on (the tables exist). */
  load(): void {
    for (const r of this.tables.sql.exec<{ stream_key: string; slot: number; seq: number; at: number }>(
      "SELECT stream_key, slot, seq, at FROM events e WHERE seq = (SELECT MAX(seq) FROM events WHERE stream_key = e.stream_key)",
    )) {
      this.next.set(r.stream_key, { slot: (r.slot + 1) % LOG_KEPT, seq: r.seq, at: r.at });
    }
  }

  /** A line replaces the oldest of the stream's ring when flush() writes it. */
  record(streamKey: string, action: string, client: string, ip: string, decision: StreamEvent["decision"], reason: string): void {
    const next = this.next.get(streamKey) ?? { slot: 0, seq: 0, at: 0 };
    const now = Date.now();
    this.unwritten.push([streamKey, next.slot, next.seq + 1, now, action, client, ip, decision, reason]);
    this.next.set(streamKey, { slot: (next.slot + 1) % LOG_KEPT, seq: next.seq + 1, at: now });
    this.flushSoon();
  }

  /** Lines or usage peaks wait: written FLUSH_AFTER_MS from now, or now if FLUSH_AT_LINES lines wait. */
  flushSoon(): void {
    if (this.unwritten.length >= FLUSH_AT_LINES) this.flush();
    else if (this.timer === null) this.timer = setTimeout(() => this.flush(), FLUSH_AFTER_MS);
  }

  /** Writes the decision-log lines and usage peaks waiting in memory. */
  flush(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    const rows = this.unwritten;
    this.unwritten = [];
    try {
      if (rows.length > 0) {
        this.tables.prepare();
        // A ring: a line replaces the one LOG_KEPT lines older in its slot (rows in order, so the newest wins).
        insertRows(this.tables.sql, "INSERT OR REPLACE INTO events (stream_key, slot, seq, at, action, client, ip, decision, reason) VALUES", "", rows);
      }
      this.along.flush();
    } catch (err) {
      console.error(JSON.stringify({ error: "decision log or usage peaks not written", stream: "", detail: String(err) }));
      // Usage rows of a failed flush wait for the next (a few tries: UsageBook.flush).
      if (this.along.waiting) this.flushSoon();
    }
  }

  /**
   * Forgets the rings of streams with no line for LOG_IDLE_KEPT_MS, but those `holding` says the shard
   * still has viewers or slots of: else every stream the server ever played kept LOG_KEPT rows here, and
   * an entry in memory read at every start, for good (a fleet that makes a stream per broadcast adds
   * thousands a month). At most once an hour; from the shard's alarm.
   */
  forgetIdle(now: number, holding: (streamKey: string) => boolean): void {
    if (!this.tables.ready || now - this.forgotAt < FORGET_EVERY_MS) return;
    this.forgotAt = now;
    // Lines still waiting for their write would bring a forgotten ring back.
    this.flush();
    for (const [streamKey, n] of [...this.next]) {
      if (n.at >= now - LOG_IDLE_KEPT_MS || holding(streamKey)) continue;
      this.tables.sql.exec("DELETE FROM events WHERE stream_key = ?", streamKey);
      this.next.delete(streamKey);
    }
  }

  /** A stream's decisions here, newest first. */
  list(streamKey: string, serverId: string): StreamEvent[] {
    this.flush();
    return this.tables
      .rows<{ at: number; action: string; client: string; ip: string; decision: string; reason: string }>(
        "SELECT at, action, client, ip, decision, reason FROM events WHERE stream_key = ? ORDER BY seq DESC LIMIT ?", streamKey, LOG_KEPT,
      )
      // The fields in the order of the stream object's lines (README, GET …/events).
      .map((e) => ({ at: new Date(e.at).toISOString(), action: e.action, server: serverId, client: e.client, ip: e.ip, decision: e.decision as StreamEvent["decision"], reason: e.reason }));
  }
}

/** A viewer shard's background work that failed (a message not delivered, a sweep cut short): one error line. */
export function logError(what: string, stream: string, err: unknown): void {
  console.error(JSON.stringify({ error: what, stream, detail: String(err) }));
}
