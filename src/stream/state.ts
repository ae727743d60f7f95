/**
 * What the admin API reports for one stream (GET /admin/streams/{app}/{stream}): its settings
 * (src/stream/settings.ts), its publishers (src/stream/sessions.ts), and its audience, summed over
 * the viewer shards (the stream object from their last reports, the admin API from their answers now:
 * src/viewers/audience.ts).
 */
import type { ShardAudience } from "../viewers/shard";
import type { LeaseRecord } from "./leases";
import type { Publisher, SessionBook } from "./sessions";
import type { SettingsState } from "./settings";
import type { StreamName } from "./name";
import type { OnDuplicatePublish, OnExtraViewerSession, PlayAuth } from "./rules";

/** What the admin API reports for one stream. */
export interface StreamState extends StreamName {
  maxViewers: number | null;
  playAuth: PlayAuth;
  /** An on_publish with the right key while another publisher holds the stream: refused, or takes it over. */
  onDuplicatePublish: OnDuplicatePublish;
  /** Live sessions one viewer id (play token `sub`) may hold on the stream, on every edge together; null: no limit. */
  maxSessionsPerViewer: number | null;
  /** An on_play over maxSessionsPerViewer: refused (4016), or admitted and the viewer's oldest session ended. */
  onExtraViewerSession: OnExtraViewerSession;
  /** A publisher holds the stream now. */
  live: boolean;
  /** The holder, else the newest suspended publisher, else null. */
  publisher: Publisher | null;
  /** Every other publisher session that received no stop event. */
  conflicts: Publisher[];
  /** Viewers that count toward maxViewers: the sum over the viewer shards. */
  viewers: number;
  /** Viewers of silent servers: kept, not counted, back if their process returns. */
  suspendedViewers: number;
  /** Distinct viewer ids (token `sub`) among the counted viewers. */
  distinctViewerIds: number;
  /** Slots the shards hold but no viewer uses (capped streams). */
  leasedUnused: number;
  /** Where the audience is: one entry per SRS server whose viewer shard asked for this stream. */
  shards: ShardAudience[];
  createdAt: string;
  updatedAt: string;
}

/**
 * The audience totals from the shards' figures: viewers and suspended viewers summed, and the slots
 * leased beyond what each shard's viewers, live or suspended, hold.
 */
export function audienceOf(shards: ShardAudience[]): Pick<StreamState, "viewers" | "suspendedViewers" | "distinctViewerIds" | "leasedUnused" | "shards"> {
  let viewers = 0;
  let suspendedViewers = 0;
  let leasedUnused = 0;
  // One viewer id may watch through several servers: the shards' sets of ids (hashed) are merged.
  const ids = new Set<number>();
  for (const { viewerIds, ...s } of shards) {
    for (const id of viewerIds ?? []) ids.add(id);
    viewers += s.viewers;
    suspendedViewers += s.suspendedViewers;
    // Slots of suspended viewers are not free: their process comes back with them, or they end.
    leasedUnused += Math.max(0, s.leased - s.viewers - s.suspendedViewers);
  }
  return { viewers, suspendedViewers, distinctViewerIds: ids.size, leasedUnused, shards: shards.map(({ viewerIds: _, ...s }) => s) };
}

/** The stream's state (StreamObject.state): its settings row, its publishers now, and the audience from the shards' lease records. */
export function streamState(settings: SettingsState, publishers: ReturnType<SessionBook["publishersView"]>, shards: LeaseRecord[]): StreamState {
  const { createdAt, updatedAt, ...policy } = settings;
  const { live, publisher, conflicts } = publishers;
  // The order of the fields as the admin API has always shown them.
  return {
    ...policy,
    live,
    publisher,
    conflicts,
    ...audienceOf(shards.map((r) => ({ serverId: r.serverId, colo: r.colo, country: r.country, viewers: r.live, suspendedViewers: r.suspended, leased: r.granted }))),
    createdAt,
    updatedAt,
  };
}
