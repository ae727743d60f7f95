import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { streamObject } from "../src/object-access";
import { ALLOW, admin, captured, createStream, type Edge, heartbeat, hook, newEdge, play, publish, stopPlay, streamState, uniqueStream, unpublish } from "./srs";


let edge: Edge;
beforeEach(() => {
  edge = newEdge();
});
afterEach(() => {
  vi.useRealTimers();
});


describe("input limits", () => {
  it("refuses names, ids and params beyond SRS's shapes with 400 naming the field and the limit", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    const base = publish("live", s, key, { ...edge, client: "pub00001" });
    const cases: [Record<string, unknown>, string][] = [
      [{ stream: "x".repeat(129) }, 'field "stream" is longer than 128 characters'],
      [{ stream: "cam 1" }, 'field "stream" may contain only letters, digits and . _ ~ -'],
      [{ stream: "cam/1" }, 'field "stream" may contain only'],
      [{ stream: "caméra" }, 'field "stream" may contain only'],
      [{ app: "live\u0000" }, 'field "app" may contain only'],
      [{ vhost: "a".repeat(254) }, 'field "vhost" is longer than 253 characters'],
      [{ vhost: "tenant a" }, 'field "vhost" may contain only'],
      [{ client_id: "c".repeat(65) }, 'field "client_id" is longer than 64 characters'],
      [{ server_id: "vid 1" }, 'field "server_id" may contain only printable ASCII without spaces'],
      [{ param: `?key=${key}&pad=${"p".repeat(4100)}` }, 'field "param" is longer than 4096 characters'],
      [{ param: `?key=${key}\n` }, 'field "param" must not contain control characters'],
      [{ param: `?key=${key}\u009b2J` }, 'field "param" must not contain control characters'], // C1: CSI
    ];
    for (const [change, message] of cases) {
      const r = await hook({ ...base, ...change });
      expect(r.status, JSON.stringify(change).slice(0, 60)).toBe(400);
      expect(r.body.reason).toContain(message);
    }
    const beat = { ...heartbeat(edge), device_id: "d".repeat(129) };
    expect((await hook(beat, undefined, "/heartbeat")).body.reason).toContain('field "device_id" is longer than 128 characters');
    for (const [field, value] of [["pid", "4242\u009b2J"], ["device_id", "dev\u0085x"]] as const) {
      const r = await hook({ ...heartbeat(edge), [field]: value }, undefined, "/heartbeat");
      expect({ field, status: r.status, reason: r.body.reason }).toEqual({ field, status: 400, reason: `field "${field}" must not contain control characters` });
    }
    expect((await streamState(s)).live).toBe(false);
  });

  it("a stop's param is never a reason to refuse it (SRS does not retry a stop: a refused one left a ghost)", async () => {
    const s = uniqueStream();
    const key = await createStream(s, { maxViewers: 1 });
    expect(await hook(publish("live", s, key, { ...edge, client: "pub00001" }))).toEqual(ALLOW);
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    // Params a start hook would be refused for (a control character, C1 too; over 4096 characters).
    expect(await hook({ ...unpublish("live", s, { ...edge, client: "pub00001" }), param: `?key=${key}\u009b2J` })).toEqual(ALLOW);
    expect(await hook({ ...stopPlay("live", s, { ...edge, client: "view0001" }), param: `?pad=${"p".repeat(5000)}\n` })).toEqual(ALLOW);
    expect(await streamState(s)).toMatchObject({ live: false, viewers: 0 });
    expect(await hook(play("live", s, { ...edge, client: "view0002" }))).toEqual(ALLOW);
  });

  it("accepts the real shapes at the limits", async () => {
    const s = uniqueStream().padEnd(128, "x");
    const key = await createStream(s);
    const body = { ...publish("live", s, key, { ...edge, client: "c".repeat(64) }), ip: "2001:db8::1", param: `?key=${key}&pad=${"p".repeat(3000)}` };
    expect(await hook(body)).toEqual(ALLOW);
    expect(await hook({ ...captured("on_play", "HLS"), stream: `${s}.m3u8`, server_id: edge.server, service_id: edge.service })).toEqual(ALLOW);
  });

  // KV takes keys of 512 bytes at most, and the catalogue's is "stream:vhost/app/stream": each name within its own
  // limit, 253 + 128 + 128 characters made a 518-byte key, and PUT answered 503 "try again" for ever.
  it("refuses a vhost, app and stream too long together for the stream's catalogue key in KV with 400 naming the limit, and creates nothing", async () => {
    const vhost = "v".repeat(253);
    const app = "a".repeat(128);
    const stream = `${uniqueStream()}-`.padEnd(128, "s");
    const put = await admin("PUT", `/streams/${app}/${stream}?vhost=${vhost}`, { maxViewers: 5 });
    expect(put.status).toBe(400);
    expect(put.body.error).toBe(
      'fields "vhost", "app" and "stream" are too long together: "vhost/app/stream" is 511 characters, at most 505 (the stream\'s catalogue key in KV, "stream:vhost/app/stream", is limited to 512 bytes)',
    );
    expect((await env.CATALOGUE.list({ prefix: `stream:${vhost}/` })).keys).toEqual([]);
    expect(await streamObject(env, `${vhost}/${app}/${stream}`).state()).toBeNull();
    // Every admin route of the stream says the same (it cannot exist).
    for (const [method, path] of [["GET", ""], ["DELETE", ""], ["POST", "/tokens"], ["GET", "/events"]] as const) {
      const r = await admin(method, `/streams/${app}/${stream}${path}?vhost=${vhost}`);
      expect({ method, path, status: r.status, error: r.body.error }).toEqual({ method, path, status: 400, error: put.body.error });
    }
    // A list prefix longer than any stream key can be: 400 too (KV refused the list, a 500).
    const list = await admin("GET", `/streams?vhost=${vhost}&prefix=${app}/${stream}`);
    expect(list.status).toBe(400);
    expect(list.body.error).toContain('query parameter "prefix"');
    // At the limit: 505 characters, a 512-byte key, created and catalogued; one more is refused.
    const fits = stream.slice(0, 124);
    expect((await admin("PUT", `/streams/${app.slice(2)}/${fits}?vhost=${vhost}`, {})).status).toBe(201);
    expect(await env.CATALOGUE.get(`stream:${vhost}/${app.slice(2)}/${fits}`)).not.toBeNull();
    expect((await admin("PUT", `/streams/${app.slice(1)}/${fits}?vhost=${vhost}`, {})).status).toBe(400);
  });

  it("answers a hook naming such a stream as for any stream that does not exist", async () => {
    const vhost = "v".repeat(253);
    const app = "a".repeat(128);
    const tooLong = `${uniqueStream()}-`.padEnd(128, "s");
    const unknown = uniqueStream();
    const who = { ...edge, client: "cli00001" };
    const answers = async (a: string, s: string, v?: string) => {
      const at = (body: Record<string, unknown>) => hook(v ? { ...body, vhost: v } : body);
      return [
        await at(publish(a, s, "k".repeat(32), who)),
        await at(play(a, s, who)),
        await at({ ...play(a, `${s}.m3u8`, who), param: "?hls_ctx=cli00001" }),
        await at(stopPlay(a, s, who)),
        await at(unpublish(a, s, who)),
      ];
    };
    const theirs = await answers(app, tooLong, vhost);
    expect(theirs).toEqual(await answers("live", unknown));
    expect(theirs.map((r) => r.body.code)).toEqual([4001, 4001, 4001, 0, 0]);
  });

  it("applies the same name rules to the admin API", async () => {
    for (const path of ["/streams/live/cam%201", `/streams/live/${"x".repeat(129)}`, "/streams/li%2Fve/cam1", "/streams/live/cam1?vhost=bad%20host"]) {
      const r = await admin("PUT", path, {});
      expect(r.status, path).toBe(400);
      expect(r.body.error).toMatch(/field "(app|stream|vhost)"/);
    }
  });
});
