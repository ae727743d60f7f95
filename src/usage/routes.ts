import { StatusError, type IRequest } from "itty-router";
import { streamNameFrom } from "../admin/validate";
import type { Env } from "../env";
import { jsonResponse, pageCursor, queryParam } from "../http";
import { streamObject } from "../object-access";
import { CATALOGUE_PREFIX, cataloguePage, parseStreamKey, streamKey } from "../stream/name";
import { parseRange } from "./range";
import { emptyUsage, iso, streamUsage, usageOf, usagePlan, type MinuteBucket, type UsageBucket, type UsagePlan } from "./report";

/**
 * GET /admin/streams/{app}/{stream}/usage[?vhost=][&from=ISO][&to=ISO][&resolution=hour|minute][&format=csv]:
 * {"buckets": [{"start", "viewerSeconds", "publishSeconds", "peakViewers"}]} per hour (default:
 * the last 24 hours), or [{"start", "peakViewers"}] per minute (default: the last hour).
 * ?format=csv: every hour of the range, in the columns of the fleet's CSV.
 */
export async function getStreamUsage(request: IRequest, env: Env): Promise<Response> {
  const name = streamNameFrom(request.params, request.query);
  const range = parseRange(request.query);
  const format = formatOf(request.query, range.resolution);
  if (!(await streamObject(env, streamKey(name)).state())) throw new StatusError(404, `stream ${streamKey(name)} does not exist`);
  const usage = await streamUsage(env, streamKey(name), range);
  if (format === "csv") return csvResponse([{ ...name, buckets: usage.buckets as UsageBucket[] }], `streamgate-usage-${name.app}-${name.stream}.csv`, { incomplete: usage.incomplete });
  return jsonResponse({ ...name, from: iso(range.from), to: iso(range.to), resolution: range.resolution, ...usage });
}

/** ?format=: "json" (the default) or "csv", which is per hour. */
function formatOf(query: Record<string, unknown>, resolution: string): "json" | "csv" {
  const format = queryParam(query, "format") ?? "json";
  if (format !== "json" && format !== "csv") throw new StatusError(400, 'query parameter "format" must be "json" or "csv"');
  if (format === "csv" && resolution !== "hour") throw new StatusError(400, '"format=csv" is per hour: leave out "resolution"');
  return format;
}

/**
 * One CSV line per stream and bucket, for a spreadsheet. What the JSON says beside the figures goes in
 * headers: the next page's cursor, and what could not be asked (ids, space-separated: ids have no spaces).
 */
function csvResponse(
  streams: { vhost: string; app: string; stream: string; buckets: UsageBucket[] }[],
  filename: string,
  more: { cursor?: string; incomplete?: string[]; unavailable?: string[] },
): Response {
  const lines = [["start", "vhost", "app", "stream", "viewerSeconds", "publishSeconds", "peakViewers"].join(",")];
  for (const s of streams) for (const b of s.buckets) lines.push([b.start, csv(s.vhost), csv(s.app), csv(s.stream), b.viewerSeconds, b.publishSeconds, b.peakViewers].join(","));
  return new Response(lines.join("\r\n") + "\r\n", {
    headers: {
      "content-type": "text/csv; charset=utf-8",
      "content-disposition": `attachment; filename="${filename}"`,
      "cache-control": "no-store",
      ...(more.cursor ? { "streamgate-cursor": more.cursor } : {}),
      ...(more.incomplete?.length ? { "streamgate-incomplete": more.incomplete.join(" ") } : {}),
      ...(more.unavailable?.length ? { "streamgate-unavailable": more.unavailable.join(" ") } : {}),
    },
  });
}

/** Streams one fleet-wide usage call covers at most (one call to each, and to its viewer shards). */
export const FLEET_STREAMS_MAX = 200;

/**
 * Viewer shards one fleet-wide usage call asks at most, over its streams: each is a subrequest (Workers
 * Paid allows 10,000 per request, https://developers.cloudflare.com/workers/platform/limits/; the page's
 * stream objects and the catalogue take up to 201 more). A page whose streams' shards would not fit ends
 * at the stream before the one that does not (the first stream always fits), and its cursor resumes there.
 */
export const FLEET_SHARD_CALLS_MAX = 9_000;

/**
 * A cursor of this API that resumes within a catalogue page: "sg.<the last stream reported, base64url>.<the page's
 * KV cursor>" (KV's own cursors have no "."). The page is listed again and resumes after that stream, by name, not
 * by position: a stream created or deleted before it since is neither reported again nor skipped.
 */
const RESUME = /^sg\.([A-Za-z0-9_-]{1,700})\.(.*)$/;
const CATALOGUE_KEY = /^[A-Za-z0-9._-]{1,253}\/[A-Za-z0-9._~-]{1,128}\/[A-Za-z0-9._~-]{1,128}$/;

const toBase64Url = (key: string) => btoa(key).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");

/** The cursor's KV cursor of the page start, and the stream after which it resumes (a cursor of ours that does not parse: 400). */
function resumeOf(cursor: string | undefined): { pageStart?: string; after?: string } {
  if (cursor === undefined || !cursor.startsWith("sg.")) return { pageStart: cursor };
  const m = RESUME.exec(cursor);
  let after: string | undefined;
  try {
    after = m ? atob(m[1].replaceAll("-", "+").replaceAll("_", "/")) : undefined;
  } catch {
    after = undefined;
  }
  if (!m || after === undefined || !CATALOGUE_KEY.test(after)) throw new StatusError(400, 'query parameter "cursor" is not a cursor this API gave');
  return { pageStart: m[2] || undefined, after };
}

/**
 * GET /admin/usage[?vhost=][&from=ISO][&to=ISO][&resolution=hour|minute][&format=csv][&cursor=]:
 * every stream of the catalogue (of one vhost with ?vhost=), FLEET_STREAMS_MAX per page, with its
 * totals over the range and its non-empty buckets; per minute, the fleet's viewers summed over the streams. ?format=csv: one
 * line per stream and non-empty hour, for a spreadsheet.
 */
export function getFleetUsage(request: IRequest, env: Env): Promise<Response> {
  return fleetUsage(request, env, FLEET_SHARD_CALLS_MAX);
}

/** getFleetUsage, asking at most `shardCalls` viewer shards. */
export async function fleetUsage(request: IRequest, env: Env, shardCalls: number): Promise<Response> {
  const range = parseRange(request.query);
  const format = formatOf(request.query, range.resolution);
  const vhost = request.query.vhost === undefined ? "" : `${streamNameFrom({ app: "-", stream: "-" }, request.query).vhost}/`;
  const { pageStart, after } = resumeOf(pageCursor(request.query));
  const page = await cataloguePage(env.CATALOGUE, { prefix: vhost, limit: FLEET_STREAMS_MAX, cursor: pageStart });
  const onPage = page.keys.map((k) => k.name.slice(CATALOGUE_PREFIX.length));
  // KV lists in byte order: for these ASCII names, the order of `<`.
  const listed = after === undefined ? onPage : onPage.filter((key) => key > after);
  // A stream whose object cannot be asked is shown empty and named in `unavailable`: the others still report.
  const unavailable: string[] = [];
  const leftOut = (key: string, err: unknown) => {
    unavailable.push(key);
    console.error(JSON.stringify({ error: "stream left out of usage", stream: key, detail: String(err) }));
  };
  const plans = await Promise.all(listed.map((key) => usagePlan(env, key, range).catch((err): UsagePlan | null => (leftOut(key, err), null))));
  // As many streams as their viewer shards fit in `shardCalls` (at least one); the rest on the next call.
  let taken = 0;
  for (let calls = 0; taken < listed.length; taken++) {
    calls += plans[taken]?.shards.length ?? 0;
    if (taken > 0 && calls > shardCalls) break;
  }
  const keys = listed.slice(0, taken);
  const last = onPage.at(-1);
  const next =
    taken < listed.length
      ? `sg.${toBase64Url(keys[taken - 1])}.${pageStart ?? ""}`
      : page.list_complete
        ? null
        : // A page of streams all at or before the resume point (more created since): the next one still resumes after it.
          after !== undefined && (last === undefined || last < after)
          ? `sg.${toBase64Url(after)}.${page.cursor}`
          : page.cursor;
  const usages = await Promise.all(
    keys.map((key, i) => {
      const plan = plans[i];
      if (!plan) return emptyUsage(range);
      return usageOf(env, key, range, plan).catch((err) => (leftOut(key, err), emptyUsage(range)));
    }),
  );
  const incomplete = [...new Set(usages.flatMap((u) => u.incomplete ?? []))];
  // Only the page's streams: one further on whose object could not be asked is named on its own page.
  const shownUnavailable = unavailable.filter((key) => keys.includes(key)).sort();
  const span = {
    from: iso(range.from),
    to: iso(range.to),
    resolution: range.resolution,
    // More streams: the next page with ?cursor= (as GET /admin/streams).
    ...(next === null ? {} : { truncated: true, cursor: next }),
    ...(incomplete.length ? { incomplete } : {}),
    ...(shownUnavailable.length ? { unavailable: shownUnavailable } : {}),
  };
  if (range.resolution === "minute") {
    // The console's fleet-wide chart: viewers per minute, summed over the streams.
    // No stream (an empty catalogue or vhost, a page past the last): every minute of the range, with no viewers.
    const buckets = (usages[0] ?? emptyUsage(range)).buckets.map((b, i) => ({ start: b.start, peakViewers: usages.reduce((sum, u) => sum + ((u.buckets[i] as MinuteBucket).peakViewers ?? 0), 0) }));
    return jsonResponse({ ...span, buckets });
  }
  const streams = keys.map((key, i) => {
    const buckets = (usages[i].buckets as UsageBucket[]).filter((b) => b.viewerSeconds > 0 || b.publishSeconds > 0 || b.peakViewers > 0);
    return { ...parseStreamKey(key), ...totals(buckets), buckets };
  });
  if (format === "csv") return csvResponse(streams, "streamgate-usage.csv", span);
  return jsonResponse({ ...span, streams });
}

/** A stream's totals over its buckets: seconds summed (in milliseconds, as kept: no float noise), the highest hourly peak. */
function totals(buckets: UsageBucket[]): { viewerSeconds: number; publishSeconds: number; peakViewers: number } {
  const seconds = (of: (b: UsageBucket) => number) => buckets.reduce((ms, b) => ms + Math.round(of(b) * 1000), 0) / 1000;
  return {
    viewerSeconds: seconds((b) => b.viewerSeconds),
    publishSeconds: seconds((b) => b.publishSeconds),
    peakViewers: Math.max(0, ...buckets.map((b) => b.peakViewers)),
  };
}

/** Names are letters, digits and . _ ~ - (src/limits.ts), but a spreadsheet must never read a formula. */
function csv(value: string): string {
  return /^[=+\-@]/.test(value) || /[",\r\n]/.test(value) ? `"'${value.replaceAll('"', '""')}"` : value;
}
