import { env, exports } from "cloudflare:workers";
import { evictDurableObject, runDurableObjectAlarm } from "cloudflare:test";
import { serverRegistry } from "../src/object-access";
import { describe, expect, it } from "vitest";
import { sha256Hex } from "../src/auth/secrets";
import { ALLOW, admin, adminWith, createStream, hook, newEdge, play, publish, streamState, uniqueStream } from "./srs";

const EDGE_A = newEdge();

describe("admin API: authentication", () => {
  it("answers 401 without the bearer token or with a wrong one", async () => {
    for (const token of ["", "wrong-token", "test-admin-token-32-chars-or-more-and-more"]) {
      const r = await admin("GET", "/streams", undefined, token);
      expect(r.status).toBe(401);
      expect(r.body.error).toMatch(/admin token/);
    }
    const s = uniqueStream();
    expect((await admin("PUT", `/streams/live/${s}`, {}, "wrong")).status).toBe(401);
    expect((await admin("GET", `/streams/live/${s}`)).status).toBe(404);
  });

  it("answers 401 to the right token under any scheme but Bearer (the header names the scheme, not just carries the token)", async () => {
    // Each header is 7 characters (as "Bearer ") followed by the admin token itself.
    for (const authorization of [`Digest ${env.ADMIN_TOKEN}`, `Bearer:${env.ADMIN_TOKEN}`, `xxxxxxx${env.ADMIN_TOKEN}`]) {
      const res = await exports.default.fetch(new Request("http://gate.test/admin/streams", { headers: { authorization } }));
      expect(res.status).toBe(401);
      expect(await res.json()).toEqual({ error: "missing or wrong admin token" });
    }
    const ok = await exports.default.fetch(new Request("http://gate.test/admin/streams", { headers: { authorization: `Bearer ${env.ADMIN_TOKEN}` } }));
    expect(ok.status).toBe(200);
    await ok.body?.cancel();
  });

  it("fails closed with 500 when ADMIN_TOKEN is not configured", async () => {
    const r = await adminWith({ ADMIN_TOKEN: undefined }, "GET", "/streams");
    expect(r.status).toBe(500);
    expect(r.body.error).toMatch(/ADMIN_TOKEN is not configured/);
  });
});

describe("admin API: streams", () => {
  it("creates a stream with defaults and shows the publish key once", async () => {
    const s = uniqueStream();
    const created = await admin("PUT", `/streams/live/${s}`);
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ vhost: "__defaultVhost__", app: "live", stream: s, maxViewers: null, playAuth: "open", live: false, publisher: null, viewers: 0 });
    expect(created.body.publishKey).toMatch(/^[A-Za-z0-9_-]{32}$/);

    const updated = await admin("PUT", `/streams/live/${s}`, { maxViewers: 5 });
    expect(updated.status).toBe(200);
    expect(updated.body.maxViewers).toBe(5);
    expect(updated.body).not.toHaveProperty("publishKey");
    expect(await streamState(s)).not.toHaveProperty("publishKey");
  });

  it("updates only the fields given", async () => {
    const s = uniqueStream();
    const key = await createStream(s, { maxViewers: 3, playAuth: "token" });
    await admin("PUT", `/streams/live/${s}`, { playAuth: "open" });
    expect(await streamState(s)).toMatchObject({ maxViewers: 3, playAuth: "open" });
    await admin("PUT", `/streams/live/${s}`, { maxViewers: null });
    expect(await streamState(s)).toMatchObject({ maxViewers: null, playAuth: "open" });
    expect(await hook(publish("live", s, key))).toEqual(ALLOW);
  });

  it("lowering the cap below the live count refuses new viewers and keeps the live ones", async () => {
    const s = uniqueStream();
    await createStream(s);
    for (const c of ["v1", "v2", "v3"]) await hook(play("live", s, { ...EDGE_A, client: c }));
    await admin("PUT", `/streams/live/${s}`, { maxViewers: 2 });
    expect((await hook(play("live", s, { ...EDGE_A, client: "v4" }))).status).toBe(403);
    expect((await streamState(s)).viewers).toBe(3);
  });

  it("rotates the key: the old key is refused on the very next on_publish, the new one admitted", async () => {
    const s = uniqueStream();
    const oldKey = await createStream(s);
    const rotated = await admin("PUT", `/streams/live/${s}`, { rotateKey: true });
    expect(rotated.status).toBe(200);
    const newKey = rotated.body.publishKey;
    expect(newKey).toBeTruthy();
    expect(newKey).not.toBe(oldKey);
    expect((await hook(publish("live", s, oldKey))).body.reason).toBe("invalid publish key");
    expect(await hook(publish("live", s, newKey))).toEqual(ALLOW);
  });

  it("deletes a stream: the key is revoked at once and the stream is gone", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    const del = await admin("DELETE", `/streams/live/${s}`);
    expect(del.status).toBe(200);
    const r = await hook(publish("live", s, key));
    expect(r.status).toBe(403);
    expect(r.body.reason).toMatch(/^unknown stream/);
    expect((await admin("GET", `/streams/live/${s}`)).status).toBe(404);
    expect((await admin("DELETE", `/streams/live/${s}`)).status).toBe(404);
    expect((await admin("GET", "/streams")).body.streams.map((x: any) => x.stream)).not.toContain(s);
  });

  it("a stream created again after deletion gets a new key", async () => {
    const s = uniqueStream();
    const first = await createStream(s);
    await admin("DELETE", `/streams/live/${s}`);
    const second = await createStream(s);
    expect(second).not.toBe(first);
    expect((await hook(publish("live", s, first))).status).toBe(403);
    expect(await hook(publish("live", s, second))).toEqual(ALLOW);
  });

  it("stores only the SHA-256 of the key in KV, with the policy", async () => {
    const s = uniqueStream();
    const key = await createStream(s, { maxViewers: 7 });
    const raw = await env.CATALOGUE.get(`stream:__defaultVhost__/live/${s}`);
    expect(raw).not.toBeNull();
    expect(raw).not.toContain(key);
    expect(JSON.parse(raw!)).toMatchObject({ app: "live", stream: s, maxViewers: 7, playAuth: "open", keyHash: await sha256Hex(key) });
    // A policy update keeps the hash; a rotation replaces it.
    await admin("PUT", `/streams/live/${s}`, { maxViewers: 8 });
    expect(JSON.parse((await env.CATALOGUE.get(`stream:__defaultVhost__/live/${s}`))!).keyHash).toBe(await sha256Hex(key));
    const newKey = (await admin("PUT", `/streams/live/${s}`, { rotateKey: true })).body.publishKey;
    expect(JSON.parse((await env.CATALOGUE.get(`stream:__defaultVhost__/live/${s}`))!).keyHash).toBe(await sha256Hex(newKey));
  });

  it("lists streams with their live state", async () => {
    const [a, b] = [uniqueStream("list"), uniqueStream("list")];
    const key = await createStream(a, { maxViewers: 4 });
    await createStream(b);
    await hook(publish("live", a, key, { ...EDGE_A, client: "pub1" }));
    await hook(play("live", a, { ...EDGE_A, client: "v1" }));
    const list = await admin("GET", "/streams");
    expect(list.status).toBe(200);
    const byName = Object.fromEntries(list.body.streams.map((x: any) => [x.stream, x]));
    expect(byName[a]).toMatchObject({ live: true, viewers: 1, maxViewers: 4, publisher: { clientId: "pub1" } });
    expect(byName[b]).toMatchObject({ live: false, viewers: 0 });
    for (const x of list.body.streams) expect(x).not.toHaveProperty("publishKey");
  });

  it("addresses another vhost with ?vhost=", async () => {
    const s = uniqueStream();
    const put = await admin("PUT", `/streams/live/${s}?vhost=tenant-b.example`);
    expect(put.body.vhost).toBe("tenant-b.example");
    const key = put.body.publishKey;
    expect((await hook(publish("live", s, key))).status).toBe(403);
    expect(await hook({ ...publish("live", s, key), vhost: "tenant-b.example" })).toEqual(ALLOW);
    expect((await admin("GET", `/streams/live/${s}?vhost=tenant-b.example`)).body.live).toBe(true);
  });

  it("keeps live state when the stream's object is evicted from memory", async () => {
    const s = uniqueStream();
    const key = await createStream(s, { maxViewers: 2 });
    await hook(publish("live", s, key, { ...EDGE_A, client: "pub1" }));
    await hook(play("live", s, { ...EDGE_A, client: "v1" }));
    await hook(play("live", s, { ...EDGE_A, client: "v2" }));
    await evictDurableObject(env.STREAM.get(env.STREAM.idFromName(`__defaultVhost__/live/${s}`)));
    expect(await streamState(s)).toMatchObject({ live: true, viewers: 2, maxViewers: 2 });
    expect((await hook(play("live", s, { ...EDGE_A, client: "v3" }))).status).toBe(403);
  });
});

describe("admin API: the gate's clock", () => {
  it("every admin answer, an error's too, carries the gate's time in Date (the console reckons 'now' from it); hook answers do not", async () => {
    const before = Math.floor(Date.now() / 1000) * 1000;
    for (const path of ["/streams", `/streams/live/${uniqueStream()}`]) {
      const res = await exports.default.fetch(new Request(`http://gate.test/admin${path}`, { headers: { authorization: `Bearer ${env.ADMIN_TOKEN}` } }));
      const at = Date.parse(res.headers.get("date") ?? "");
      expect(at, path).toBeGreaterThanOrEqual(before);
      expect(at, path).toBeLessThanOrEqual(Date.now());
    }
    const hookAnswer = await exports.default.fetch(new Request(`http://gate.test/hooks/srs/${env.HOOK_SECRET}`, { method: "POST", body: "{}" }));
    expect(hookAnswer.headers.has("date")).toBe(false);
  });
});

describe("admin API: invalid input", () => {
  it("answers 400 with the field named and changes nothing", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 3 });
    const bad: [unknown, RegExp][] = [
      [{ maxViewers: -1 }, /maxViewers/],
      [{ maxViewers: "10" }, /maxViewers/],
      [{ maxViewers: 1.5 }, /maxViewers/],
      [{ playAuth: "password" }, /playAuth/],
      [{ rotateKey: "yes" }, /rotateKey/],
      [{ maxviewers: 3 }, /unknown field "maxviewers"/],
      [[1, 2], /JSON object/],
      ["{not json", /not valid JSON/],
    ];
    for (const [body, message] of bad) {
      const r = await admin("PUT", `/streams/live/${s}`, body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.error).toMatch(message);
    }
    expect(await streamState(s)).toMatchObject({ maxViewers: 3, playAuth: "open" });
  });

  it("refuses names with spaces, control characters or over 128 characters, and creates nothing", async () => {
    for (const path of ["/streams/live/bad%20name", "/streams/live/" + "x".repeat(129), "/streams/live/a%01b"]) {
      const r = await admin("PUT", path, {});
      expect(r.status, path).toBe(400);
    }
    expect((await admin("PUT", `/streams/live/${uniqueStream()}?vhost=`, {})).status).toBe(400);
  });

  it("refuses a stream named with HLS's .m3u8 (no hook could reach it: hooks name the stream without it), and creates nothing", async () => {
    const s = uniqueStream();
    const r = await admin("PUT", `/streams/live/${s}.m3u8`, {});
    expect({ status: r.status, error: r.body.error }).toEqual({ status: 400, error: `stream "${s}.m3u8" ends with ".m3u8", which SRS's HLS hooks leave out: create "${s}" for ${s}.m3u8` });
    expect((await admin("GET", `/streams/live/${s}.m3u8`)).status).toBe(404);
    expect((await admin("GET", `/streams/live/${s}`)).status).toBe(404);
    // No name to suggest for ".m3u8" alone, nor for "x.m3u8.m3u8" (hooks name it "x.m3u8", itself refused).
    for (const name of [".m3u8", `${s}.m3u8.m3u8`]) {
      const refused = await admin("PUT", `/streams/live/${name}`, {});
      expect({ status: refused.status, error: refused.body.error }).toEqual({ status: 400, error: `stream "${name}" ends with ".m3u8", which SRS's HLS hooks leave out: no hook can name it: choose a name that does not end with ".m3u8"` });
    }
  });

  it("answers 413 to an admin body over 64 KiB", async () => {
    const s = uniqueStream();
    const r = await admin("PUT", `/streams/live/${s}`, JSON.stringify({ maxViewers: 1, pad: "x".repeat(70 * 1024) }));
    expect(r.status).toBe(413);
    expect((await admin("GET", `/streams/live/${s}`)).status).toBe(404);
  });
});

describe("ending sessions without SRS_API_URL", () => {
  it("kicks nobody: the answer has no kicking, and the decision log tells no kick of them (not a 'kick failed: no SRS API')", async () => {
    const edge = newEdge();
    const s = uniqueStream();
    await createStream(s, { maxViewers: 5 });
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toMatchObject({ status: 200 });
    const ended = await admin("DELETE", `/streams/live/${s}/sessions`);
    expect(ended.status).toBe(200);
    expect(ended.body.kicking).toBeUndefined();
    await runDurableObjectAlarm(serverRegistry(env, edge.server));
    const events = (await admin("GET", `/streams/live/${s}/events`)).body.events;
    expect(events.filter((e: any) => /kick/.test(e.action))).toEqual([]);
  });
});
