/**
 * Dead letters: events whose deliveries failed max_retries times (about four hours of a receiver
 * down or refusing). The queue moves them to its dead-letter queue, which this Worker consumes at
 * once (queue() in src/index.ts) into one Durable Object, where they wait DEAD_LETTER_KEPT_DAYS
 * for an operator: `GET /admin/events/dead-letters` lists them, `POST …/replay` sends them to the
 * receiver again (with their own webhook-id and body: a receiver that already got one ignores it),
 * `DELETE` drops them. Without this, a dead-letter queue nobody reads loses them after its
 * retention, and `wrangler` has no command that reads a queue.
 */
import { DurableObject } from "cloudflare:workers";
import { StatusError, type IRequest } from "itty-router";
import type { Env } from "../env";
import { jsonResponse } from "../http";
import { eventsEnabled, queueEvents, type WebhookEvent } from "./event";

/** How long a dead letter is kept for a replay. */
export const DEAD_LETTER_KEPT_DAYS = 30;
/** At most this many are kept; the oldest go first (logged). */
export const DEAD_LETTERS_MAX = 100_000;
/** Events sent again per replay call (the queue takes 100 per sendBatch). */
export const REPLAY_PER_CALL = 500;
/** Events listed per GET, newest first. */
const LISTED = 100;
const DAY_MS = 86_400_000;

/** A dead letter as the admin API lists it. */
export interface DeadLetter {
  id: string;
  type: string;
  timestamp: string;
  deadAt: string;
}

export class DeadLetters extends DurableObject<Env> {
  private sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(`CREATE TABLE IF NOT EXISTS dead (
      id TEXT PRIMARY KEY, type TEXT NOT NULL, timestamp TEXT NOT NULL, body TEXT NOT NULL, dead_at INTEGER NOT NULL) WITHOUT ROWID;
      CREATE INDEX IF NOT EXISTS dead_by_time ON dead (dead_at);`);
  }

  /** Keeps events the queue gave up on (a repeat of one it holds changes nothing). Returns how many it holds. */
  keep(events: WebhookEvent[]): number {
    const now = Date.now();
    for (const e of events) {
      this.sql.exec("INSERT OR IGNORE INTO dead (id, type, timestamp, body, dead_at) VALUES (?, ?, ?, ?, ?)", e.id, e.type, e.timestamp, JSON.stringify(e), now);
    }
    this.prune(now);
    return this.count();
  }

  /** The count, the oldest and newest, and the newest LISTED. */
  list(): { count: number; oldest: string | null; newest: string | null; events: DeadLetter[] } {
    this.prune(Date.now());
    const rows = this.sql
      .exec<{ id: string; type: string; timestamp: string; dead_at: number }>("SELECT id, type, timestamp, dead_at FROM dead ORDER BY dead_at DESC, id LIMIT ?", LISTED)
      .toArray();
    const span = this.sql.exec<{ oldest: number | null; newest: number | null }>("SELECT MIN(dead_at) AS oldest, MAX(dead_at) AS newest FROM dead").one();
    return {
      count: this.count(),
      oldest: span.oldest === null ? null : new Date(span.oldest).toISOString(),
      newest: span.newest === null ? null : new Date(span.newest).toISOString(),
      events: rows.map((r) => ({ id: r.id, type: r.type, timestamp: r.timestamp, deadAt: new Date(r.dead_at).toISOString() })),
    };
  }

  /** The oldest `limit` events as JSON, for a replay (they stay until `sent` confirms they were queued again). */
  oldest(limit: number): string[] {
    return this.sql.exec<{ body: string }>("SELECT body FROM dead ORDER BY dead_at, id LIMIT ?", limit).toArray().map((r) => r.body);
  }

  /** These were queued again: they go. Returns how many are left. */
  sent(ids: string[]): number {
    for (const id of ids) this.sql.exec("DELETE FROM dead WHERE id = ?", id);
    return this.count();
  }

  /** Drops every dead letter; returns how many went. */
  clear(): number {
    return this.sql.exec("DELETE FROM dead").rowsWritten;
  }

  private count(): number {
    return this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM dead").one().n;
  }

  private prune(now: number): void {
    const expired = this.sql.exec("DELETE FROM dead WHERE dead_at < ?", now - DEAD_LETTER_KEPT_DAYS * DAY_MS).rowsWritten;
    const over = this.count() - DEAD_LETTERS_MAX;
    const dropped = over > 0 ? this.sql.exec("DELETE FROM dead WHERE id IN (SELECT id FROM dead ORDER BY dead_at, id LIMIT ?)", over).rowsWritten : 0;
    if (expired + dropped > 0) console.error(JSON.stringify({ error: "dead letters dropped", expired, overLimit: dropped }));
  }
}

/** The dead-letter queue is told apart by its name's ending (wrangler.toml: keep it when renaming the queues). */
export function isDeadLetterQueue(queue: string): boolean {
  return queue.endsWith("-dlq");
}

/** The one object that holds every dead letter (a handful per outage: one object is plenty). */
function deadLetters(env: Env) {
  return env.DEAD_LETTERS.get(env.DEAD_LETTERS.idFromName("all"));
}

/**
 * The dead-letter queue's consumer: its messages are kept for the operator. A batch the object
 * cannot take is retried by the queue (the consumer's own max_retries in wrangler.toml).
 */
export async function keepDeadLetters(batch: MessageBatch<WebhookEvent>, env: Env): Promise<void> {
  const events = batch.messages.map((m) => m.body).filter(isEvent);
  const unreadable = batch.messages.length - events.length;
  if (unreadable > 0) console.error(JSON.stringify({ error: "dead letters not kept: not events", count: unreadable }));
  const held = await deadLetters(env).keep(events);
  console.error(JSON.stringify({ error: "events not delivered after every retry: kept for a replay (POST /admin/events/dead-letters/replay)", ids: events.map((e) => e.id), held }));
  batch.ackAll();
}

function isEvent(body: unknown): body is WebhookEvent {
  const e = body as Partial<WebhookEvent> | null;
  return typeof e === "object" && e !== null && typeof e.id === "string" && typeof e.type === "string" && typeof e.timestamp === "string" && typeof e.data === "object";
}

/** GET /admin/events/dead-letters */
export async function listDeadLetters(_request: IRequest, env: Env): Promise<Response> {
  return jsonResponse(await deadLetters(env).list());
}

/** POST /admin/events/dead-letters/replay: the oldest REPLAY_PER_CALL sent again; `remaining` says how many are left. */
export async function replayDeadLetters(_request: IRequest, env: Env): Promise<Response> {
  if (!eventsEnabled(env)) throw new StatusError(409, "EVENTS_WEBHOOK_URL is not set: there is no receiver to send them to");
  const store = deadLetters(env);
  const events = (await store.oldest(REPLAY_PER_CALL)).map((body) => JSON.parse(body) as WebhookEvent);
  if (!(await queueEvents(env, events))) throw new StatusError(503, "the events queue refused them; nothing was replayed, try again");
  const remaining = await store.sent(events.map((e) => e.id));
  return jsonResponse({ replayed: events.length, ids: events.map((e) => e.id), remaining });
}

/** DELETE /admin/events/dead-letters: the operator gives them up. */
export async function clearDeadLetters(_request: IRequest, env: Env): Promise<Response> {
  return jsonResponse({ deleted: await deadLetters(env).clear() });
}
