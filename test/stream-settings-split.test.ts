/**
 * The stream object's settings row moved to src/stream/settings.ts (StreamSettings): what the object's
 * RPC answers must not change with it. These pin configure's answer (publishKey only when the key is
 * created or rotated; replacedKeyHash and rotatedPublishers only for a rotation), undoKeyChange on a
 * deleted or re-created stream, remove() twice, a stream never created (stores nothing), and the
 * upgrade of a stream table an older version wrote (the columns added since get their defaults).
 */
import { env } from "cloudflare:workers";
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { sha256Hex } from "../src/auth/secrets";
import type { StreamObject } from "../src/stream/object";
import { Denials } from "../src/stream/rules";
import { ALLOW, admin, createStream, hook, newEdge, publish, uniqueStream } from "./srs";

const stubOf = (s: string) => env.STREAM.get(env.STREAM.idFromName(`__defaultVhost__/live/${s}`));
const nameOf = (s: string) => ({ vhost: "__defaultVhost__", app: "live", stream: s });
async function candidate() {
  const key = `key-${crypto.randomUUID()}`;
  return { key, hash: await sha256Hex(key) };
}

describe("configure's answer", () => {
  it("publishKey only when created or rotated; replacedKeyHash and rotatedPublishers only when rotated; absent fields keep their value", async () => {
    const s = uniqueStream();
    const stub = stubOf(s);
    const [k1, k2, k3] = [await candidate(), await candidate(), await candidate()];
    const created = await stub.configure(nameOf(s), { maxViewers: 3 }, k1);
    expect(created).toMatchObject({ created: true, keyHash: k1.hash, publishKey: k1.key });
    expect(created).not.toHaveProperty("replacedKeyHash");
    expect(created).not.toHaveProperty("rotatedPublishers");
    expect(created.state).toMatchObject({ maxViewers: 3, playAuth: "open", onDuplicatePublish: "deny", maxSessionsPerViewer: null, onExtraViewerSession: "deny" });
    const edge = newEdge();
    expect(await hook(publish("live", s, k1.key, { ...edge, client: "enc00001" }))).toEqual(ALLOW);

    const changed = await stub.configure(nameOf(s), { playAuth: "token" }, k2);
    expect(changed).toMatchObject({ created: false, keyHash: k1.hash });
    for (const field of ["publishKey", "replacedKeyHash", "rotatedPublishers"]) expect(changed).not.toHaveProperty(field);
    expect(changed.state).toMatchObject({ maxViewers: 3, playAuth: "token", createdAt: created.state.createdAt });

    const rotated = await stub.configure(nameOf(s), { rotateKey: true }, k3);
    expect(rotated).toMatchObject({
      created: false,
      keyHash: k3.hash,
      publishKey: k3.key,
      replacedKeyHash: k1.hash,
      rotatedPublishers: [{ serverId: edge.server, serviceId: edge.service, clientId: "enc00001" }],
    });
    expect(rotated.state).toMatchObject({ maxViewers: 3, playAuth: "token", live: true, createdAt: created.state.createdAt });
  });
});

describe("undoKeyChange", () => {
  it("puts the replaced key back, only while the key is still the one it replaced", async () => {
    const s = uniqueStream();
    const stub = stubOf(s);
    const [k1, k2] = [await candidate(), await candidate()];
    await stub.configure(nameOf(s), {}, k1);
    const rotated = await stub.configure(nameOf(s), { rotateKey: true }, k2);
    expect(await stub.undoKeyChange(k2.hash, rotated.replacedKeyHash!)).toBe(true);
    expect(await stub.undoKeyChange(k2.hash, rotated.replacedKeyHash!)).toBe(false); // the key is k1's again
    expect(await hook(publish("live", s, k1.key, { ...newEdge(), client: "enc00001" }))).toEqual(ALLOW);
    expect((await hook(publish("live", s, k2.key, { ...newEdge(), client: "enc00002" }))).body.reason).toBe("invalid publish key");
  });

  it("of a stream deleted meanwhile, or deleted and created again: false, and nothing changes", async () => {
    const s = uniqueStream();
    const stub = stubOf(s);
    const [k1, k2, k3] = [await candidate(), await candidate(), await candidate()];
    await stub.configure(nameOf(s), {}, k1);
    const rotated = await stub.configure(nameOf(s), { rotateKey: true }, k2);
    expect(await stub.remove()).toBe(true);
    expect(await stub.undoKeyChange(k2.hash, rotated.replacedKeyHash!)).toBe(false);
    expect(await stub.undoKeyChange(k2.hash, null)).toBe(false);
    expect(await stub.state()).toBeNull();
    const again = await stub.configure(nameOf(s), {}, k3);
    expect(again).toMatchObject({ created: true, publishKey: k3.key });
    expect(await stub.undoKeyChange(k2.hash, rotated.replacedKeyHash!)).toBe(false);
    expect(await stub.undoKeyChange(k1.hash, null)).toBe(false);
    expect((await stub.state())?.stream).toBe(s);
    expect(await hook(publish("live", s, k3.key, { ...newEdge(), client: "enc00001" }))).toEqual(ALLOW);
  });

  it("of a creation (previous null): the stream is removed, once", async () => {
    const s = uniqueStream();
    const stub = stubOf(s);
    const k1 = await candidate();
    await stub.configure(nameOf(s), {}, k1);
    expect(await stub.undoKeyChange(k1.hash, null)).toBe(true);
    expect(await stub.state()).toBeNull();
    expect(await stub.undoKeyChange(k1.hash, null)).toBe(false);
    expect(await stub.remove()).toBe(false);
    expect((await hook(publish("live", s, k1.key, { ...newEdge(), client: "enc00001" }))).body.reason).toBe(Denials.unknownStream.reason);
  });
});

describe("remove and a stream that does not exist", () => {
  it("remove() twice: true, then false; the deleted stream has no state and refuses plays as unknown", async () => {
    const s = uniqueStream();
    const stub = stubOf(s);
    await stub.configure(nameOf(s), { playAuth: "token" }, await candidate());
    expect(await stub.remove()).toBe(true);
    expect(await stub.remove()).toBe(false);
    expect(await stub.state()).toBeNull();
    expect(await stub.revocationList()).toBeNull();
    const session = { serverId: "vid-x", serviceId: "svc", clientId: "v1" };
    expect(await stub.refusePlay(session, "203.0.113.9", { ok: false, problem: "missing token" }, 10)).toEqual({ allow: false, denial: Denials.unknownStream });
  });

  it("a stream never created answers as absent and stores nothing", async () => {
    const s = uniqueStream();
    const stub = stubOf(s);
    expect(await stub.state()).toBeNull();
    expect(await stub.remove()).toBe(false);
    expect(await stub.undoKeyChange("a".repeat(64), null)).toBe(false);
    expect(await stub.undoKeyChange("a".repeat(64), "b".repeat(64))).toBe(false);
    expect(await stub.revocationList()).toBeNull();
    expect(await stub.publisherSessions()).toEqual([]);
    await stub.kicksNotQueued([{ serverId: "vid-x", serviceId: "svc", clientId: "c" }]);
    await stub.recordKick("vid-x", "c", "kicked (stream deleted)", { serviceId: "svc", kicked: true });
    const session = { serverId: "vid-x", serviceId: "svc", clientId: "v1" };
    expect(await stub.refusePlay(session, "203.0.113.9", { ok: false, problem: "bad signature" }, 10)).toEqual({ allow: false, denial: Denials.unknownStream });
    const tables = await runInDurableObject(stub, (_: StreamObject, state) => state.storage.sql.exec("SELECT name FROM sqlite_master WHERE type = 'table'").toArray());
    expect(tables).toEqual([]);
  });
});

describe("a stream table an older version wrote (without onDuplicatePublish, maxSessionsPerViewer, onExtraViewerSession)", () => {
  it("is upgraded when the object starts: those settings get their defaults, the rest and the key are kept", async () => {
    const s = uniqueStream();
    const stub = stubOf(s);
    const k1 = await candidate();
    await runInDurableObject(stub, (_: StreamObject, state) => {
      state.storage.sql.exec(`CREATE TABLE stream (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        vhost TEXT NOT NULL, app TEXT NOT NULL, stream TEXT NOT NULL,
        key_hash TEXT NOT NULL, max_viewers INTEGER, play_auth TEXT NOT NULL,
        created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL)`);
      state.storage.sql.exec("INSERT INTO stream VALUES (1, '__defaultVhost__', 'live', ?, ?, 7, 'token', 1000000, 2000000)", s, k1.hash);
    });
    await evictDurableObject(stub);
    expect(await stub.state()).toMatchObject({
      vhost: "__defaultVhost__",
      app: "live",
      stream: s,
      maxViewers: 7,
      playAuth: "token",
      onDuplicatePublish: "deny",
      maxSessionsPerViewer: null,
      onExtraViewerSession: "deny",
      live: false,
      createdAt: new Date(1000000).toISOString(),
      updatedAt: new Date(2000000).toISOString(),
    });
    expect(await hook(publish("live", s, k1.key, { ...newEdge(), client: "enc00001" }))).toEqual(ALLOW);
    const changed = await stub.configure(nameOf(s), { onDuplicatePublish: "replace" }, await candidate());
    expect(changed).toMatchObject({ created: false, keyHash: k1.hash, state: { maxViewers: 7, playAuth: "token", onDuplicatePublish: "replace", createdAt: new Date(1000000).toISOString() } });
    expect(changed).not.toHaveProperty("publishKey");
  });
});

describe("the object's RPC as a Worker of the previous version calls it (both run during a deploy)", () => {
  it("recordKick without its publisher argument (an older kick outbox) still logs the kick's outcome", async () => {
    const s = uniqueStream();
    const stub = stubOf(s);
    await stub.configure(nameOf(s), {}, await candidate());
    await (stub.recordKick as (serverId: string, clientId: string, reason: string) => Promise<void>)("vid-x", "enc00001", "kicked (key rotated)");
    expect(await stub.events()).toEqual([expect.objectContaining({ action: "kick", server: "vid-x", client: "enc00001", decision: "kick", reason: "kicked (key rotated)" })]);
  });
});

describe("the admin API's stream state", () => {
  it("lists its fields in the order it always did: the policy, the publishers, the audience, then createdAt and updatedAt", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 5 });
    const state = (await admin("GET", `/streams/live/${s}`)).body;
    expect(Object.keys(state)).toEqual([
      "vhost", "app", "stream", "maxViewers", "playAuth", "onDuplicatePublish", "maxSessionsPerViewer", "onExtraViewerSession",
      "live", "publisher", "conflicts", "viewers", "suspendedViewers", "distinctViewerIds", "leasedUnused", "shards", "createdAt", "updatedAt",
    ]);
  });
});
