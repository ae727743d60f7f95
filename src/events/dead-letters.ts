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
import { jsonResponse, onlyQuery } from "../http";
import { eventsEnabled, QUEUE_BATCH, type WebhookEvent } from "./event";
import { configurationProblem } from "./routes";

/** How long a dead letter is kept for a replay. */
export const DEAD_LETTER_KEPT_DAYS = 30;
/** At most this many are kept; the oldest go first (logged). */
export const DEAD_LETTERS_MAX = 100_000;
/** Events sent again per replay call (the queue takes 100 per sendBatch). */
export const REPLAY_PER_CALL = 500;
/** Events listed per GET, newest first. */
const LISTED = 100;
const DAY_MS = 86_400_000;
/** How long a replay holds the events it is sending, so that a second replay at once picks others (a replay that died releases them then). */
const CLAIM_MS = 60_000;
/**
 * The wait before the dead-letter queue delivers a batch the object could not take again, after `attempts`: 60 s
 * doubling to an hour, so that its max_retries (100, wrangler.toml) span about four days, the queue's retention,
 * instead of 100 minutes (retry_delay 60 s) after which the events would be deleted.
 */
export function keepRetryDelayS(attempts: number): number {
  return Math.min(3_600, 60 * 2 ** Math.max(0, Math.min(attempts, 20) - 1));
}

/** A dead letter as the admin API lists it. */
export interface DeadLetter {
  id: string;
  type: string;
  timestamp: string;
  deadAt: string;
}

export class DeadLetters extends DurableObject<Env> {
  private sql: SqlStorage;
  /** Events a replay is sending (id: until when), kept from a second replay at once. In memory: a restart forgets them, as it does the replay. */
  private claimed = new Map<string, number>();

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

  /**
   * The oldest `limit` events as JSON that no other replay is sending, for a replay: held for it (CLAIM_MS) so that a
   * second replay at once takes the next ones; they stay until `sent` confirms they were queued again, or `release`.
   */
  claim(limit: number): string[] {
    const now = Date.now();
    for (const [id, until] of this.claimed) if (until <= now) this.claimed.delete(id);
    const rows = this.sql
      .exec<{ id: string; body: string }>("SELECT id, body FROM dead ORDER BY dead_at, id LIMIT ?", limit + this.claimed.size)
      .toArray()
      .filter((r) => !this.claimed.has(r.id))
      .slice(0, limit);
    for (const r of rows) this.claimed.set(r.id, now + CLAIM_MS);
    return rows.map((r) => r.body);
  }

  /** These were queued again: they go. Returns how many are left. */
  sent(ids: string[]): number {
    for (const id of ids) {
      this.sql.exec("DELETE FROM dead WHERE id = ?", id);
      this.claimed.delete(id);
    }
    return this.count();
  }

  /** A replay could not queue these: another may. Returns how many are left. */
  release(ids: string[]): number {
    for (const id of ids) this.claimed.delete(id);
    return this.count();
  }

  /** Drops every dead letter; returns how many went. */
  clear(): number {
    this.claimed.clear();
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
 * cannot take is retried by the queue (the consumer's own max_retries in wrangler.toml), after
 * keepRetryDelayS: the retries span the queue's retention, not 100 minutes.
 */
export async function keepDeadLetters(batch: MessageBatch<WebhookEvent>, env: Env): Promise<void> {
  const messages = batch.messages.filter((m) => isEvent(m.body));
  const unreadable = batch.messages.length - messages.length;
  if (unreadable > 0) console.error(JSON.stringify({ error: "dead letters not kept: not events", count: unreadable }));
  for (const m of batch.messages) if (!isEvent(m.body)) m.ack();
  if (messages.length === 0) return;
  const events = messages.map((m) => m.body);
  let held: number;
  try {
    held = await deadLetters(env).keep(events);
  } catch (err) {
    const attempts = Math.max(...messages.map((m) => m.attempts));
    console.error(JSON.stringify({ error: "dead letters not kept yet, the queue delivers them again", ids: events.map((e) => e.id), attempt: attempts, retryInS: keepRetryDelayS(attempts), detail: String(err) }));
    for (const m of messages) m.retry({ delaySeconds: keepRetryDelayS(m.attempts) });
    return;
  }
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
export async function replayDeadLetters(request: IRequest, env: Env): Promise<Response> {
  // It sends the oldest, whichever a query named (?id=…, ?limit=…): such a call sent 500 and forgot them.
  onlyQuery(request, [], "POST /admin/events/dead-letters/replay sends the oldest 500 and takes no query parameter: nothing was replayed");
  if (!eventsEnabled(env)) throw new StatusError(409, "EVENTS_WEBHOOK_URL is not set: there is no receiver to send them to");
  // Settings with which no delivery can work would send them round another four hours of retries back here.
  const problem = configurationProblem(env);
  if (problem) throw new StatusError(409, `${problem}: nothing was replayed`);
  const store = deadLetters(env);
  const events = (await store.claim(REPLAY_PER_CALL)).map((body) => JSON.parse(body) as WebhookEvent);
  const replayed: string[] = [];
  let remaining = 0;
  for (let i = 0; i < events.length; i += QUEUE_BATCH) {
    const chunk = events.slice(i, i + QUEUE_BATCH);
    try {
      await env.EVENTS.sendBatch(chunk.map((body) => ({ body })));
    } catch (err) {
      // What the queue took before is forgotten (the next replay does not send it twice); the rest waits for it.
      const left = events.slice(i).map((e) => e.id);
      console.error(JSON.stringify({ error: "dead letters not replayed: the events queue refused them", ids: left, replayed: replayed.length, detail: String(err) }));
      remaining = await store.release(left);
      return jsonResponse({ error: "the events queue refused some of them: those are kept, try again", replayed: replayed.length, ids: replayed, remaining }, 503);
    }
    replayed.push(...chunk.map((e) => e.id));
    remaining = await store.sent(chunk.map((e) => e.id));
  }
  if (events.length === 0) remaining = await store.release([]);
  return jsonResponse({ replayed: replayed.length, ids: replayed, remaining });
}

/** DELETE /admin/events/dead-letters: the operator gives them up, all of them (a query, as if naming some, is refused). */
export async function clearDeadLetters(request: IRequest, env: Env): Promise<Response> {
  onlyQuery(request, [], "DELETE /admin/events/dead-letters drops every dead letter and takes no query parameter: nothing was dropped");
  return jsonResponse({ deleted: await deadLetters(env).clear() });
}
