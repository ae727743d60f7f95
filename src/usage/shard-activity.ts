/**
 * What a viewer shard records about its server's viewers besides admitting them: their usage
 * (viewer-seconds and concurrency per stream, src/usage/book.ts), and refusals for a stream's
 * cap, which the stream turns into stream.viewer_limit_reached (at most one per minute).
 */
import { Recent } from "../platform/recent";
import { usageRetentionMs } from "../config";
import type { Env } from "../env";
import { eventsEnabled } from "../events/event";
import { streamObject } from "../object-access";
import { MINUTE_MS, UsageBook } from "./book";

export class ShardActivity {
  readonly usage: UsageBook;
  /** Per stream, when its last stream.viewer_limit_reached went (as the stream said), or when it was last told from here. */
  private toldAt = new Recent<string>(MINUTE_MS);

  constructor(
    sql: SqlStorage,
    private env: Env,
    private ctx: DurableObjectState,
  ) {
    this.usage = new UsageBook(sql, () => usageRetentionMs(env));
  }

  /** A viewer session ended at `end` (for a fence: the last moment its server was known alive). */
  viewerEnded(streamKey: string, since: number, end: number): void {
    this.usage.addSession(streamKey, "viewer", since, Math.max(since, end));
  }

  /**
   * A viewer was refused for the cap: the stream hears of it, without the hook waiting; not again from here within a
   * minute of the stream's last event (the stream's answer says when it went), which it would not send.
   */
  capRefused(streamKey: string, serverId: string, maxViewers: number): void {
    if (!eventsEnabled(this.env)) return;
    const now = Date.now();
    if (this.toldAt.has(streamKey, now)) return;
    this.toldAt.mark(streamKey, now);
    this.ctx.waitUntil(
      streamObject(this.env, streamKey).viewerLimitReached(serverId, maxViewers).then((lastEvent) => {
        // Only this report's mark: a newer one (a report made since) stands.
        if (this.toldAt.markedAt(streamKey) === now && typeof lastEvent === "number" && lastEvent < now) this.toldAt.mark(streamKey, lastEvent);
      }, (err) => {
        // Only this report's mark: a newer one (a report made since) stands.
        if (this.toldAt.markedAt(streamKey) === now) this.toldAt.delete(streamKey);
        console.error(JSON.stringify({ error: "viewer limit not reported to the stream", stream: streamKey, detail: String(err) }));
      }),
    );
  }
}

/** When a fence's sessions ended: the last moment their server was known alive (0: unknown, now). */
export function fenceEnd(lastAlive: number | undefined): number {
  return Math.min(Date.now(), lastAlive || Date.now());
}
