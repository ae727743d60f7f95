import { env, exports } from "cloudflare:workers";
import { createExecutionContext } from "cloudflare:test";
import { beforeEach, describe, expect, it } from "vitest";
import worker from "../src/index";
import {
  ALLOW,
  admin,
  captured,
  close,
  createStream,
  type Edge,
  hook,
  newEdge,
  play,
  publish,
  stopPlay,
  streamHook,
  streamState,
  uniqueStream,
  unpublish,
} from "./srs";

// Fresh SRS servers for every test: a server's restart (new service_id) in one
// test must not fence sessions another test relies on.
let EDGE_A: Edge;
let EDGE_B: Edge;
beforeEach(() => {
  EDGE_A = newEdge();
  EDGE_B = newEdge();
});

describe("hook endpoint: authentication", () => {
  it("answers 404 to a wrong secret and records nothing", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    expect((await hook(publish("live", s, key), "wrong-secret")).status).toBe(404);
    expect((await hook(play("live", s), "wrong-secret")).status).toBe(404);
    const state = await streamState(s);
    expect(state.live).toBe(false);
    expect(state.viewers).toBe(0);
  });

  it("fails closed with 500 and says why when HOOK_SECRET is not configured", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    const res = await worker.fetch(
      new Request("http://gate.test/hooks/srs/anything", { method: "POST", body: JSON.stringify(publish("live", s, key)) }),
      { ...env, HOOK_SECRET: undefined },
      createExecutionContext(),
    );
    expect(res.status).toBe(500);
    expect(((await res.json()) as any).reason).toMatch(/HOOK_SECRET is not configured/);
    expect((await streamState(s)).live).toBe(false);
  });

  it("accepts HOOK_SECRET_PREVIOUS too while it is set, for a rotation without refused clients", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    const send = (secret: string, overrides: Record<string, string | undefined>) =>
      worker.fetch(
        new Request(`http://gate.test/hooks/srs/${secret}`, { method: "POST", body: JSON.stringify(publish("live", s, key, { ...EDGE_A, client: "pub00001" })) }),
        { ...env, HOOK_SECRET: "new-hook-secret-of-32-characters", ...overrides },
        createExecutionContext(),
      );
    expect((await send("old-hook-secret-of-32-characters", { HOOK_SECRET_PREVIOUS: undefined })).status).toBe(404);
    expect((await send("old-hook-secret-of-32-characters", { HOOK_SECRET_PREVIOUS: "old-hook-secret-of-32-characters" })).status).toBe(200);
    expect((await send("new-hook-secret-of-32-characters", { HOOK_SECRET_PREVIOUS: "old-hook-secret-of-32-characters" })).status).toBe(200);
  });

  it("also guards the heartbeat path with the secret", async () => {
    expect((await hook(captured("heartbeat"), "wrong", "/heartbeat")).status).toBe(404);
    expect(await hook(captured("heartbeat"), undefined, "/heartbeat")).toEqual(ALLOW);
  });
});

describe("on_publish: stream keys", () => {
  it("admits the captured RTMP publisher with its key and reports it live", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    const body = { ...captured("on_publish", "hooks-srs7"), stream: s, stream_url: `/live/${s}`, param: `?key=${key}&foo=1` };
    expect(await hook(body)).toEqual(ALLOW);
    const state = await streamState(s);
    expect(state.live).toBe(true);
    expect(state.publisher).toMatchObject({ serverId: "vid-8304c30", serviceId: "32457039", clientId: "0g733s04", ip: "127.0.0.1" });
  });

  it("accepts a param without a leading '?' (WHIP and SRT send it that way)", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    const body = { ...publish("live", s, key), tcUrl: "", param: `app=live&stream=${s}&key=${encodeURIComponent(key)}` };
    expect(await hook(body)).toEqual(ALLOW);
    expect((await streamState(s)).live).toBe(true);
  });

  it("takes a hook without a vhost, or with an empty one, for the default vhost's stream", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    const { vhost: _, ...noVhost } = publish("live", s, key, { ...EDGE_A, client: "enc00001" });
    expect(await hook(noVhost)).toEqual(ALLOW);
    expect(await streamState(s)).toMatchObject({ live: true, publisher: { clientId: "enc00001" } });
    expect(await hook({ ...play("live", s, { ...EDGE_A, client: "view0001" }), vhost: "" })).toEqual(ALLOW);
    expect((await streamState(s)).viewers).toBe(1);
  });

  it("denies a wrong key, a missing key and an unknown stream with distinct reasons", async () => {
    const s = uniqueStream();
    await createStream(s);
    const wrong = await hook(publish("live", s, "not-the-key"));
    const missing = await hook(publish("live", s, null));
    const unknown = await hook(publish("live", uniqueStream(), "whatever"));
    for (const r of [wrong, missing, unknown]) {
      expect(r.status).toBe(403);
      expect(Number.isInteger(r.body.code) && r.body.code !== 0).toBe(true);
    }
    expect(wrong.body.reason).toBe("invalid publish key");
    expect(missing.body.reason).toMatch(/^missing publish key/);
    expect(unknown.body.reason).toMatch(/^unknown stream/);
    expect((await streamState(s)).live).toBe(false);
  });
});

describe("on_publish: one publisher per stream across the fleet", () => {
  it("refuses a second publisher on another edge while the first is live, then admits it after on_unpublish", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    const first = { ...EDGE_A, client: "0g733s04" };
    const second = { ...EDGE_B, client: "19199195" };
    expect(await hook(publish("live", s, key, first))).toEqual(ALLOW);

    const refused = await hook(publish("live", s, key, second));
    expect(refused.status).toBe(403);
    expect(refused.body.reason).toBe(`stream busy: already published by client 0g733s04 on server ${EDGE_A.server}`);
    expect((await streamState(s)).publisher.serverId).toBe(EDGE_A.server);

    expect(await hook(unpublish("live", s, first))).toEqual(ALLOW);
    expect(await hook(publish("live", s, key, second))).toEqual(ALLOW);
    expect((await streamState(s)).publisher).toMatchObject({ serverId: EDGE_B.server, clientId: "19199195" });
  });

  it("refuses another client on the same server too (only the same session is the same publisher)", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    expect(await hook(publish("live", s, key, { ...EDGE_A, client: "aaaa1111" }))).toEqual(ALLOW);
    expect((await hook(publish("live", s, key, { ...EDGE_A, client: "bbbb2222" }))).status).toBe(403);
  });

  it("lets the same session publish again without changing anything", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    const who = { ...EDGE_A, client: "0g733s04" };
    expect(await hook(publish("live", s, key, who))).toEqual(ALLOW);
    const before = await streamState(s);
    expect(await hook(publish("live", s, key, who))).toEqual(ALLOW);
    expect(await streamState(s)).toEqual(before);
  });

  it("admits exactly one of two simultaneous publishers", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    const results = await Promise.all([
      hook(publish("live", s, key, { ...EDGE_A, client: "pub00001" })),
      hook(publish("live", s, key, { ...EDGE_B, client: "pub00002" })),
    ]);
    expect(results.map((r) => r.status).sort()).toEqual([200, 403]);
    const winner = results[0].status === 200 ? EDGE_A.server : EDGE_B.server;
    expect((await streamState(s)).publisher.serverId).toBe(winner);
  });

  it("admits exactly one of many simultaneous publishers from across the fleet", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => hook(publish("live", s, key, { server: `vid-edge${i}`, service: "svc00001", client: `c${i}` }))),
    );
    expect(results.filter((r) => r.status === 200)).toHaveLength(1);
    expect(results.filter((r) => r.status === 403)).toHaveLength(19);
  });
});

describe("on_play: viewer caps", () => {
  it("admits viewers up to maxViewers and refuses the next with the cap in the reason", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 2 });
    expect(await hook(play("live", s, { ...EDGE_A, client: "v1" }))).toEqual(ALLOW);
    expect(await hook(play("live", s, { ...EDGE_B, client: "v2" }))).toEqual(ALLOW);
    const third = await hook(play("live", s, { ...EDGE_A, client: "v3" }));
    expect(third.status).toBe(403);
    expect(third.body.reason).toBe("viewer cap reached: 2 of 2 viewers");
    expect((await streamState(s)).viewers).toBe(2);
  });

  it("frees a slot when a viewer stops", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    expect(await hook(play("live", s, { ...EDGE_A, client: "v1" }))).toEqual(ALLOW);
    expect((await hook(play("live", s, { ...EDGE_A, client: "v2" }))).status).toBe(403);
    expect(await hook(stopPlay("live", s, { ...EDGE_A, client: "v1" }))).toEqual(ALLOW);
    expect(await hook(play("live", s, { ...EDGE_A, client: "v2" }))).toEqual(ALLOW);
    expect((await streamState(s)).viewers).toBe(1);
  });

  it("does not count a repeated on_play of a live session twice, even at the cap", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    const who = { ...EDGE_A, client: "26968zvw" };
    expect(await hook(play("live", s, who))).toEqual(ALLOW);
    expect(await hook(play("live", s, who))).toEqual(ALLOW);
    expect((await streamState(s)).viewers).toBe(1);
  });

  it("counts the same client_id on two servers as two viewers", async () => {
    const s = uniqueStream();
    await createStream(s);
    await hook(play("live", s, { ...EDGE_A, client: "samecid1" }));
    await hook(play("live", s, { ...EDGE_B, client: "samecid1" }));
    expect((await streamState(s)).viewers).toBe(2);
  });

  it("places no cap when maxViewers is null", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: null });
    const results = await Promise.all(Array.from({ length: 30 }, (_, i) => hook(play("live", s, { ...EDGE_A, client: `v${i}` }))));
    expect(results.every((r) => r.status === 200)).toBe(true);
    expect((await streamState(s)).viewers).toBe(30);
  });

  it("admits exactly 10 of 50 simultaneous viewers on a stream capped at 10", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 10 });
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => hook(play("live", s, { server: `vid-edge${i % 5}`, service: "svc00001", client: `rush${i}` }))),
    );
    expect(results.filter((r) => r.status === 200)).toHaveLength(10);
    expect(results.filter((r) => r.status === 403)).toHaveLength(40);
    expect((await streamState(s)).viewers).toBe(10);
  });

  it("refuses viewers of a stream that does not exist", async () => {
    const r = await hook(play("live", uniqueStream()));
    expect(r.status).toBe(403);
    expect(r.body.reason).toMatch(/^unknown stream/);
  });

  it("counts an HLS viewer (stream 'name.m3u8') on the stream itself", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    const hls = { ...captured("on_play", "HLS"), stream: `${s}.m3u8`, stream_url: `/live/${s}` };
    expect(await hook(hls)).toEqual(ALLOW);
    expect((await streamState(s)).viewers).toBe(1);
    expect((await hook(play("live", s, { ...EDGE_B, client: "rtmp0001" }))).status).toBe(403);
    const hlsStop = { ...captured("on_stop", "HLS"), stream: `${s}.m3u8`, stream_url: `/live/${s}` };
    expect(await hook(hlsStop)).toEqual(ALLOW);
    expect((await streamState(s)).viewers).toBe(0);
  });

  it("counts an HTTP-FLV viewer (no on_connect or on_close) and ends it on on_stop", async () => {
    const s = uniqueStream();
    await createStream(s);
    const flv = { ...captured("on_play", "HTTP-FLV"), stream: s, stream_url: `/live/${s}` };
    expect(await hook(flv)).toEqual(ALLOW);
    expect((await streamState(s)).viewers).toBe(1);
    expect(await hook({ ...captured("on_stop", "HTTP-FLV"), stream: s, stream_url: `/live/${s}` })).toEqual(ALLOW);
    expect((await streamState(s)).viewers).toBe(0);
  });

  it("keeps streams of different vhosts apart", async () => {
    const s = uniqueStream();
    const put = await admin("PUT", `/streams/live/${s}?vhost=tenant-a.example`, { maxViewers: 1 });
    expect(put.status).toBe(201);
    const other = { ...play("live", s, { ...EDGE_A, client: "v1" }), vhost: "tenant-a.example" };
    expect(await hook(other)).toEqual(ALLOW);
    expect((await admin("GET", `/streams/live/${s}?vhost=tenant-a.example`)).body.viewers).toBe(1);
    expect((await admin("GET", `/streams/live/${s}`)).status).toBe(404);
  });
});

describe("stop events: on_stop, on_unpublish, on_close", () => {
  it("ends an RTMP publisher's session on on_close when on_unpublish never came (SRS refused it after our allow)", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    const who = { ...EDGE_B, client: "19199195" };
    expect(await hook(publish("live", s, key, who))).toEqual(ALLOW);
    expect(await hook(close(who))).toEqual(ALLOW);
    expect((await streamState(s)).live).toBe(false);
    expect(await hook(publish("live", s, key, { ...EDGE_A, client: "next0001" }))).toEqual(ALLOW);
  });

  it("ends every session a closing client held, on every stream, and nobody else's", async () => {
    const [s1, s2] = [uniqueStream(), uniqueStream()];
    await createStream(s1);
    await createStream(s2);
    const who = { ...EDGE_A, client: "26968zvw" };
    await hook(play("live", s1, who));
    await hook(play("live", s2, who));
    await hook(play("live", s1, { ...EDGE_B, client: "26968zvw" }));
    expect(await hook(close(who))).toEqual(ALLOW);
    expect((await streamState(s1)).viewers).toBe(1);
    expect((await streamState(s2)).viewers).toBe(0);
  });

  it("follows the captured RTMP lifecycle to an idle stream", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    const publisher = { ...EDGE_A, client: "0g733s04" };
    const viewer = { ...EDGE_A, client: "26968zvw" };
    await hook(publish("live", s, key, publisher));
    await hook(play("live", s, viewer));
    expect(await streamState(s)).toMatchObject({ live: true, viewers: 1 });
    await hook(stopPlay("live", s, viewer));
    await hook(close(viewer));
    await hook(unpublish("live", s, publisher));
    await hook(close(publisher));
    expect(await streamState(s)).toMatchObject({ live: false, viewers: 0, publisher: null });
  });

  it("treats duplicate and unknown stops as harmless no-ops; counts never go negative", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    const viewer = { ...EDGE_A, client: "v1" };
    await hook(play("live", s, viewer));
    for (let i = 0; i < 3; i++) expect(await hook(stopPlay("live", s, viewer))).toEqual(ALLOW);
    expect(await hook(stopPlay("live", s, { ...EDGE_B, client: "never-seen" }))).toEqual(ALLOW);
    expect(await hook(unpublish("live", s, { ...EDGE_B, client: "never-seen" }))).toEqual(ALLOW);
    expect(await hook(close({ ...EDGE_B, client: "never-seen" }))).toEqual(ALLOW);
    expect(await hook(stopPlay("live", uniqueStream(), viewer))).toEqual(ALLOW);
    expect(await streamState(s)).toMatchObject({ live: false, viewers: 0 });
    // The publisher and viewer slots are really free.
    expect(await hook(publish("live", s, key, viewer))).toEqual(ALLOW);
  });

  it("does not let another session's on_unpublish end the live publisher", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    await hook(publish("live", s, key, { ...EDGE_A, client: "owner001" }));
    // A denied second publisher that SRS later reports as unpublished (WHIP, SRT) must not free the stream.
    await hook(publish("live", s, key, { ...EDGE_B, client: "loser001" }));
    await hook(unpublish("live", s, { ...EDGE_B, client: "loser001" }));
    await hook(close({ ...EDGE_B, client: "loser001" }));
    expect((await streamState(s)).publisher.clientId).toBe("owner001");
  });
});

describe("actions that gate nothing", () => {
  it("answers on_forward with an empty url list, which SRS needs to proceed", async () => {
    const body = { action: "on_forward", server_id: "vid-8304c30", service_id: "32457039", client_id: "0g733s04", ip: "127.0.0.1", vhost: "__defaultVhost__", app: "live", tcUrl: "rtmp://127.0.0.1/live", stream: "cam1", param: "" };
    expect(await hook(body)).toEqual({ status: 200, body: { code: 0, data: { urls: [] } } });
  });

  it("allows on_connect, on_dvr, on_hls and unknown actions", async () => {
    expect(await hook(captured("on_connect"))).toEqual(ALLOW);
    expect(await hook({ ...streamHook("on_publish", "live", "cam1"), action: "on_dvr", cwd: "/srs", file: "./objs/nginx/html/live/cam1.flv" })).toEqual(ALLOW);
    expect(await hook({ ...streamHook("on_publish", "live", "cam1"), action: "on_hls", duration: 9.97, seq_no: 3 })).toEqual(ALLOW);
    expect(await hook({ ...captured("on_connect"), action: "on_something_new" })).toEqual(ALLOW);
  });
});

describe("bad input changes nothing", () => {
  async function assertUntouched(s: string) {
    expect(await streamState(s)).toMatchObject({ live: false, viewers: 0 });
  }

  it("answers 400 to invalid JSON, non-objects and raw control bytes", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    const good = JSON.stringify(publish("live", s, key));
    for (const body of [good.slice(0, -1), "[]", "0", "null", '"on_publish"', good.replace(s, `${s}\u0001`).replace('"app"', '"app\u0000"')]) {
      const r = await hook(body);
      expect(r.status, body).toBe(400);
      expect(r.body.code).toBe(400);
      expect(typeof r.body.reason).toBe("string");
    }
    await assertUntouched(s);
  });

  it("names the field when a required one is missing or of the wrong type", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    const cases: [string, unknown][] = [
      ["client_id", undefined],
      ["client_id", 12345],
      ["server_id", undefined],
      ["service_id", ""],
      ["stream", undefined],
      ["app", ["live"]],
      ["param", { key }],
    ];
    for (const [field, value] of cases) {
      const body: Record<string, unknown> = publish("live", s, key);
      if (value === undefined) delete body[field];
      else body[field] = value;
      const r = await hook(body);
      expect(r.status, field).toBe(400);
      expect(r.body.reason).toContain(`"${field}"`);
    }
    const noAction = publish("live", s, key);
    delete noAction.action;
    expect((await hook(noAction)).body.reason).toContain('"action"');
    await assertUntouched(s);
  });

  it("answers 413 to a body over 64 KiB", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    const body = { ...publish("live", s, key), pageUrl: "x".repeat(65 * 1024) };
    const r = await hook(body);
    expect(r.status).toBe(413);
    await assertUntouched(s);
  });

  it("answers 413 to an oversized body sent without Content-Length (chunked)", async () => {
    const chunk = new TextEncoder().encode("x".repeat(16 * 1024));
    let sent = 0;
    const stream = new ReadableStream({
      pull(controller) {
        if (sent++ < 8) controller.enqueue(chunk);
        else controller.close();
      },
    });
    const res = await exports.default.fetch("http://gate.test/hooks/srs/test-hook-secret-32-chars-or-more", { method: "POST", body: stream });
    expect(res.status).toBe(413);
  });

  it("answers 400 to a heartbeat without server or service", async () => {
    const beat = captured("heartbeat");
    delete beat.server;
    expect((await hook(beat, undefined, "/heartbeat")).status).toBe(400);
  });

  it("answers 404 to other paths and methods", async () => {
    const res = await exports.default.fetch("http://gate.test/hooks/srs/test-hook-secret-32-chars-or-more", { method: "GET" });
    expect(res.status).toBe(404);
  });
});
