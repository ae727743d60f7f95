/**
 * PUT /admin/streams/{app}/{stream} when the KV catalogue cannot be written:
 * the caller either gets the new stream's one-time publish key, or a failure
 * after which nothing was created (and a failed rotation leaves the old key).
 */
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Env } from "../src/env";
import { ALLOW, admin, adminWith, createStream, hook, newEdge, publish, uniqueStream } from "./srs";


afterEach(() => {
  vi.restoreAllMocks();
});

/** The real catalogue with some of its methods replaced. */
function catalogueWith(replaced: { put?: () => Promise<never>; delete?: () => Promise<never>; list?: (options?: KVNamespaceListOptions) => Promise<unknown> }): Partial<Env> {
  const catalogue = new Proxy(env.CATALOGUE, {
    get(target, prop) {
      if (prop === "put" || prop === "delete" || prop === "list") {
        const own = replaced[prop];
        if (own) return own;
      }
      const value = Reflect.get(target, prop);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { CATALOGUE: catalogue };
}

/** The real catalogue, except that every write fails. */
function brokenCatalogue(): Partial<Env> {
  const fail = async (): Promise<never> => { throw new Error("KV unavailable (test)"); };
  return catalogueWith({ put: fail, delete: fail });
}

describe("PUT when the catalogue write fails", () => {
  it("creates nothing: GET answers 404, and the next PUT creates the stream and shows its key", async () => {
    vi.spyOn(console, "error").mockImplementation(() => {});
    const s = uniqueStream();
    const failed = await adminWith(brokenCatalogue(), "PUT", `/streams/live/${s}`, { maxViewers: 5 });
    expect(failed.status).toBe(503);
    expect(failed.body).toEqual({ error: `stream catalogue (KV) unavailable: __defaultVhost__/live/${s} was not created; try again` });
    expect((await admin("GET", `/streams/live/${s}`)).status).toBe(404);
    expect(await env.CATALOGUE.get(`stream:__defaultVhost__/live/${s}`)).toBeNull();
    const created = await admin("PUT", `/streams/live/${s}`, { maxViewers: 5 });
    expect(created.status).toBe(201);
    expect(created.body.publishKey).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(await hook(publish("live", s, created.body.publishKey, { ...newEdge(), client: "pub00001" }))).toEqual(ALLOW);
  });

  it("does not rotate: the old key keeps working, and the next rotation shows its new key", async () => {
    vi.spyOn(console, "error").mockImplementation(() => {});
    const s = uniqueStream();
    const oldKey = await createStream(s);
    const failed = await adminWith(brokenCatalogue(), "PUT", `/streams/live/${s}`, { rotateKey: true });
    expect(failed.status).toBe(503);
    expect(failed.body.error).toBe(`stream catalogue (KV) unavailable: the key of __defaultVhost__/live/${s} was not rotated, the old key still works; try again`);
    const edge = newEdge();
    expect(await hook(publish("live", s, oldKey, { ...edge, client: "pub00001" }))).toEqual(ALLOW);
    const rotated = await admin("PUT", `/streams/live/${s}`, { rotateKey: true });
    expect(rotated.status).toBe(200);
    expect(rotated.body.publishKey).not.toBe(oldKey);
    expect((await hook(publish("live", s, oldKey, { ...edge, client: "pub00002" }))).body.reason).toBe("invalid publish key");
  });

  it("says so when a policy change took effect but is not in the catalogue", async () => {
    vi.spyOn(console, "error").mockImplementation(() => {});
    const s = uniqueStream();
    await createStream(s);
    const failed = await adminWith(brokenCatalogue(), "PUT", `/streams/live/${s}`, { maxViewers: 2 });
    expect(failed).toEqual({
      status: 503,
      body: { error: `stream catalogue (KV) unavailable: the change to __defaultVhost__/live/${s} took effect but is not in the catalogue; repeat the PUT` },
    });
    expect((await admin("PUT", `/streams/live/${s}`, { maxViewers: 2 })).status).toBe(200);
    expect(JSON.parse((await env.CATALOGUE.get(`stream:__defaultVhost__/live/${s}`))!).maxViewers).toBe(2);
  });
});

describe("DELETE when the catalogue delete fails", () => {
  it("deletes the stream all the same and says so in a 503; a repeated DELETE removes the entry, then 404", async () => {
    vi.spyOn(console, "error").mockImplementation(() => {});
    const s = uniqueStream();
    const key = await createStream(s);
    const failed = await adminWith(brokenCatalogue(), "DELETE", `/streams/live/${s}`);
    expect(failed).toEqual({
      status: 503,
      body: {
        error: `stream catalogue (KV) unavailable: __defaultVhost__/live/${s} was deleted (its key no longer works), but it is still in the catalogue; repeat the DELETE`,
        deleted: `__defaultVhost__/live/${s}`,
      },
    });
    expect((await hook(publish("live", s, key, { ...newEdge(), client: "pub00001" }))).body.code).toBe(4001);
    expect((await admin("GET", `/streams/live/${s}`)).status).toBe(404);
    expect((await admin("GET", `/streams?prefix=live/${s}`)).body.streams).toEqual([]); // the listing skips what is left
    expect(await env.CATALOGUE.get(`stream:__defaultVhost__/live/${s}`)).not.toBeNull();

    const gone = await adminWith(brokenCatalogue(), "DELETE", `/streams/live/${s}`);
    expect(gone.status).toBe(503);
    expect(gone.body.error).toBe(`stream catalogue (KV) unavailable: __defaultVhost__/live/${s} does not exist, and what the catalogue holds of it could not be removed; repeat the DELETE`);
    expect(await admin("DELETE", `/streams/live/${s}`)).toEqual({ status: 404, body: { error: `stream __defaultVhost__/live/${s} does not exist` } });
    expect(await env.CATALOGUE.get(`stream:__defaultVhost__/live/${s}`)).toBeNull();
  });
});

describe("undoing a key change that could not be delivered", () => {
  it("never undoes a rotation another PUT made meanwhile", async () => {
    const s = uniqueStream();
    await createStream(s);
    const stub = env.STREAM.get(env.STREAM.idFromName(`__defaultVhost__/live/${s}`));
    const name = { vhost: "__defaultVhost__", app: "live", stream: s };
    const failed = await stub.configure(name, { rotateKey: true }, { key: "k-failed", hash: "a".repeat(64) });
    const other = await admin("PUT", `/streams/live/${s}`, { rotateKey: true }); // a second operator rotates meanwhile
    expect(await stub.undoKeyChange("a".repeat(64), failed.replacedKeyHash!)).toBe(false);
    const edge = newEdge();
    expect(await hook(publish("live", s, other.body.publishKey, { ...edge, client: "enc00001" }))).toEqual(ALLOW);
  });
});

/** The real catalogue, except that its lists fail: only those given a cursor with `cursorOnly`, as KV refuses a cursor it never gave. */
function failingLists(cursorOnly: boolean): Partial<Env> {
  return catalogueWith({
    list: async (options) => {
      if (!cursorOnly || options?.cursor) throw new Error("KV list failed: 400 Bad Request (test)");
      return env.CATALOGUE.list(options);
    },
  });
}

describe("listing when KV refuses the list", () => {
  it("a cursor KV refuses is a 400 naming the cursor, for the streams and for the usage, and the first page still lists", async () => {
    vi.spyOn(console, "error").mockImplementation(() => {});
    const s = uniqueStream();
    await createStream(s);
    const broken = failingLists(true);
    const cursor = "AAAAAGZha2UtY3Vyc29y"; // a cursor's characters, but none KV gave
    for (const path of [`/streams?cursor=${cursor}`, `/usage?cursor=${cursor}`, `/usage?format=csv&cursor=${cursor}`]) {
      const refused = await adminWith(broken, "GET", path);
      expect(refused.status, path).toBe(400);
      expect(refused.body.error, path).toMatch(/^query parameter "cursor" was refused by the stream catalogue \(KV\)/);
    }
    const first = await adminWith(broken, "GET", `/streams?prefix=live/${s}`);
    expect(first.status).toBe(200);
    expect(first.body.streams.map((x: { app: string; stream: string }) => `${x.app}/${x.stream}`)).toEqual([`live/${s}`]);
  });

  it("a list that fails without a cursor is a 503 to try again, not an internal error", async () => {
    vi.spyOn(console, "error").mockImplementation(() => {});
    for (const path of ["/streams", "/usage"]) {
      const failed = await adminWith(failingLists(false), "GET", path);
      expect(failed, path).toEqual({ status: 503, body: { error: "stream catalogue (KV) unavailable: the streams could not be listed; try again" } });
    }
  });
});
