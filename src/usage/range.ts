/** The time range of a usage query (?from=&to=&resolution=): checked, aligned, capped. */
import { StatusError } from "itty-router";
import { queryParam } from "../http";
import { floorTo, HOUR_MS, MINUTE_MS, MINUTES_KEPT_MS } from "./book";

export type Resolution = "hour" | "minute";

export interface UsageRange {
  resolution: Resolution;
  /** Aligned to the resolution; `to` exclusive (the bucket holding the requested end is included). */
  from: number;
  to: number;
  unit: number;
}

/** Longest range per resolution: 31 days of hours, 24 hours of minutes. */
export const MAX_RANGE_MS: Record<Resolution, number> = { hour: 31 * 24 * HOUR_MS, minute: 24 * HOUR_MS };
/** Without ?from=: the last 24 hours, or the last hour per minute. */
const DEFAULT_RANGE_MS: Record<Resolution, number> = { hour: 24 * HOUR_MS, minute: HOUR_MS };

const ISO = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2}))?$/;

export function parseRange(query: Record<string, unknown>, now = Date.now()): UsageRange {
  const resolution = queryParam(query, "resolution") ?? "hour";
  if (resolution !== "hour" && resolution !== "minute") throw new StatusError(400, 'query parameter "resolution" must be "hour" or "minute"');
  const unit = resolution === "hour" ? HOUR_MS : MINUTE_MS;
  const end = time(query, "to") ?? now;
  const start = time(query, "from") ?? end - DEFAULT_RANGE_MS[resolution];
  if (start >= end) throw new StatusError(400, '"from" must be before "to"');
  const from = floorTo(start, unit);
  const to = floorTo(end - 1, unit) + unit;
  if (to - from > MAX_RANGE_MS[resolution]) {
    throw new StatusError(400, `the range may span at most ${resolution === "hour" ? "31 days" : "24 hours"} at resolution "${resolution}"`);
  }
  if (resolution === "minute" && from < floorTo(now - MINUTES_KEPT_MS, MINUTE_MS)) {
    throw new StatusError(400, `per-minute figures are kept ${MINUTES_KEPT_MS / HOUR_MS} hours: "from" must be later than that`);
  }
  return { resolution, from, to, unit };
}

function time(query: Record<string, unknown>, name: string): number | undefined {
  const value = queryParam(query, name);
  if (value === undefined) return undefined;
  const ms = ISO.test(value) && realDate(value) ? Date.parse(value) : NaN;
  if (!Number.isFinite(ms)) throw new StatusError(400, `query parameter "${name}" must be an ISO 8601 date-time, e.g. 2026-05-01T00:00:00Z`);
  return ms;
}

/** Date.parse reads 2026-02-31 as March 3: a day its month does not have is refused instead. */
function realDate(value: string): boolean {
  const [y, m, d] = value.slice(0, 10).split("-").map(Number);
  const date = new Date(Date.UTC(y, m - 1, d));
  return date.getUTCMonth() === m - 1 && date.getUTCDate() === d;
}
