import { env, exports } from "cloudflare:workers";
import { runDurableObjectAlarm } from "cloudflare:test";
import { serverRegistry } from "../src/object-access";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { admin, createStream, type Edge, heartbeat, hook, newEdge, play, publish, stopPlay, uniqueStream, unpublish } from "./srs";

let edge: Edge;
let other: Edge;
beforeEach(() => {
  edge = newEdge();
  other = newEdge();
});

const events = async (stream: string) => (await admin("GET", `/streams/live/${stream}/events`)).body.events as any[];

describe("GET /admin/streams/{app}/{stream}/events: why was my publisher refused?", () => {
  it("shows each decision, newest first, with time, action, server, client, ip, decision and reason", async () => {
    const s = uniqueStream();
    const key = await createStream(s, { maxViewers: 1 });
    await hook(publish("live", s, key, { ...edge, client: "pub00001" }));
    await hook({ ...publish("live", s, key, { ...other, client: "pub00002" }), ip: "198.51.100.7" });
    await hook(publish("live", s, "guess", { ...other, client: "pub00003" }));
    await hook(play("live", s, { ...edge, client: "view0001" }));
    await hook(play("live", s, { ...other, client: "view0002" }));
    await hook(stopPlay("live", s, { ...edge, client: "view0001" }));

    const log = await events(s);
    expect(log.map((e) => [e.action, e.client, e.decision, e.reason])).toEqual([
      ["on_stop", "view0001", "end", "session ended"],
      ["on_play", "view0002", "deny", "viewer cap reached: 1 of 1 viewers"],
      ["on_play", "view0001", "allow", "admitted"],
      ["on_publish", "pub00003", "deny", "invalid publish key"],
      ["on_publish", "pub00002", "deny", `stream busy: already published by client pub00001 on server ${edge.server}`],
      ["on_publish", "pub00001", "allow", "admitted"],
    ]);
    expect(log[4]).toMatchObject({ server: other.server, ip: "198.51.100.7" });
    // Every line, a viewer shard's as a stream object's, in the order README shows (a shard's put `server` last).
    for (const e of log) expect(Object.keys(e)).toEqual(["at", "action", "server", "client", "ip", "decision", "reason"]);
    expect(Date.parse(log[0].at)).not.toBeNaN();
    expect(JSON.stringify(log)).not.toContain(key);
  });

  it("shows sessions a restart fenced off", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    await hook(publish("live", s, key, { ...edge, client: "pub00001" }));
    const next = { server: edge.server, service: newEdge().service };
    await hook(heartbeat(next), undefined, "/heartbeat");
    // The registry tells the stream from its alarm, in batches (or the stream asks before a refusal).
    await runDurableObjectAlarm(serverRegistry(env, edge.server));
    const [fence] = await events(s);
    expect(fence).toMatchObject({ action: "fence", server: edge.server, decision: "end" });
    expect(fence.reason).toBe(`ended 1 session(s) of server ${edge.server} (service ${edge.service}): its server restarted as service ${next.service}`);
  });

  it("records no end for a session that never existed, so duplicate HLS stops cannot flush real decisions", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    await hook(publish("live", s, key, { ...edge, client: "pub00001" }));
    for (let i = 0; i < 150; i++) await hook(stopPlay("live", s, { ...edge, client: "hls00001" }));
    const log = await events(s);
    expect(log).toHaveLength(1);
    expect(log[0]).toMatchObject({ action: "on_publish", client: "pub00001", decision: "allow" });
  });

  it("keeps the last 100 decisions", async () => {
    const s = uniqueStream();
    await createStream(s);
    for (let i = 0; i < 60; i++) {
      await hook(play("live", s, { ...edge, client: `v${i}` }));
      await hook(stopPlay("live", s, { ...edge, client: `v${i}` }));
    }
    const log = await events(s);
    expect(log).toHaveLength(100);
    expect(log[0]).toMatchObject({ action: "on_stop", client: "v59" });
    expect(log[99]).toMatchObject({ action: "on_play", client: "v10" });
  });

  it("answers 404 for a stream that does not exist, and keeps no log for it", async () => {
    const s = uniqueStream();
    await hook(publish("live", s, "x", { ...edge, client: "pub00001" }));
    expect((await admin("GET", `/streams/live/${s}/events`)).status).toBe(404);
    await createStream(s);
    expect(await events(s)).toEqual([]);
  });

  it("needs the admin token", async () => {
    const s = uniqueStream();
    await createStream(s);
    expect((await admin("GET", `/streams/live/${s}/events`, undefined, "nope")).status).toBe(401);
  });
});

describe("admin responses are never cached and never shared across origins", () => {
  it("sends Cache-Control: no-store and no CORS headers, even to a cross-origin preflight", async () => {
    const res = await exports.default.fetch("http://gate.test/admin/streams", {
      headers: { authorization: "Bearer test-admin-token-32-chars-or-more", origin: "https://evil.example" },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect([...res.headers.keys()].filter((h) => h.startsWith("access-control-"))).toEqual([]);
    const preflight = await exports.default.fetch("http://gate.test/admin/streams", {
      method: "OPTIONS",
      headers: { origin: "https://evil.example", "access-control-request-method": "PUT", "access-control-request-headers": "authorization" },
    });
    expect(preflight.headers.get("access-control-allow-origin")).toBeNull();
    expect(preflight.status).toBeGreaterThanOrEqual(400);
  });

  it("unpublish and stop decisions are logged without the param", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    await hook(publish("live", s, key, { ...edge, client: "pub00001" }));
    await hook(unpublish("live", s, { ...edge, client: "pub00001" }));
    expect((await events(s))[0]).toMatchObject({ action: "on_unpublish", decision: "end", reason: "session ended" });
  });
});

describe("logs", () => {
  it("one JSON line per decision with action, stream, server, client, decision, reason and duration; never a key or token", async () => {
    const s = uniqueStream();
    const key = await createStream(s, { playAuth: "token" });
    const token = (await admin("POST", `/streams/live/${s}/tokens`, { ttl: 60 })).body.token;
    const lines: string[] = [];
    const spy = vi.spyOn(console, "log").mockImplementation((line: unknown) => void lines.push(String(line)));
    try {
      await hook(publish("live", s, key, { ...edge, client: "pub00001" }));
      await hook({ ...play("live", s, { ...edge, client: "view0001" }), param: `?token=${token}` });
      await hook({ ...play("live", s, { ...edge, client: "view0002" }), param: "?token=forged" });
      await hook(stopPlay("live", s, { ...edge, client: "view0001" }));
    } finally {
      spy.mockRestore();
    }
    const decisions = lines.map((l) => JSON.parse(l)).filter((l) => l.stream === `__defaultVhost__/live/${s}`);
    expect(decisions.map((d) => [d.action, d.client, d.decision, d.reason])).toEqual([
      ["on_publish", "pub00001", "allow", undefined],
      ["on_play", "view0001", "allow", undefined],
      ["on_play", "view0002", "deny", "malformed token"],
      ["on_stop", "view0001", "allow", undefined],
    ]);
    for (const d of decisions) {
      expect(d.server).toBe(edge.server);
      expect(typeof d.ms).toBe("number");
    }
    const all = lines.join("\n");
    expect(all).not.toContain(key);
    expect(all).not.toContain(token);
  });
});
