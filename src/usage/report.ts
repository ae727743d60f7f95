/**
 * A stream's usage is what its object recorded of its publishers plus what each viewer shard
 * that ever had its viewers recorded of them (src/viewers/audience.ts fans out the same way for
 * the audience): seconds are summed; a peak is the sum of the shards' peaks (each shard's peak
 * in that hour or minute), exact with one SRS server and an upper bound with several, since the
 * shards' peaks need not fall at the same moment.
 */
import type { Env } from "../env";
import { streamObject, viewerShard } from "../object-access";
import type { HourUsage } from "./book";
import type { UsageRange } from "./range";

export interface UsageBucket {
  start: string;
  viewerSeconds: number;
  publishSeconds: number;
  peakViewers: number;
}

export interface MinuteBucket {
  start: string;
  peakViewers: number;
}

export interface StreamUsage {
  buckets: UsageBucket[] | MinuteBucket[];
  /** Viewer shards that could not be asked: their part is missing (present only when some are). */
  incomplete?: string[];
}

/** Zero usage over the range, bucket for bucket: a stream whose object could not be asked. */
export function emptyUsage(range: UsageRange): StreamUsage {
  const starts = Array.from({ length: (range.to - range.from) / range.unit }, (_, i) => range.from + i * range.unit);
  return {
    buckets: range.resolution === "minute"
      ? starts.map((start) => ({ start: iso(start), peakViewers: 0 }))
      : starts.map((start) => ({ start: iso(start), viewerSeconds: 0, publishSeconds: 0, peakViewers: 0 })),
  };
}

/** The stream's usage over the range, one bucket per hour (or minute) of it, empty ones included. */
export async function streamUsage(env: Env, streamKey: string, range: UsageRange): Promise<StreamUsage> {
  return usageOf(env, streamKey, range, await usagePlan(env, streamKey, range));
}

/** What the stream's object recorded over the range, and the viewer shards to ask for the rest (usageOf). */
export interface UsagePlan {
  hours: HourUsage[];
  shards: string[];
}

export function usagePlan(env: Env, streamKey: string, range: UsageRange): Promise<UsagePlan> {
  return streamObject(env, streamKey).publishUsage(range.from, range.to);
}

/** The stream's usage: its object's figures (the plan) plus its viewer shards', one call to each. */
export async function usageOf(env: Env, streamKey: string, range: UsageRange, { hours, shards }: UsagePlan): Promise<StreamUsage> {
  const incomplete: string[] = [];
  const ask = <T>(serverId: string, call: () => Promise<T>, otherwise: T) =>
    call().catch((err) => {
      incomplete.push(serverId);
      console.error(JSON.stringify({ error: "viewer shard left out of usage", server: serverId, stream: streamKey, detail: String(err) }));
      return otherwise;
    });
  const starts = Array.from({ length: (range.to - range.from) / range.unit }, (_, i) => range.from + i * range.unit);
  let buckets: UsageBucket[] | MinuteBucket[];
  if (range.resolution === "minute") {
    const perShard = await Promise.all(shards.map((id) => ask(id, () => viewerShard(env, id).viewersPerMinute(streamKey, range.from, range.to), [] as number[])));
    buckets = starts.map((start, i) => ({ start: iso(start), peakViewers: perShard.reduce((sum, s) => sum + (s[i] ?? 0), 0) }));
  } else {
    const viewers = await Promise.all(shards.map((id) => ask(id, () => viewerShard(env, id).viewerUsage(streamKey, range.from, range.to), [] as HourUsage[])));
    const byHour = new Map<number, UsageBucket>(starts.map((h) => [h, { start: iso(h), viewerSeconds: 0, publishSeconds: 0, peakViewers: 0 }]));
    for (const h of hours) {
      const b = byHour.get(h.hour);
      if (b) b.publishSeconds += h.publishMs;
    }
    for (const h of viewers.flat()) {
      const b = byHour.get(h.hour);
      if (!b) continue;
      b.viewerSeconds += h.viewerMs;
      b.peakViewers += h.peak;
    }
    // Summed in milliseconds, shown in seconds.
    buckets = [...byHour.values()].map((b) => ({ ...b, viewerSeconds: b.viewerSeconds / 1000, publishSeconds: b.publishSeconds / 1000 }));
  }
  return { buckets, ...(incomplete.length > 0 ? { incomplete } : {}) };
}

export function iso(ms: number): string {
  return new Date(ms).toISOString();
}
