/**
 * GET /admin/usage's pages ended early for the viewer shards one request may ask (e488e36), tried
 * adversarially: the catalogue changing between pages, cursors an admin crafts, what `unavailable`
 * and `incomplete` name, the minute sums and the CSV of truncated pages. Each test has a vhost of its
 * own, so the other tests' streams do not interfere; `fleetUsage` with a small `shardCalls`.
 */
import { describe, expect, it, vi } from "vitest";
import { env } from "cloudflare:workers";
import type { IRequest } from "itty-router";
import { fleetUsage, FLEET_SHARD_CALLS_MAX } from "../src/usage/routes";
import { StreamObject } from "../src/stream/object";
import { ViewerShard } from "../src/viewers/shard";
import { admin, hook, newEdge, play, stopPlay, uniqueStream } from "./srs";
import { ALLOW } from "./fake-srs";
import { at, HOUR, MIN, useFakeClock } from "./fleet";

useFakeClock();

/** A vhost of its own with streams `names` (in this order of creation), each watched for 30 min through `edges` new edges of its own. */
async function catalogue(names: string[], edges = 1): Promise<string> {
  const vhost = `vh-${uniqueStream()}`;
  for (const s of names) await created(vhost, s, edges);
  return vhost;
}

async function created(vhost: string, s: string, edges = 1): Promise<void> {
  at(0);
  expect((await admin("PUT", `/streams/live/${s}?vhost=${vhost}`, {})).status).toBe(201);
  for (let i = 0; i < edges; i++) {
    const edge = newEdge();
    const client = `u${String(i).padStart(7, "0")}`;
    at(MIN);
    expect(await hook({ ...play("live", s, { ...edge, client }), vhost })).toEqual(ALLOW);
    at(MIN + 30 * MIN);
    expect(await hook({ ...stopPlay("live", s, { ...edge, client }), vhost })).toEqual(ALLOW);
  }
  at(HOUR);
}

/** One call of fleetUsage asking at most `shardCalls` shards: the response. */
function call(vhost: string, shardCalls: number, extra: Record<string, string> = {}): Promise<Response> {
  const query: Record<string, string> = { vhost, ...extra };
  const request = Object.assign(new Request(`https://gate.test/admin/usage?${new URLSearchParams(query)}`), { query }) as unknown as IRequest;
  return fleetUsage(request, env, shardCalls);
}

async function page(vhost: string, shardCalls: number, extra: Record<string, string> = {}): Promise<any> {
  return (await call(vhost, shardCalls, extra)).json<any>();
}

/** Every page from `cursor` on (at most 20), as the console follows them; `between` runs after each page. */
async function pages(vhost: string, shardCalls: number, extra: Record<string, string> = {}, between?: (n: number) => Promise<void>): Promise<any[]> {
  const out: any[] = [];
  let cursor: string | undefined = extra.cursor;
  for (let n = 0; n < 20; n++) {
    const body = await page(vhost, shardCalls, { ...extra, ...(cursor ? { cursor } : {}) });
    out.push(body);
    if (!body.truncated) return out;
    expect(body.cursor, "a cursor that returns itself").not.toBe(cursor);
    cursor = body.cursor;
    await between?.(n);
  }
  throw new Error("more than 20 pages: the cursors loop");
}

const names = (ps: any[]) => ps.flatMap((p) => p.streams.map((s: any) => s.stream));
const base = () => uniqueStream("p");

describe("GET /admin/usage's pages, with the catalogue changing between calls", () => {
  it("must not happen: a stream created before the resume point between two pages makes the next page report the last one again", async () => {
    const b = base();
    const vhost = await catalogue([`${b}-1`, `${b}-3`, `${b}-5`]);
    // One stream per page (each has one shard): after the first page, a stream that sorts first is created.
    const seen = await pages(vhost, 1, {}, async (n) => {
      if (n === 0) await created(vhost, `${b}-0`);
    });
    const reported = names(seen);
    expect(reported.filter((s) => s === `${b}-1`), `${b}-1 reported twice: ${reported}`).toHaveLength(1);
    expect(new Set(reported)).toEqual(new Set([`${b}-1`, `${b}-3`, `${b}-5`]));
  });

  it("must not happen: a stream deleted after its page makes the next page skip a stream that is still in the catalogue (never reported)", async () => {
    const b = base();
    const vhost = await catalogue([`${b}-1`, `${b}-3`, `${b}-5`]);
    const seen = await pages(vhost, 1, {}, async (n) => {
      if (n === 0) expect((await admin("DELETE", `/streams/live/${b}-1?vhost=${vhost}`)).status).toBeLessThan(300);
    });
    expect(names(seen)).toEqual([`${b}-1`, `${b}-3`, `${b}-5`]);
  });

  it("holds: unchanged catalogue, one stream per page (and a last page exactly full): every stream once, totals as in one page; JSON, CSV and a plain KV cursor of GET /admin/streams", async () => {
    const b = base();
    const all = [`${b}-a`, `${b}-b`, `${b}-c`, `${b}-d`];
    const vhost = await catalogue(all, 2);
    const seen = await pages(vhost, 2);
    expect(seen).toHaveLength(4);
    expect(names(seen)).toEqual(all);
    const one = await page(vhost, FLEET_SHARD_CALLS_MAX);
    expect(one.truncated).toBeUndefined();
    expect(seen.flatMap((p) => p.streams)).toEqual(one.streams);
    // Two per page exactly: the second page is the last.
    expect((await pages(vhost, 4)).map((p) => p.streams.length)).toEqual([2, 2]);
    // CSV: the cursor in streamgate-cursor; the lines of all pages are those of one page.
    const lines: string[] = [];
    let cursor: string | null = null;
    for (let n = 0; n < 10; n++) {
      const res = await call(vhost, 2, { format: "csv", ...(cursor ? { cursor } : {}) });
      lines.push(...(await res.text()).trim().split("\r\n").slice(1));
      cursor = res.headers.get("streamgate-cursor");
      if (!cursor) break;
    }
    expect(lines).toEqual((await (await call(vhost, FLEET_SHARD_CALLS_MAX, { format: "csv" })).text()).trim().split("\r\n").slice(1));
    // A plain KV cursor (GET /admin/streams?limit=1) is still accepted: the streams after the first.
    const listed = await admin("GET", `/streams?vhost=${vhost}&limit=1`);
    expect(listed.body.cursor).toBeTruthy();
    expect(names(await pages(vhost, 2, { cursor: listed.body.cursor }))).toEqual(all.slice(1));
  });
});

describe("GET /admin/usage: cursors an admin crafts", () => {
  it("holds: no crafted cursor is a 500 or a cursor that returns itself; characters no cursor has, or over 2,048: 400", async () => {
    const b = base();
    const vhost = await catalogue([`${b}-1`, `${b}-2`]);
    for (const cursor of ["sg..", "sg.", "sg.0.", "sg.999.", "sg.1000.", "sg.-1.x", "sg.1e9.x", "sg.0.sg.1.", "sg.00000000000000000000001.", "sg.1.bm9wZQ==", `sg.1.${"A".repeat(2000)}`]) {
      const res = await admin("GET", `/usage?vhost=${vhost}&cursor=${encodeURIComponent(cursor)}`);
      expect(res.status, cursor).not.toBe(500);
      if (res.status === 200) expect(res.body.cursor, cursor).not.toBe(cursor);
    }
    for (const cursor of ["sg.1.a~b", "sg.1.a b", `sg.1.${"A".repeat(2050)}`]) {
      expect((await admin("GET", `/usage?vhost=${vhost}&cursor=${encodeURIComponent(cursor)}`)).status, cursor).toBe(400);
    }
  });

  it("must not happen: a skip no page of this API has (sg.999.) quietly answers an empty last page instead of a 400", async () => {
    const b = base();
    const vhost = await catalogue([`${b}-1`, `${b}-2`]);
    const res = await admin("GET", `/usage?vhost=${vhost}&cursor=sg.999.`);
    expect(res.status, JSON.stringify(res.body)).toBe(400);
  });
});

describe("GET /admin/usage: what a truncated page names and sums", () => {
  it("must not happen: \"unavailable\": [] on a page whose unavailable stream is on a later page; holds: unavailable names only the page's streams that could not be asked, incomplete only the page's streams' shards", async () => {
    const b = base();
    const vhost = await catalogue([`${b}-1`, `${b}-2`, `${b}-3`]);
    const key = (s: string) => `${vhost}/live/${s}`;
    const plan = StreamObject.prototype.publishUsage;
    vi.spyOn(StreamObject.prototype, "publishUsage").mockImplementation(function (this: any, from: number, to: number) {
      if (this.ctx?.id?.equals?.(env.STREAM.idFromName(key(`${b}-3`)))) throw new Error("unavailable");
      return plan.call(this, from, to);
    });
    const usage = ViewerShard.prototype.viewerUsage;
    vi.spyOn(ViewerShard.prototype, "viewerUsage").mockImplementation(function (this: any, streamKey: string, from: number, to: number) {
      if (streamKey === key(`${b}-2`)) throw new Error("shard down");
      return usage.call(this, streamKey, from, to);
    });
    const seen = await pages(vhost, 1);
    // -1 alone; -2 with its shard down; -3 (no plan: no shard) fits with -2.
    expect(seen.map((p) => p.streams.map((s: any) => s.stream))).toEqual([[`${b}-1`], [`${b}-2`, `${b}-3`]]);
    expect(seen[0].unavailable).toBeUndefined();
    expect(seen[0].incomplete).toBeUndefined();
    expect(seen[1].unavailable).toEqual([`${vhost}/live/${b}-3`]);
    expect(seen[1].incomplete).toHaveLength(1);
  });

  it("holds: per minute, the truncated pages summed as the console sums them (its from and to) are the one-page fleet figures", async () => {
    const b = base();
    const vhost = await catalogue([`${b}-1`, `${b}-2`, `${b}-3`], 2);
    const first = await page(vhost, 2, { resolution: "minute" });
    expect(first.truncated).toBe(true);
    const range = { resolution: "minute", from: first.from, to: first.to };
    const rest = await pages(vhost, 2, { ...range, cursor: first.cursor });
    const sums = first.buckets.map((b: any) => b.peakViewers);
    for (const p of rest) p.buckets.forEach((x: any, i: number) => (sums[i] += x.peakViewers));
    const whole = await page(vhost, FLEET_SHARD_CALLS_MAX, range);
    expect(whole.truncated).toBeUndefined();
    expect(sums).toEqual(whole.buckets.map((x: any) => x.peakViewers));
    expect(Math.max(...sums)).toBe(6);
  });
});
