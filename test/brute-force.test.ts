/**
 * The brute-force limit (AUTH_FAILURES_PER_MINUTE): failed keys and tokens per
 * client ip per stream. It must never refuse a correct key or a valid token:
 * SRS takes the ip of HTTP-FLV, HLS and WebRTC viewers from X-Forwarded-For,
 * so anyone can claim anyone's ip, and carrier NATs share one.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { signPlayToken } from "../src/auth/token";
import { ALLOW, admin, createStream, type Edge, hook, hookWith, newEdge, play, publish, streamState, uniqueStream } from "./srs";

const RATE_LIMITED = { status: 403, body: { code: 4029, reason: "rate limited" } };
const ATTACKER = "203.0.113.66";
const OWNER = "198.51.100.20";
const KEY = "test-token-signing-key-32-chars-or-more"; // TOKEN_SIGNING_KEY in vitest.config.mts

let edge: Edge;
beforeEach(() => {
  edge = newEdge();
});
afterEach(() => {
  vi.useRealTimers();
});

const publishFrom = (ip: string, stream: string, key: string, client: string) => ({ ...publish("live", stream, key, { ...edge, client }), ip });
const playFrom = (ip: string, stream: string, token: string, client: string) => ({ ...play("live", stream, { ...edge, client }), ip, param: `?token=${token}` });
const mint = async (s: string) => (await admin("POST", `/streams/live/${s}/tokens`, { ttl: 600 })).body.token as string;
const forge = (token: string) => token.slice(0, -4) + (token.endsWith("AAAA") ? "BBBB" : "AAAA");

describe("the brute-force limit never locks out a legitimate client", () => {
  it("garbage tokens sent from the publisher's claimed ip do not refuse that publisher's correct key", async () => {
    const s = uniqueStream();
    const key = await createStream(s, { playAuth: "token" });
    const forged = forge(await mint(s));
    // HTTP-FLV plays whose X-Forwarded-For claims the encoder's address.
    for (let i = 0; i < 12; i++) await hook(playFrom(OWNER, s, forged, `flv${i}`));
    expect(await hook(publishFrom(OWNER, s, key, "encoder1"))).toEqual(ALLOW);
  });

  it("after 10 wrong keys from one ip, further wrong keys are 'rate limited', but the right key from that ip still publishes", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    for (let i = 0; i < 10; i++) {
      expect((await hook(publishFrom(ATTACKER, s, `guess-${i}`, `atk${i}`))).body.reason).toBe("invalid publish key");
    }
    expect(await hook(publishFrom(ATTACKER, s, "guess-10", "atk10"))).toEqual(RATE_LIMITED);
    expect(await hook(publishFrom(ATTACKER, s, key, "nat00001"))).toEqual(ALLOW);
    expect((await streamState(s)).publisher.clientId).toBe("nat00001");
  });

  it("after 10 forged tokens from one ip, forgeries are 'rate limited', but a valid token from that ip (a shared NAT) plays", async () => {
    const s = uniqueStream();
    await createStream(s, { playAuth: "token" });
    const token = await mint(s);
    for (let i = 0; i < 10; i++) expect((await hook(playFrom(ATTACKER, s, forge(token), `atk${i}`))).body.reason).toBe("bad signature");
    expect(await hook(playFrom(ATTACKER, s, forge(token), "atk10"))).toEqual(RATE_LIMITED);
    expect(await hook(playFrom(ATTACKER, s, token, "viewer01"))).toEqual(ALLOW);
  });

  it("counts publish and play failures apart", async () => {
    const s = uniqueStream();
    await createStream(s, { playAuth: "token" });
    for (let i = 0; i < 10; i++) await hook(publishFrom(ATTACKER, s, `guess-${i}`, `atk${i}`));
    expect((await hook(playFrom(ATTACKER, s, forge(await mint(s)), "atk20"))).body.reason).toBe("bad signature");
  });

  it("a guesser over the limit cannot flush real decisions out of the stream's decision log", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    expect(await hook(publishFrom(OWNER, s, key, "owner001"))).toEqual(ALLOW);
    for (let i = 0; i < 130; i++) await hook(publishFrom(ATTACKER, s, `guess-${i}`, `atk${i}`));
    const events = (await admin("GET", `/streams/live/${s}/events`)).body.events;
    expect(events.some((e: any) => e.client === "owner001" && e.decision === "allow")).toBe(true);
    expect(events.filter((e: any) => e.reason === "invalid publish key")).toHaveLength(10);
  });

  it("lets the ip fail again with the real reason once the minute has passed", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(new Date("2031-03-01T12:00:00Z"));
    const s = uniqueStream();
    await createStream(s);
    for (let i = 0; i < 10; i++) await hook(publishFrom(ATTACKER, s, `guess-${i}`, `atk${i}`));
    expect(await hook(publishFrom(ATTACKER, s, "again", "atk10"))).toEqual(RATE_LIMITED);
    vi.setSystemTime(new Date("2031-03-01T12:01:00Z"));
    expect((await hook(publishFrom(ATTACKER, s, "again", "atk11"))).body.reason).toBe("invalid publish key");
    // A new minute is a new window, with the same limit: its 10 failures use it up again.
    for (let i = 12; i < 21; i++) expect((await hook(publishFrom(ATTACKER, s, `guess-${i}`, `atk${i}`))).body.reason).toBe("invalid publish key");
    expect(await hook(publishFrom(ATTACKER, s, "guess-21", "atk21"))).toEqual(RATE_LIMITED);
  });

  it("counts per stream: guessing one stream's key does not touch the same ip on another", async () => {
    const [s, t] = [uniqueStream(), uniqueStream()];
    await createStream(s);
    await createStream(t);
    for (let i = 0; i < 10; i++) await hook(publishFrom(ATTACKER, s, `guess-${i}`, `atk${i}`));
    expect((await hook(publishFrom(ATTACKER, t, "wrong", "atk99"))).body.reason).toBe("invalid publish key");
  });

  it("does not count missing keys, busy refusals, missing or expired tokens", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    await hook(publishFrom(OWNER, s, key, "owner001"));
    for (let i = 0; i < 12; i++) {
      await hook({ ...publishFrom(ATTACKER, s, key, `busy${i}`), param: "" });
      await hook(publishFrom(ATTACKER, s, key, `busy${i}`));
    }
    expect((await hook(publishFrom(ATTACKER, s, "wrong", "busy99"))).body.reason).toBe("invalid publish key");
    const t = uniqueStream();
    await createStream(t, { playAuth: "token" });
    for (let i = 0; i < 12; i++) await hook({ ...playFrom(ATTACKER, t, "", `none${i}`), param: "" });
    // Expired tokens were genuine: no guess, however many.
    const expired = await signPlayToken({ vhost: "__defaultVhost__", app: "live", stream: t }, Math.floor(Date.now() / 1000) - 60, KEY, { issuedAt: Math.floor(Date.now() / 1000) - 600 });
    for (let i = 0; i < 12; i++) expect((await hook(playFrom(ATTACKER, t, expired, `old${i}`))).body.reason).toBe("expired");
    expect((await hook(playFrom(ATTACKER, t, forge(await mint(t)), "atk1"))).body.reason).toBe("bad signature");
  });

  it("counts genuine tokens for another stream as guesses (wrong stream): past 10 from one ip they are 'rate limited', a valid token from that ip still plays", async () => {
    const [s, t] = [uniqueStream(), uniqueStream()];
    await createStream(s, { playAuth: "token" });
    await createStream(t, { playAuth: "token" });
    const forT = await mint(t);
    for (let i = 0; i < 10; i++) expect((await hook(playFrom(ATTACKER, s, forT, `atk${i}`))).body.reason).toBe("wrong stream");
    expect(await hook(playFrom(ATTACKER, s, forT, "atk10"))).toEqual(RATE_LIMITED);
    expect(await hook(playFrom(ATTACKER, s, await mint(s), "viewer01"))).toEqual(ALLOW);
    // The stream the token is for is untouched: it plays there from the same ip.
    expect(await hook(playFrom(ATTACKER, t, forT, "viewer02"))).toEqual(ALLOW);
  });

  it("follows AUTH_FAILURES_PER_MINUTE, and refuses start hooks with a clear 500 when it is malformed", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    for (let i = 0; i < 3; i++) await hookWith({ AUTH_FAILURES_PER_MINUTE: "3" }, publishFrom(ATTACKER, s, "x", `atk${i}`));
    expect(await hookWith({ AUTH_FAILURES_PER_MINUTE: "3" }, publishFrom(ATTACKER, s, "y", "atk9"))).toEqual(RATE_LIMITED);
    const bad = await hookWith({ AUTH_FAILURES_PER_MINUTE: "many" }, publishFrom(OWNER, s, key, "owner001"));
    expect(bad.status).toBe(500);
    expect(bad.body.reason).toMatch(/AUTH_FAILURES_PER_MINUTE must be a positive integer/);
    expect((await streamState(s)).live).toBe(false);
  });
});
