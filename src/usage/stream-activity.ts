/**
 * What a stream object records about its publish sessions besides deciding on them: their
 * usage (publish-seconds, src/usage/book.ts) and their events (stream.started, stream.ended,
 * stream.viewer_limit_reached, through the object's outbox: src/events/outbox.ts). Also which
 * viewer shards ever sent the stream a lease message (so may hold viewer usage of it), and when
 * they were last heard of or left it: the stream's viewer usage over a range is the sum of the
 * shards' that may hold some in it (src/usage/report.ts).
 */
import { usageRetentionMs } from "../config";
import type { Env } from "../env";
import { newEvent, streamData, type WebhookEvent } from "../events/event";
import { Outbox } from "../events/outbox";
import { viewerShard } from "../object-access";
import { withTimeout } from "../platform/retry";
import { addColumns } from "../platform/sql";
import { UsageBook, MINUTE_MS, HOUR_MS, floorTo } from "./book";

/** How a publish session ended, as stream.ended's `reason` says it. */
export type EndReason = "stop" | "restart" | "timeout" | "operator" | "takeover" | "ghost" | "undone";

/** A publish session that ended. */
export interface EndedPublish {
  serverId: string;
  clientId: string;
  since: number;
}

/** stream.ended's reason for a session ended by a hook or an operator (StreamObject.end). */
export function endReason(cause: { action: string; voidHook?: string }): EndReason {
  if (cause.voidHook) return "undone";
  return cause.action === "admin" ? "operator" : "stop";
}

/** A viewer shard's `at` (its last lease message) is written at most this often; it is kept this much longer too. */
const SHARD_SEEN_GRAIN_MS = 24 * 3_600_000;
/**
 * Clocks of two objects (a viewer shard that ended a session, the stream that recorded its leave) may
 * differ slightly: a shard that left this long before a range's start is asked for it all the same.
 */
const CLOCK_SKEW_MS = 60_000;
/** forgetShards runs at most this often. */
const SHARDS_CHECK_EVERY_MS = 3_600_000;

/** A shard that does not answer for a publish's peak viewers within this is left out of it (logged). */
const PEAK_TIMEOUT_MS = 2_000;

/** What the stream knows of when a viewer shard was last heard of (usage_shards). */
interface ShardSeen {
  /** Its last lease message, written at most once per SHARD_SEEN_GRAIN_MS; when `left`, the moment it left, exactly. */
  at: number;
  /** The stream's record of it went at `at`, and it sent nothing since. */
  left: boolean;
}

export class StreamActivity {
  readonly usage: UsageBook;
  readonly outbox: Outbox;
  /** The viewer shards that sent this stream a lease message, with when that was last recorded and whether they left since (see noteShard, shardLeft). */
  private shards: Map<string, ShardSeen> | null = null;
  /** When forgetShards last ran. */
  private shardsCheckedAt = 0;
  /** When the last stream.viewer_limit_reached was made (stored: a restarted object keeps the once-a-minute rule); null: not read yet. */
  private limitAt: number | null = null;

  constructor(
    private sql: SqlStorage,
    private env: Env,
    private ctx: DurableObjectState,
    /** Arms the object's alarm (which calls flush()). */
    retryLater: () => void,
    /** The stream's key from its own row, where the platform does not tell the object its name. */
    private fallbackKey: () => string | null = () => null,
    /** The viewer shards the stream has a lease record of (src/stream/leases.ts): they may hold viewers now. */
    private holding: () => Set<string> = () => new Set(),
  ) {
    this.usage = new UsageBook(sql, () => usageRetentionMs(env));
    this.outbox = new Outbox(sql, env, ctx, retryLater, (e) => this.withPeakViewers(e));
  }

  /** vhost/app/stream: the object's name (idFromName), else what its row says. */
  get streamKey(): string {
    return this.ctx.id.name ?? this.fallbackKey() ?? "";
  }

  started(serverId: string, clientId: string, at: number): void {
    this.outbox.add(newEvent("stream.started", { ...streamData(this.streamKey), server_id: serverId, client_id: clientId }, at));
  }

  /** A publish session ended at `end` (for a fence: the last moment its server was known alive). */
  ended(p: EndedPublish, end: number, reason: EndReason): void {
    const at = Math.max(p.since, end);
    this.usage.addSession(this.streamKey, "publisher", p.since, at);
    this.outbox.add(
      newEvent("stream.ended", {
        ...streamData(this.streamKey),
        server_id: p.serverId,
        client_id: p.clientId,
        reason,
        started: new Date(p.since).toISOString(),
        duration: (at - p.since) / 1000,
      }, at),
    );
  }

  /**
   * A viewer shard refused a viewer for the cap: one event per minute at most, whatever the shard. Returns when
   * the last event went (now, or less than a minute ago): the shard tells of its next refusal only from a minute
   * after it, so that refusals going on raise one event a minute, not one a minute after this shard's last word.
   */
  viewerLimitReached(serverId: string, maxViewers: number): number {
    const now = Date.now();
    this.sql.exec("CREATE TABLE IF NOT EXISTS event_marks (name TEXT PRIMARY KEY, at INTEGER NOT NULL) WITHOUT ROWID");
    this.limitAt ??= this.sql.exec<{ at: number }>("SELECT at FROM event_marks WHERE name = 'viewer_limit_reached'").toArray()[0]?.at ?? 0;
    if (now - this.limitAt < MINUTE_MS) return this.limitAt;
    this.limitAt = now;
    this.sql.exec("INSERT OR REPLACE INTO event_marks (name, at) VALUES ('viewer_limit_reached', ?)", now);
    this.outbox.add(newEvent("stream.viewer_limit_reached", { ...streamData(this.streamKey), server_id: serverId, maxViewers }, now));
    return now;
  }

  /**
   * A viewer shard that had viewers of this stream (it sent a lease message): its usage is part of the
   * stream's. When is written at most once per SHARD_SEEN_GRAIN_MS (a lease message comes with nearly every
   * viewer of a capped stream): a row costs one write a day, not one per message; and at once after the
   * shard left (shardLeft), so that `left` is true only while the shard sent nothing since.
   */
  noteShard(serverId: string, now = Date.now()): void {
    const seen = this.loadShards().get(serverId);
    if (seen !== undefined && !seen.left && now - seen.at < SHARD_SEEN_GRAIN_MS) return;
    this.writeShard(serverId, { at: now, left: false });
  }

  /**
   * The stream's record of a viewer shard went (it left the stream, or was forgotten holding nothing:
   * src/stream/leases.ts): it held no viewer of the stream then, and holds none until its next lease
   * message (a shard admits a viewer of a capped stream only on a slot the stream granted, and reads an
   * unlimited stream's policy again before it admits one). So all of its usage of the stream is before
   * now, exactly: a report of a range that starts later need not ask it. One write per leave, which
   * deletes the record anyway.
   */
  shardLeft(serverId: string, now = Date.now()): void {
    this.writeShard(serverId, { at: now, left: true });
  }

  private writeShard(serverId: string, seen: ShardSeen): void {
    this.sql.exec("CREATE TABLE IF NOT EXISTS usage_shards (server_id TEXT PRIMARY KEY, at INTEGER, left_stream INTEGER) WITHOUT ROWID");
    addColumns(this.sql, "usage_shards", { at: "INTEGER", left_stream: "INTEGER" });
    this.sql.exec(
      "INSERT INTO usage_shards (server_id, at, left_stream) VALUES (?, ?, ?) ON CONFLICT (server_id) DO UPDATE SET at = excluded.at, left_stream = excluded.left_stream",
      serverId, seen.at, seen.left ? 1 : 0,
    );
    this.loadShards().set(serverId, seen);
  }

  /**
   * The viewer shards that may hold usage of this stream from `from` on (a report's range, a publish's
   * span): each one holding viewers or slots now (a viewer may have watched throughout without any
   * message: an unlimited stream hears nothing while its viewers watch), each one that left at `from` or
   * later, and each one whose record went otherwise and that sent a lease message within SHARD_SEEN_GRAIN_MS
   * of `from` or later (its `at` lags its last message by less than that grain). A shard that left before
   * `from` ended its last session before then: asking it would only cost a call (GET /admin/usage makes
   * one per stream and shard, and the fleet's history of edges grows with every rollout).
   */
  viewerShards(from = 0): string[] {
    const holding = this.holding();
    const since = from - CLOCK_SKEW_MS;
    return [...this.loadShards()].filter(([serverId, seen]) => holding.has(serverId) || (seen.left ? seen.at >= since : seen.at + SHARD_SEEN_GRAIN_MS > since)).map(([serverId]) => serverId);
  }

  /**
   * Forgets the viewer shards (edges) not heard of (a lease message, or their leave: shardLeft) for longer than USAGE_RETENTION_DAYS
   * (from the start of the oldest hour kept) and the grain of their `at`, unless `holding` says the stream still has a record of one (it may hold
   * viewers, whose time it adds when they end): whatever usage of the stream they recorded is past the
   * retention, pruned by them too. Without this, every edge that ever served the stream (a fleet whose pods
   * get new server_ids at each rollout) stayed here for good, and every usage report and every
   * stream.ended asked each of them. At most once an hour.
   */
  forgetShards(holding: (serverId: string) => boolean, now = Date.now()): void {
    if (now - this.shardsCheckedAt < SHARDS_CHECK_EVERY_MS) return;
    this.shardsCheckedAt = now;
    // From the start of the oldest hour a report still shows (UsageBook.hours): a shard last heard from within that
    // hour, though over the retention ago, still holds some of it.
    const before = floorTo(now - usageRetentionMs(this.env), HOUR_MS) - SHARD_SEEN_GRAIN_MS;
    for (const [serverId, { at }] of this.loadShards()) {
      if (at >= before || holding(serverId)) continue;
      this.sql.exec("DELETE FROM usage_shards WHERE server_id = ?", serverId);
      this.shards!.delete(serverId);
    }
  }

  private loadShards(): Map<string, ShardSeen> {
    if (!this.shards) {
      const exists = this.sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'usage_shards'").toArray().length > 0;
      this.shards = new Map();
      if (exists) {
        addColumns(this.sql, "usage_shards", { at: "INTEGER", left_stream: "INTEGER" });
        // Rows of a version that kept no time: seen now, so they go one retention from now at the earliest.
        // Rows of a version that did not mark leaves (left_stream NULL): not known to have left, so `at` is a lower bound.
        const now = Date.now();
        this.sql.exec("UPDATE usage_shards SET at = ? WHERE at IS NULL", now);
        for (const r of this.sql.exec<{ server_id: string; at: number; left_stream: number | null }>("SELECT server_id, at, left_stream FROM usage_shards")) {
          this.shards.set(r.server_id, { at: r.at, left: r.left_stream === 1 });
        }
      }
    }
    return this.shards;
  }

  /** stream.ended's peakViewers: the sum over the shards of each one's peak during the publish, asked when the event is sent. */
  private async withPeakViewers(event: WebhookEvent): Promise<WebhookEvent> {
    if (event.type !== "stream.ended" || event.data.peakViewers !== undefined) return event;
    const from = Date.parse(String(event.data.started));
    const to = Date.parse(event.timestamp);
    const peaks = await Promise.all(
      this.viewerShards(from).map((id) =>
        withTimeout(viewerShard(this.env, id).peakViewers(this.streamKey, from, to), PEAK_TIMEOUT_MS).catch((err) => {
          console.error(JSON.stringify({ error: "viewer shard left out of a publish's peak viewers", server: id, stream: this.streamKey, detail: String(err) }));
          return 0;
        }),
      ),
    );
    return { ...event, data: { ...event.data, peakViewers: peaks.reduce((a, b) => a + b, 0) } };
  }
}
