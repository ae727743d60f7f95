/**
 * What a stream object records about its publish sessions besides deciding on them: their
 * usage (publish-seconds, src/usage/book.ts) and their events (stream.started, stream.ended,
 * stream.viewer_limit_reached, through the object's outbox: src/events/outbox.ts). Also which
 * viewer shards ever sent the stream a lease message (so may hold viewer usage of it): the
 * stream's viewer usage is theirs summed (src/usage/report.ts).
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
/** forgetShards runs at most this often. */
const SHARDS_CHECK_EVERY_MS = 3_600_000;

/** A shard that does not answer for a publish's peak viewers within this is left out of it (logged). */
const PEAK_TIMEOUT_MS = 2_000;

export class StreamActivity {
  readonly usage: UsageBook;
  readonly outbox: Outbox;
  /** The viewer shards that sent this stream a lease message, with when that was last recorded (see noteShard). */
  private shards: Map<string, number> | null = null;
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

  /** A viewer shard refused a viewer for the cap: one event per minute at most, whatever the shard. */
  viewerLimitReached(serverId: string, maxViewers: number): boolean {
    const now = Date.now();
    this.sql.exec("CREATE TABLE IF NOT EXISTS event_marks (name TEXT PRIMARY KEY, at INTEGER NOT NULL) WITHOUT ROWID");
    this.limitAt ??= this.sql.exec<{ at: number }>("SELECT at FROM event_marks WHERE name = 'viewer_limit_reached'").toArray()[0]?.at ?? 0;
    if (now - this.limitAt < MINUTE_MS) return false;
    this.limitAt = now;
    this.sql.exec("INSERT OR REPLACE INTO event_marks (name, at) VALUES ('viewer_limit_reached', ?)", now);
    this.outbox.add(newEvent("stream.viewer_limit_reached", { ...streamData(this.streamKey), server_id: serverId, maxViewers }, now));
    return true;
  }

  /**
   * A viewer shard that had viewers of this stream (it sent a lease message): its usage is part of the
   * stream's. When is written at most once per SHARD_SEEN_GRAIN_MS (a lease message comes with nearly every
   * viewer of a capped stream): a row costs one write a day, not one per message.
   */
  noteShard(serverId: string, now = Date.now()): void {
    const shards = this.loadShards();
    const at = shards.get(serverId);
    if (at !== undefined && now - at < SHARD_SEEN_GRAIN_MS) return;
    this.sql.exec("CREATE TABLE IF NOT EXISTS usage_shards (server_id TEXT PRIMARY KEY, at INTEGER) WITHOUT ROWID");
    addColumns(this.sql, "usage_shards", { at: "INTEGER" });
    this.sql.exec("INSERT INTO usage_shards (server_id, at) VALUES (?, ?) ON CONFLICT (server_id) DO UPDATE SET at = excluded.at", serverId, now);
    shards.set(serverId, now);
  }

  viewerShards(): string[] {
    return [...this.loadShards().keys()];
  }

  /**
   * Forgets the viewer shards (edges) that sent no lease message for longer than USAGE_RETENTION_DAYS
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
    for (const [serverId, at] of this.loadShards()) {
      if (at >= before || holding(serverId)) continue;
      this.sql.exec("DELETE FROM usage_shards WHERE server_id = ?", serverId);
      this.shards!.delete(serverId);
    }
  }

  private loadShards(): Map<string, number> {
    if (!this.shards) {
      const exists = this.sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'usage_shards'").toArray().length > 0;
      this.shards = new Map();
      if (exists) {
        addColumns(this.sql, "usage_shards", { at: "INTEGER" });
        // Rows of a version that kept no time: seen now, so they go one retention from now at the earliest.
        const now = Date.now();
        this.sql.exec("UPDATE usage_shards SET at = ? WHERE at IS NULL", now);
        for (const r of this.sql.exec<{ server_id: string; at: number }>("SELECT server_id, at FROM usage_shards")) this.shards.set(r.server_id, r.at);
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
      this.viewerShards().map((id) =>
        withTimeout(viewerShard(this.env, id).peakViewers(this.streamKey, from, to), PEAK_TIMEOUT_MS).catch((err) => {
          console.error(JSON.stringify({ error: "viewer shard left out of a publish's peak viewers", server: id, stream: this.streamKey, detail: String(err) }));
          return 0;
        }),
      ),
    );
    return { ...event, data: { ...event.data, peakViewers: peaks.reduce((a, b) => a + b, 0) } };
  }
}
