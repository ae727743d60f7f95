/**
 * An object's outbox of events: an event is written to the object's SQLite storage in the same
 * synchronous step as the decision that caused it (so it survives the object's restart), then
 * sent to the queue in the background; the hook that caused it never waits. A send that fails
 * leaves the event in the outbox, and the object's alarm sends it again (as the registry's kick
 * outbox does: src/srs/kick-outbox.ts). Events are queued in the order they were made.
 *
 * Nothing is stored while events are off (EVENTS_WEBHOOK_URL unset), and what waits is dropped once
 * they are (as the queue's consumer drops what was queued).
 */
import type { Env } from "../env";
import { withTimeout } from "../platform/retry";
import { eventsEnabled, QUEUE_BATCH, type WebhookEvent } from "./event";

/** A queue send that has not settled by then counts as failed (sends take milliseconds). */
const QUEUE_SEND_TIMEOUT_MS = 5_000;

/** Completes an event just before it is first queued (the stream fills in a publish's peak viewers); kept so completed. */
export type Finisher = (event: WebhookEvent) => Promise<WebhookEvent>;

export class Outbox {
  private ready = false;
  private flushing: Promise<void> | null = null;
  private again = false;

  /** `retryLater`: arms the object's alarm, which calls flush(). */
  constructor(
    private sql: SqlStorage,
    private env: Env,
    private ctx: DurableObjectState,
    private retryLater: () => void,
    private finish: Finisher = async (e) => e,
  ) {
    this.ready = sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'event_outbox'").toArray().length > 0;
  }

  /** Stores the event and sends it in the background. */
  add(event: WebhookEvent): void {
    if (!eventsEnabled(this.env)) return;
    if (!this.ready) {
      this.sql.exec("CREATE TABLE IF NOT EXISTS event_outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, event TEXT NOT NULL)");
      this.ready = true;
    }
    this.sql.exec("INSERT OR IGNORE INTO event_outbox (id, event) VALUES (?, ?)", event.id, JSON.stringify(event));
    // Should this object be evicted before the send, its alarm finds the event.
    this.retryLater();
    this.ctx.waitUntil(this.flush());
  }

  /** Whether events wait to be sent. */
  pending(): boolean {
    return this.ready && this.sql.exec("SELECT 1 FROM event_outbox LIMIT 1").toArray().length > 0;
  }

  /** Sends what waits; one flush at a time (a second caller makes the running one go round again). */
  async flush(): Promise<void> {
    if (!this.ready) return;
    if (this.flushing) {
      this.again = true;
      return this.flushing;
    }
    this.flushing = (async () => {
      do {
        this.again = false;
        await this.sendWaiting();
      } while (this.again);
    })();
    try {
      await this.flushing;
    } finally {
      this.flushing = null;
    }
  }

  private async sendWaiting(): Promise<void> {
    for (;;) {
      if (!eventsEnabled(this.env)) {
        // Events were switched off after these were made: nobody to deliver them to (the consumer drops queued ones
        // too). Kept, they would have the object's alarm fire for them forever.
        this.sql.exec("DELETE FROM event_outbox");
        return;
      }
      const rows = this.sql.exec<{ seq: number; event: string }>("SELECT seq, event FROM event_outbox ORDER BY seq LIMIT ?", QUEUE_BATCH).toArray();
      if (rows.length === 0) return;
      try {
        const events = await Promise.all(rows.map((r) => this.finish(JSON.parse(r.event) as WebhookEvent)));
        // Completed once, kept as sent: should this send arrive yet count as failed (a timeout), the next one carries
        // the same body under the same webhook-id, not one completed again (a shard that timed out may answer then).
        rows.forEach((r, i) => {
          const finished = JSON.stringify(events[i]);
          if (finished !== r.event) this.sql.exec("UPDATE event_outbox SET event = ? WHERE seq = ?", finished, r.seq);
        });
        // A send that never settles would hold every later event of the object, and its alarm, until it restarts.
        // Timed out, it is tried again (should it still arrive, the event goes twice, with its one webhook-id).
        await withTimeout(this.env.EVENTS.sendBatch(events.map((body) => ({ body }))), QUEUE_SEND_TIMEOUT_MS);
      } catch (err) {
        console.error(JSON.stringify({ error: "events not queued, kept for the next try", count: rows.length, detail: String(err) }));
        this.retryLater();
        return;
      }
      this.sql.exec("DELETE FROM event_outbox WHERE seq <= ?", rows[rows.length - 1].seq);
    }
  }
}
