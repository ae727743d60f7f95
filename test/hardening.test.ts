import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { admin, captured, createStream, type Edge, heartbeat, hook, newEdge, play, publish, streamState, uniqueStream, hookWith } from "./srs";

const ALLOW = { status: 200, body: { code: 0 } };
const RATE_LIMITED = { status: 403, body: { code: 4029, reason: "rate limited" } };
const ATTACKER = "203.0.113.66";
const OWNER = "198.51.100.20";

let edge: Edge;
beforeEach(() => {
  edge = newEdge();
});
afterEach(() => {
  vi.useRealTimers();
});

const publishFrom = (ip: string, stream: string, key: string, client: string) => ({ ...publish("live", stream, key, { ...edge, client }), ip });
const playFrom = (ip: string, stream: string, token: string, client: string) => ({ ...play("live", stream, { ...edge, client }), ip, param: `?token=${token}` });

describe("brute-force limit on publish keys", () => {
  it("after 10 wrong keys in a minute from one ip, refuses that ip even with the right key; the owner elsewhere publishes", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    for (let i = 0; i < 10; i++) {
      expect((await hook(publishFrom(ATTACKER, s, `guess-${i}`, `atk${i}`))).body.reason).toBe("invalid publish key");
    }
    expect(await hook(publishFrom(ATTACKER, s, `guess-10`, "atk10"))).toEqual(RATE_LIMITED);
    expect(await hook(publishFrom(ATTACKER, s, key, "atk11"))).toEqual(RATE_LIMITED);
    expect(await hook(publishFrom(OWNER, s, key, "owner001"))).toEqual(ALLOW);
    expect((await streamState(s)).publisher.clientId).toBe("owner001");
  });

  it("lets the ip try again once the minute has passed", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(new Date("2026-11-25T12:00:00Z"));
    const s = uniqueStream();
    const key = await createStream(s);
    for (let i = 0; i < 10; i++) await hook(publishFrom(ATTACKER, s, `guess-${i}`, `atk${i}`));
    expect(await hook(publishFrom(ATTACKER, s, key, "atk10"))).toEqual(RATE_LIMITED);
    vi.setSystemTime(new Date("2026-11-25T12:01:00Z"));
    expect(await hook(publishFrom(ATTACKER, s, key, "atk11"))).toEqual(ALLOW);
  });

  it("counts per stream: guessing one stream's key does not throttle the same ip on another", async () => {
    const [s, t] = [uniqueStream(), uniqueStream()];
    await createStream(s);
    const keyT = await createStream(t);
    for (let i = 0; i < 10; i++) await hook(publishFrom(ATTACKER, s, `guess-${i}`, `atk${i}`));
    expect(await hook(publishFrom(ATTACKER, t, keyT, "atk99"))).toEqual(ALLOW);
  });

  it("does not count missing keys or busy refusals as guesses", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    await hook(publishFrom(OWNER, s, key, "owner001"));
    for (let i = 0; i < 12; i++) {
      await hook({ ...publishFrom(ATTACKER, s, key, `busy${i}`), param: "" });
      await hook(publishFrom(ATTACKER, s, key, `busy${i}`));
    }
    expect((await hook(publishFrom(ATTACKER, s, key, "busy99"))).body.code).toBe(4004);
  });

  it("follows AUTH_FAILURES_PER_MINUTE, and refuses hooks with a clear 500 when it is malformed", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    for (let i = 0; i < 3; i++) await hookWith({ AUTH_FAILURES_PER_MINUTE: "3" }, publishFrom(ATTACKER, s, "x", `atk${i}`));
    expect(await hookWith({ AUTH_FAILURES_PER_MINUTE: "3" }, publishFrom(ATTACKER, s, key, "atk9"))).toEqual(RATE_LIMITED);
    const bad = await hookWith({ AUTH_FAILURES_PER_MINUTE: "many" }, publishFrom(OWNER, s, key, "owner001"));
    expect(bad.status).toBe(500);
    expect(bad.body.reason).toMatch(/AUTH_FAILURES_PER_MINUTE must be a positive integer/);
    expect((await streamState(s)).live).toBe(false);
  });
});

describe("brute-force limit on play tokens", () => {
  it("throttles an ip after 10 forged tokens; a genuine viewer from another ip still plays", async () => {
    const s = uniqueStream();
    await createStream(s, { playAuth: "token" });
    const token = (await admin("POST", `/streams/live/${s}/tokens`, { ttl: 600 })).body.token as string;
    const forged = token.slice(0, -4) + (token.endsWith("AAAA") ? "BBBB" : "AAAA");
    for (let i = 0; i < 10; i++) expect((await hook(playFrom(ATTACKER, s, forged, `atk${i}`))).body.reason).toBe("bad signature");
    expect(await hook(playFrom(ATTACKER, s, token, "atk10"))).toEqual(RATE_LIMITED);
    expect(await hook(playFrom(OWNER, s, token, "viewer01"))).toEqual(ALLOW);
  });

  it("does not count missing or expired tokens, and never throttles open streams", async () => {
    const s = uniqueStream();
    await createStream(s, { playAuth: "token" });
    for (let i = 0; i < 12; i++) await hook({ ...playFrom(ATTACKER, s, "", `none${i}`), param: "" });
    const token = (await admin("POST", `/streams/live/${s}/tokens`, { ttl: 600 })).body.token;
    expect(await hook(playFrom(ATTACKER, s, token, "viewer01"))).toEqual(ALLOW);
    const open = uniqueStream();
    await createStream(open);
    for (let i = 0; i < 12; i++) expect(await hook(playFrom(ATTACKER, open, "junk", `v${i}`))).toEqual(ALLOW);
  });
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
      [{ param: `?key=${key}\n` }, 'field "param" may contain only'],
    ];
    for (const [change, message] of cases) {
      const r = await hook({ ...base, ...change });
      expect(r.status, JSON.stringify(change).slice(0, 60)).toBe(400);
      expect(r.body.reason).toContain(message);
    }
    const beat = { ...heartbeat(edge), device_id: "d".repeat(129) };
    expect((await hook(beat, undefined, "/heartbeat")).body.reason).toContain('field "device_id" is longer than 128 characters');
    expect((await streamState(s)).live).toBe(false);
  });

  it("accepts the real shapes at the limits", async () => {
    const s = uniqueStream().padEnd(128, "x");
    const key = await createStream(s);
    const body = { ...publish("live", s, key, { ...edge, client: "c".repeat(64) }), ip: "2001:db8::1", param: `?key=${key}&pad=${"p".repeat(3000)}` };
    expect(await hook(body)).toEqual(ALLOW);
    expect(await hook({ ...captured("on_play", "HLS"), stream: `${s}.m3u8`, server_id: edge.server, service_id: edge.service })).toEqual(ALLOW);
  });

  it("applies the same name rules to the admin API", async () => {
    for (const path of ["/streams/live/cam%201", `/streams/live/${"x".repeat(129)}`, "/streams/li%2Fve/cam1", "/streams/live/cam1?vhost=bad%20host"]) {
      const r = await admin("PUT", path, {});
      expect(r.status, path).toBe(400);
      expect(r.body.error).toMatch(/field "(app|stream|vhost)"/);
    }
  });
});
