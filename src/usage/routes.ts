import { StatusError, type IRequest } from "itty-router";
import { CATALOGUE_PREFIX } from "../stream/name";
import { streamNameFrom } from "../admin/validate";
import type { Env } from "../env";
import { jsonResponse, pageCursor, queryParam } from "../http";
import { streamObject } from "../object-access";
import { parseStreamKey, streamKey } from "../stream/name";
import { parseRange } from "./range";
import { emptyUsage, iso, streamUsage, type MinuteBucket, type UsageBucket } from "./report";

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
 * GET /admin/usage[?vhost=][&from=ISO][&to=ISO][&resolution=hour|minute][&format=csv][&cursor=]:
 * every stream of the catalogue (of one vhost with ?vhost=), FLEET_STREAMS_MAX per page, with its
 * totals over the range and its non-empty buckets; per minute, the fleet's viewers summed over the streams. ?format=csv: one
 * line per stream and non-empty hour, for a spreadsheet.
 */
export async function getFleetUsage(request: IRequest, env: Env): Promise<Response> {
  const range = parseRange(request.query);
  const format = formatOf(request.query, range.resolution);
  const vhost = request.query.vhost === undefined ? "" : `${streamNameFrom({ app: "-", stream: "-" }, request.query).vhost}/`;
  const page = await env.CATALOGUE.list({ prefix: CATALOGUE_PREFIX + vhost, limit: FLEET_STREAMS_MAX, cursor: pageCursor(request.query) });
  const keys = page.keys.map((k) => k.name.slice(CATALOGUE_PREFIX.length));
  // A stream whose object cannot be asked is shown empty and named in `unavailable`: the others still report.
  const unavailable: string[] = [];
  const usages = await Promise.all(
    keys.map((key) =>
      streamUsage(env, key, range).catch((err) => {
        unavailable.push(key);
        console.error(JSON.stringify({ error: "stream left out of usage", stream: key, detail: String(err) }));
        return emptyUsage(range);
      }),
    ),
  );
  const incomplete = [...new Set(usages.flatMap((u) => u.incomplete ?? []))];
  const span = {
    from: iso(range.from),
    to: iso(range.to),
    resolution: range.resolution,
    // More streams: the next page with ?cursor= (as GET /admin/streams).
    ...(page.list_complete ? {} : { truncated: true, cursor: page.cursor }),
    ...(incomplete.length ? { incomplete } : {}),
    ...(unavailable.length ? { unavailable: unavailable.sort() } : {}),
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

/** A stream's totals over its buckets: seconds summed, the highest hourly peak. */
function totals(buckets: UsageBucket[]): { viewerSeconds: number; publishSeconds: number; peakViewers: number } {
  return {
    viewerSeconds: buckets.reduce((s, b) => s + b.viewerSeconds, 0),
    publishSeconds: buckets.reduce((s, b) => s + b.publishSeconds, 0),
    peakViewers: Math.max(0, ...buckets.map((b) => b.peakViewers)),
  };
}

/** Names are letters, digits and . _ ~ - (src/limits.ts), but a spreadsheet must never read a formula. */
function csv(value: string): string {
  return /^[=+\-@]/.test(value) || /[",\r\n]/.test(value) ? `"'${value.replaceAll('"', '""')}"` : value;
}
