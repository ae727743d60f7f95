// What the operator console relies on from GET /admin/streams: pages of a chosen size
// (?limit=), cursors that continue them, and a name-prefix filter (?prefix=, ?vhost=)
// that KV answers by itself, so a console pays only for the rows it shows.
import { describe, expect, it } from "vitest";
import { admin, createStream, uniqueStream } from "./srs";

/** Creates `n` streams live/<base>-00 … live/<base>-(n-1) and returns their names in KV order. */
async function createMany(base: string, n: number, app = "live"): Promise<string[]> {
  const names = Array.from({ length: n }, (_, i) => `${base}-${String(i).padStart(2, "0")}`);
  for (const s of names) await createStream(s, {}, app);
  return names;
}

/** Walks every page of a listing and returns the stream names page by page. */
async function pages(query: string): Promise<string[][]> {
  const out: string[][] = [];
  let cursor: string | undefined;
  do {
    const r = await admin("GET", `/streams?${query}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    expect(r.status).toBe(200);
    out.push(r.body.streams.map((x: any) => x.stream));
    cursor = r.body.cursor;
    expect(out.length).toBeLessThan(20);
  } while (cursor);
  return out;
}

describe("GET /admin/streams?limit=", () => {
  it("honours the page size and continues with the cursor, in name order", async () => {
    const base = uniqueStream("page");
    const names = await createMany(base, 7);
    const walked = await pages(`limit=3&prefix=live/${base}`);
    expect(walked.map((p) => p.length)).toEqual([3, 3, 1]);
    expect(walked.flat()).toEqual(names);
  });

  it("has no cursor on a page that ends the listing", async () => {
    const base = uniqueStream("page");
    await createMany(base, 3);
    const exact = await admin("GET", `/streams?limit=3&prefix=live/${base}`);
    expect(exact.body.streams).toHaveLength(3);
    // KV may or may not know the listing ends at exactly the limit; one more page settles it.
    if (exact.body.cursor) {
      const rest = await admin("GET", `/streams?limit=3&prefix=live/${base}&cursor=${encodeURIComponent(exact.body.cursor)}`);
      expect(rest.body).toEqual({ streams: [] });
    }
    const more = await admin("GET", `/streams?limit=10&prefix=live/${base}`);
    expect(more.body.streams).toHaveLength(3);
    expect(more.body).not.toHaveProperty("cursor");
  });

  it("limits the unfiltered listing too, and defaults to 100", async () => {
    await createMany(uniqueStream("page"), 2);
    const one = await admin("GET", "/streams?limit=1");
    expect(one.status).toBe(200);
    expect(one.body.streams).toHaveLength(1);
    expect(typeof one.body.cursor).toBe("string");
    const next = await admin("GET", `/streams?limit=1&cursor=${encodeURIComponent(one.body.cursor)}`);
    expect(next.body.streams).toHaveLength(1);
    expect(next.body.streams[0]).not.toEqual(one.body.streams[0]);
    const all = await admin("GET", "/streams");
    expect(all.body.streams.length).toBeGreaterThanOrEqual(2);
    expect(all.body.streams.length).toBeLessThanOrEqual(100);
    expect((await admin("GET", "/streams?limit=100")).status).toBe(200);
  });

  it("answers 400 naming limit for anything but an integer from 1 to 100", async () => {
    for (const bad of ["0", "101", "-1", "1.5", "abc", "", "1e2", "+5", "007", "1000", "10&limit=20"]) {
      const r = await admin("GET", `/streams?limit=${bad}`);
      expect(r.status, `limit=${bad}`).toBe(400);
      expect(r.body.error).toMatch(/"limit"/);
    }
  });
});

describe("GET /admin/streams?prefix=", () => {
  it("keeps only streams whose app/stream starts with the prefix, within one vhost", async () => {
    const base = uniqueStream("pfx");
    const names = await createMany(base, 3);
    await createStream(`${base}-other`, {}, "studio");
    const other = await admin("PUT", `/streams/live/${base}-elsewhere?vhost=tenant-p.example`);
    expect(other.status).toBe(201);

    const live = await admin("GET", `/streams?prefix=live/${base}`);
    expect(live.body.streams.map((x: any) => x.stream)).toEqual(names);
    // A stream prefix matches names that merely start with it.
    const partial = await admin("GET", `/streams?prefix=${encodeURIComponent(`live/${base}-0`)}`);
    expect(partial.body.streams.map((x: any) => x.stream)).toEqual(names);
    const one = await admin("GET", `/streams?prefix=live/${base}-01`);
    expect(one.body.streams.map((x: any) => x.stream)).toEqual([`${base}-01`]);
    // An app prefix alone; other apps and vhosts stay out.
    const studio = await admin("GET", "/streams?prefix=studio");
    expect(studio.body.streams.map((x: any) => x.stream)).toContain(`${base}-other`);
    expect(studio.body.streams.every((x: any) => x.app === "studio" && x.vhost === "__defaultVhost__")).toBe(true);
    // Another vhost: ?vhost= with or without a prefix.
    const tenant = await admin("GET", `/streams?vhost=tenant-p.example&prefix=live/${base}`);
    expect(tenant.body.streams).toMatchObject([{ vhost: "tenant-p.example", stream: `${base}-elsewhere` }]);
    const tenantAll = await admin("GET", "/streams?vhost=tenant-p.example");
    expect(tenantAll.body.streams.every((x: any) => x.vhost === "tenant-p.example")).toBe(true);
    expect(tenantAll.body.streams.map((x: any) => x.stream)).toContain(`${base}-elsewhere`);
  });

  it("answers 400 naming prefix or vhost for malformed ones", async () => {
    for (const bad of ["a/b/c", "/cam", "live/ca m", "live/*", "x".repeat(129), `live/${"x".repeat(129)}`]) {
      const r = await admin("GET", `/streams?prefix=${encodeURIComponent(bad)}`);
      expect(r.status, `prefix=${bad}`).toBe(400);
      expect(r.body.error).toMatch(/"prefix"/);
    }
    for (const bad of ["", "bad/vhost", "a b"]) {
      const r = await admin("GET", `/streams?prefix=live&vhost=${encodeURIComponent(bad)}`);
      expect(r.status, `vhost=${bad}`).toBe(400);
      expect(r.body.error).toMatch(/"vhost"/);
    }
  });
});
