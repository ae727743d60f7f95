/// <reference types="node" />
import { createHmac } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { signPlayToken } from "../src/auth/token";
import { README_VECTORS, readmeText } from "./token-vectors";
import { ALLOW, admin, adminWith, captured, createStream, type Edge, hook, newEdge, play, publish, streamState, uniqueStream, hookWith } from "./srs";

const KEY = "test-token-signing-key-32-chars-or-more"; // TOKEN_SIGNING_KEY in vitest.config.mts
const DEFAULT = "__defaultVhost__";

let edge: Edge;
beforeEach(() => {
  edge = newEdge();
});
afterEach(() => {
  vi.useRealTimers();
});

const nowS = () => Math.floor(Date.now() / 1000);
const B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const b64url = (b: Buffer) => b.toString("base64url");
const withToken = (stream: string, token: string, client = "viewer01") => ({ ...play("live", stream, { ...edge, client }), param: `?token=${token}` });

async function tokenStream(): Promise<string> {
  const s = uniqueStream();
  await createStream(s, { playAuth: "token" });
  return s;
}

async function mint(stream: string, ttl?: number) {
  return admin("POST", `/streams/live/${stream}/tokens`, ttl === undefined ? undefined : { ttl });
}

describe("play tokens on a playAuth: token stream", () => {
  it("admits a viewer with a token minted by the admin API for that stream", async () => {
    const s = await tokenStream();
    const minted = await mint(s, 600);
    expect(minted.status).toBe(201);
    expect(minted.body.token).toMatch(/^[A-Za-z0-9._-]+$/);
    expect(Date.parse(minted.body.expiresAt)).toBe((nowS() + 600) * 1000);
    expect(await hook(withToken(s, minted.body.token))).toEqual(ALLOW);
    expect((await streamState(s)).viewers).toBe(1);
  });

  it("refuses a viewer without a token", async () => {
    const s = await tokenStream();
    const r = await hook(play("live", s, { ...edge, client: "viewer01" }));
    expect(r).toEqual({ status: 403, body: { code: 4010, reason: "missing token" } });
  });

  it("refuses an expired token", async () => {
    const s = await tokenStream();
    vi.useFakeTimers({ toFake: ["Date"] });
    const token = (await mint(s, 60)).body.token;
    expect(await hook(withToken(s, token, "early001"))).toEqual(ALLOW);
    vi.setSystemTime(Date.now() + 60_000);
    expect(await hook(withToken(s, token, "late0001"))).toEqual({ status: 403, body: { code: 4013, reason: "expired" } });
  });

  it("refuses tampered tokens: another expiry, another stream, a changed signature", async () => {
    const s = await tokenStream();
    const token = (await mint(s, 60)).body.token as string;
    const [v, resource, iat, exp, sub, sig] = token.split(".");
    expect(v).toBe("v2");
    const other = btoa(`${DEFAULT}/live/${uniqueStream()}`).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
    const flipped = sig.slice(0, 10) + (sig[10] === "A" ? "B" : "A") + sig.slice(11);
    const someone = btoa("someone").replace(/=+$/, "");
    for (const forged of [
      `${v}.${resource}.${iat}.${Number(exp) + 86400}.${sub}.${sig}`,
      `${v}.${other}.${iat}.${exp}.${sub}.${sig}`,
      `${v}.${resource}.${Number(iat) + 1}.${exp}.${sub}.${sig}`,
      `${v}.${resource}.${iat}.${exp}.${someone}.${sig}`,
      `${v}.${resource}.${iat}.${exp}.${sub}.${flipped}`,
    ]) {
      expect(await hook(withToken(s, forged))).toEqual({ status: 403, body: { code: 4012, reason: "bad signature" } });
    }
    expect((await streamState(s)).viewers).toBe(0);
  });

  it("refuses a genuine token for another stream, or the same stream on another vhost", async () => {
    const [s, t] = [await tokenStream(), await tokenStream()];
    const forT = (await mint(t)).body.token;
    expect(await hook(withToken(s, forT))).toEqual({ status: 403, body: { code: 4014, reason: "wrong stream" } });
    const otherVhost = await signPlayToken({ vhost: "tenant-a.example", app: "live", stream: s }, nowS() + 60, KEY);
    expect((await hook(withToken(s, otherVhost))).body.reason).toBe("wrong stream");
  });

  it("refuses malformed tokens", async () => {
    const s = await tokenStream();
    const good = (await mint(s)).body.token as string; // v2.resource.iat.exp.signature (no sub)
    const [, resource, , exp, sig] = good.split(".");
    for (const bad of ["abc", "v1.x.y", `v2.${resource}.${exp}.${sig}`, `v1.${resource}.soon.${sig}`, `v1.${resource}.${exp}.${sig}x`, `v1.${resource}.${exp}.${sig}.extra`, `v1.${resource}!.${exp}.${sig}`]) {
      expect((await hook(withToken(s, encodeURIComponent(bad)))).body, bad).toEqual({ code: 4011, reason: "malformed token" });
    }
  });

  it("refuses a v2 token whose signature is not 32 bytes (cut short or one byte longer) as malformed, and one whose signed viewer id breaks the sub rule", async () => {
    const s = await tokenStream();
    const token = (await mint(s, 600)).body.token as string;
    const message = token.slice(0, token.lastIndexOf("."));
    const mac = createHmac("sha256", KEY).update(message).digest();
    expect(await hook(withToken(s, `${message}.${b64url(mac.subarray(0, 16))}`, "short001"))).toEqual({ status: 403, body: { code: 4011, reason: "malformed token" } });
    expect(await hook(withToken(s, `${message}.${b64url(Buffer.concat([mac, Buffer.from([0])]))}`, "long0001"))).toEqual({ status: 403, body: { code: 4011, reason: "malformed token" } });
    // Signed with the key, but the viewer id is not 1 to 64 of [A-Za-z0-9._:@-] (signPlayToken refuses to mint these).
    const iat = nowS();
    for (const sub of ["alice bob", "a".repeat(65), "eve\nadmin"]) {
      const m = `v2.${b64url(Buffer.from(`${DEFAULT}/live/${s}`))}.${iat}.${iat + 300}.${b64url(Buffer.from(sub))}`;
      const signedSub = `${m}.${b64url(createHmac("sha256", KEY).update(m).digest())}`;
      expect(await hook(withToken(s, signedSub, "badsub01")), sub).toEqual({ status: 403, body: { code: 4011, reason: "malformed token" } });
    }
    expect(await hook(withToken(s, token, "genuine1"))).toEqual(ALLOW);
    expect((await streamState(s)).viewers).toBe(1);
  });

  it("accepts exactly one spelling of a signature: the other last characters that decode to the same bytes are malformed", async () => {
    const s = await tokenStream();
    const token = (await mint(s, 600)).body.token as string;
    const [message, sig] = [token.slice(0, token.lastIndexOf(".")), token.slice(token.lastIndexOf(".") + 1)];
    expect(sig).toHaveLength(43); // 258 bits for 256: the last character's 2 low bits are unused
    const last = B64URL.indexOf(sig[42]);
    const sameBytes = [0, 1, 2, 3].map((low) => B64URL[(last & ~3) | low]).filter((c) => c !== sig[42]);
    expect(sameBytes).toHaveLength(3);
    for (const [i, c] of sameBytes.entries()) {
      const r = await hook(withToken(s, `${message}.${sig.slice(0, 42)}${c}`, `alias00${i}`));
      expect(r, c).toEqual({ status: 403, body: { code: 4011, reason: "malformed token" } });
    }
    expect(await hook(withToken(s, token, "genuine1"))).toEqual(ALLOW);
    expect((await streamState(s)).viewers).toBe(1);
  });

  it("refuses a resource part spelled non-canonically, even when that spelling is signed", async () => {
    const s = await tokenStream();
    const resource = b64url(Buffer.from(`${DEFAULT}/live/${s}`, "utf8"));
    expect(resource.length % 4).not.toBe(0); // so its last character has unused bits
    const last = B64URL.indexOf(resource.at(-1)!);
    const alias = resource.slice(0, -1) + B64URL[last ^ 1];
    const exp = nowS() + 300;
    const sign = (r: string) => `v1.${r}.${exp}.${b64url(createHmac("sha256", KEY).update(`v1.${r}.${exp}`).digest())}`;
    expect(await hook(withToken(s, sign(alias), "alias001"))).toEqual({ status: 403, body: { code: 4011, reason: "malformed token" } });
    expect(await hook(withToken(s, sign(resource), "genuine1"))).toEqual(ALLOW);
  });

  it("reads the token from every param shape SRS sends: RTMP '?…', WHEP without '?', HLS m3u8", async () => {
    const s = await tokenStream();
    const token = (await mint(s)).body.token;
    expect(await hook({ ...withToken(s, token, "rtmp0001"), param: `?foo=1&token=${token}` })).toEqual(ALLOW);
    expect(await hook({ ...withToken(s, token, "whep0001"), tcUrl: "", param: `app=live&stream=${s}&token=${token}` })).toEqual(ALLOW);
    const hls = { ...captured("on_play", "HLS"), server_id: edge.server, service_id: edge.service, stream: `${s}.m3u8`, stream_url: `/live/${s}`, param: `?token=${token}` };
    expect(await hook(hls)).toEqual(ALLOW);
    expect((await streamState(s)).viewers).toBe(3);
  });

  it("still applies the viewer cap to token holders", async () => {
    const s = uniqueStream();
    await createStream(s, { playAuth: "token", maxViewers: 1 });
    const token = (await mint(s)).body.token;
    expect(await hook(withToken(s, token, "viewer01"))).toEqual(ALLOW);
    expect((await hook(withToken(s, token, "viewer02"))).body.code).toBe(4005);
  });

  it("ignores tokens on open streams", async () => {
    const s = uniqueStream();
    await createStream(s);
    expect(await hook(withToken(s, "garbage"))).toEqual(ALLOW);
  });
});

describe("signing-key rotation", () => {
  it("accepts tokens of the previous key while TOKEN_SIGNING_KEY_PREVIOUS is set, and refuses them once it is removed", async () => {
    const s = await tokenStream();
    const oldToken = await signPlayToken({ vhost: DEFAULT, app: "live", stream: s }, nowS() + 600, "old-signing-key-of-32-characters");
    const newToken = await signPlayToken({ vhost: DEFAULT, app: "live", stream: s }, nowS() + 600, "new-signing-key-of-32-characters");
    const rotating = { TOKEN_SIGNING_KEY: "new-signing-key-of-32-characters", TOKEN_SIGNING_KEY_PREVIOUS: "old-signing-key-of-32-characters" };
    expect(await hookWith(rotating, withToken(s, oldToken, "viewer01"))).toEqual(ALLOW);
    expect(await hookWith(rotating, withToken(s, newToken, "viewer02"))).toEqual(ALLOW);
    const rotated = { TOKEN_SIGNING_KEY: "new-signing-key-of-32-characters", TOKEN_SIGNING_KEY_PREVIOUS: undefined };
    expect(await hookWith(rotated, withToken(s, oldToken, "viewer03"))).toEqual({ status: 403, body: { code: 4012, reason: "bad signature" } });
    expect(await hookWith(rotated, withToken(s, newToken, "viewer04"))).toEqual(ALLOW);
  });

  it("refuses every viewer of a token stream with a clear reason when TOKEN_SIGNING_KEY is not set; open streams are unaffected", async () => {
    const s = await tokenStream();
    const token = (await mint(s)).body.token;
    const unset = { TOKEN_SIGNING_KEY: undefined, TOKEN_SIGNING_KEY_PREVIOUS: undefined };
    const r = await hookWith(unset, withToken(s, token));
    expect(r).toEqual({ status: 500, body: { code: 4015, reason: "play tokens are not configured: TOKEN_SIGNING_KEY is not set" } });
    const open = uniqueStream();
    await createStream(open);
    expect(await hookWith(unset, play("live", open, { ...edge, client: "viewer09" }))).toEqual(ALLOW);
  });
});

describe("MAX_TOKEN_TTL_S: the longest token lifetime", () => {
  const LIFETIME_TOO_LONG = { status: 403, body: { code: 4017, reason: "token lifetime exceeds MAX_TOKEN_TTL_S" } };
  const signed = (stream: string, exp: number) => signPlayToken({ vhost: DEFAULT, app: "live", stream }, exp, KEY);

  it("refuses a genuine token expiring further ahead than 30 days by default; one within them plays", async () => {
    const s = await tokenStream();
    const thirtyDays = 30 * 86400;
    expect(await hook(withToken(s, await signed(s, nowS() + thirtyDays + 60), "far00001"))).toEqual(LIFETIME_TOO_LONG);
    expect(await hook(withToken(s, await signed(s, nowS() + 10 * 365 * 86400), "far00002"))).toEqual(LIFETIME_TOO_LONG);
    expect(await hook(withToken(s, await signed(s, nowS() + thirtyDays - 60), "near0001"))).toEqual(ALLOW);
    expect((await streamState(s)).viewers).toBe(1);
  });

  it("follows the setting, and keeps minting within it: a minted token always plays", async () => {
    const s = await tokenStream();
    const short = { MAX_TOKEN_TTL_S: "600" };
    expect(await hookWith(short, withToken(s, await signed(s, nowS() + 3600), "far00001"))).toEqual(LIFETIME_TOO_LONG);
    const tooLong = await adminWith(short, "POST", `/streams/live/${s}/tokens`, { ttl: 601 });
    expect(tooLong).toEqual({ status: 400, body: { error: 'field "ttl" must be an integer number of seconds from 1 to 600' } });
    const longest = await adminWith(short, "POST", `/streams/live/${s}/tokens`, { ttl: 600 });
    expect(longest.status).toBe(201);
    expect(await hookWith(short, withToken(s, longest.body.token, "minted01"))).toEqual(ALLOW);
    // The default of one hour is longer than the setting here: it becomes the setting.
    const byDefault = await adminWith(short, "POST", `/streams/live/${s}/tokens`);
    expect(Date.parse(byDefault.body.expiresAt) / 1000 - nowS()).toBeLessThanOrEqual(600);
    expect(await hookWith(short, withToken(s, byDefault.body.token, "minted02"))).toEqual(ALLOW);
  });

  it("answers 500 naming MAX_TOKEN_TTL_S when it is not a positive integer, on the token paths only", async () => {
    const s = await tokenStream();
    const token = (await mint(s)).body.token;
    const bad = { MAX_TOKEN_TTL_S: "a month" };
    const played = await hookWith(bad, withToken(s, token));
    expect(played.status).toBe(500);
    expect(played.body.reason).toBe('MAX_TOKEN_TTL_S must be a positive integer number of seconds, not "a month"');
    const minted = await adminWith(bad, "POST", `/streams/live/${s}/tokens`);
    expect(minted.status).toBe(500);
    expect(minted.body.error).toMatch(/^MAX_TOKEN_TTL_S must be a positive integer/);
    const open = uniqueStream();
    await createStream(open);
    expect(await hookWith(bad, play("live", open, { ...edge, client: "viewer09" }))).toEqual(ALLOW);
  });
});

describe("the documented token format", () => {
  it("a v1 token (the format before viewer ids) made with Node's crypto is still accepted", async () => {
    const s = await tokenStream();
    const b64url = (b: Buffer) => b.toString("base64").replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
    const message = `v1.${b64url(Buffer.from(`${DEFAULT}/live/${s}`, "utf8"))}.${nowS() + 300}`;
    const token = `${message}.${b64url(createHmac("sha256", KEY).update(message).digest())}`;
    expect(await hook(withToken(s, token))).toEqual(ALLOW);
  });

  it("a v2 token made by following the README with Node's crypto is accepted, and the Worker's signer makes exactly that", async () => {
    const s = await tokenStream();
    const b64url = (b: Buffer) => b.toString("base64url");
    const iat = nowS();
    const message = `v2.${b64url(Buffer.from(`${DEFAULT}/live/${s}`))}.${iat}.${iat + 300}.${b64url(Buffer.from("alice@example.com"))}`;
    const token = `${message}.${b64url(createHmac("sha256", KEY).update(message).digest())}`;
    expect(await hook(withToken(s, token))).toEqual(ALLOW);
    expect(await signPlayToken({ vhost: DEFAULT, app: "live", stream: s }, iat + 300, KEY, { sub: "alice@example.com", issuedAt: iat })).toBe(token);
  });

  it("the README's test vectors", async () => {
    const key = "streamgate-test-vector-key-0123456789";
    const cam1 = { vhost: DEFAULT, app: "live", stream: "cam1" };
    expect(await signPlayToken(cam1, 1795625090, key, { sub: "alice@example.com", issuedAt: 1795621490 })).toBe(README_VECTORS.withSub);
    expect(await signPlayToken(cam1, 1795625090, key, { issuedAt: 1795621490 })).toBe(README_VECTORS.noSub);
    expect(await signPlayToken(cam1, 1795625090, key, { sub: "season-pass-7", issuedAt: 1795621490, wholeApp: true })).toBe(README_VECTORS.wholeApp);
    const readme = readmeText();
    for (const v of Object.values(README_VECTORS)) expect(readme.includes(v), v).toBe(true);
  });

  it("a token without a viewer id has no '..' in it (SRS's HTTP server refuses such URLs before any hook), and plays", async () => {
    const s = await tokenStream();
    const token = (await admin("POST", `/streams/live/${s}/tokens`, {})).body.token as string;
    expect(token).not.toContain("..");
    expect(token.split(".")[4]).toBe("-");
    expect(await hook(withToken(s, token))).toEqual(ALLOW);
  });

  it("a v2 token that lives longer than MAX_TOKEN_TTL_S from its issue is refused, also once its expiry is near", async () => {
    const s = await tokenStream();
    const iat = nowS() - 31 * 24 * 3600; // MAX_TOKEN_TTL_S is 30 days in the tests
    const token = await signPlayToken({ vhost: DEFAULT, app: "live", stream: s }, nowS() + 600, KEY, { sub: "alice", issuedAt: iat });
    expect(await hook(withToken(s, token))).toEqual({ status: 403, body: { code: 4017, reason: "token lifetime exceeds MAX_TOKEN_TTL_S" } });
  });

  it("the decision log names the token's viewer id, never the token", async () => {
    const s = await tokenStream();
    const token = (await admin("POST", `/streams/live/${s}/tokens`, { sub: "alice@example.com" })).body.token as string;
    expect(await hook(withToken(s, token, "viewer07"))).toEqual(ALLOW);
    const events = (await admin("GET", `/streams/live/${s}/events`)).body.events;
    expect(events.find((e: any) => e.client === "viewer07")).toMatchObject({ decision: "allow", reason: "admitted (viewer alice@example.com)" });
    expect(JSON.stringify(events).includes(token.split(".")[5])).toBe(false);
  });

  it("a refused token whose signature was genuine (expired, lifetime too long) still names its viewer id in the decision log, never the token", async () => {
    const s = await tokenStream();
    const stream = { vhost: DEFAULT, app: "live", stream: s };
    const expired = await signPlayToken(stream, nowS() - 1, KEY, { sub: "alice", issuedAt: nowS() - 60 });
    const tooLong = await signPlayToken(stream, nowS() + 31 * 86400, KEY, { sub: "bob" });
    const forged = `${tooLong.slice(0, -4)}AAAA`;
    expect((await hook(withToken(s, expired, "viewer07"))).body.code).toBe(4013);
    expect((await hook(withToken(s, tooLong, "viewer08"))).body.code).toBe(4017);
    expect((await hook(withToken(s, forged, "viewer09"))).body.code).toBe(4012);
    const events = (await admin("GET", `/streams/live/${s}/events`)).body.events;
    expect(events.find((e: any) => e.client === "viewer07")).toMatchObject({ decision: "deny", reason: "expired (viewer alice)" });
    expect(events.find((e: any) => e.client === "viewer08")).toMatchObject({ decision: "deny", reason: "token lifetime exceeds MAX_TOKEN_TTL_S (viewer bob)" });
    // A bad signature proves nothing about the viewer id it claims: not named.
    expect(events.find((e: any) => e.client === "viewer09")).toMatchObject({ decision: "deny", reason: "bad signature" });
    for (const t of [expired, tooLong]) expect(JSON.stringify(events).includes(t.split(".")[5])).toBe(false);
  });

  it("an app-wide token (resource vhost/app/*) plays every stream of that app, and no other app", async () => {
    const [s, t] = [await tokenStream(), await tokenStream()];
    const pass = await signPlayToken({ vhost: DEFAULT, app: "live", stream: "ignored" }, nowS() + 300, KEY, { sub: "season-pass-7", wholeApp: true });
    expect(await hook(withToken(s, pass))).toEqual(ALLOW);
    expect(await hook(withToken(t, pass))).toEqual(ALLOW);
    const otherApp = await signPlayToken({ vhost: DEFAULT, app: "other", stream: "x" }, nowS() + 300, KEY, { wholeApp: true });
    expect((await hook(withToken(s, otherApp, "viewer02"))).body.reason).toBe("wrong stream");
  });

  it("an app-wide token is for its vhost only: the same app's pass of another vhost is 'wrong stream'", async () => {
    const s = await tokenStream();
    const otherVhost = await signPlayToken({ vhost: "tenant-b.example", app: "live", stream: "ignored" }, nowS() + 300, KEY, { sub: "season-pass-8", wholeApp: true });
    expect(await hook(withToken(s, otherVhost, "viewer03"))).toEqual({ status: 403, body: { code: 4014, reason: "wrong stream" } });
    expect((await streamState(s)).viewers).toBe(0);
  });

  it("a v1 token is for one stream only: one signed for vhost/app/* is no season pass; and its expiry is held to MAX_TOKEN_TTL_S (it has no issue time)", async () => {
    const s = await tokenStream();
    const v1 = (resource: string, exp: number) => {
      const r = b64url(Buffer.from(resource, "utf8"));
      return `v1.${r}.${exp}.${b64url(createHmac("sha256", KEY).update(`v1.${r}.${exp}`).digest())}`;
    };
    expect(await hook(withToken(s, v1(`${DEFAULT}/live/*`, nowS() + 300), "wild0001"))).toEqual({ status: 403, body: { code: 4014, reason: "wrong stream" } });
    // MAX_TOKEN_TTL_S is 30 days: a v1 token expiring in 31 days is refused, one expiring in 29 plays.
    expect((await hook(withToken(s, v1(`${DEFAULT}/live/${s}`, nowS() + 31 * 86_400), "long0001"))).body.reason).toBe("token lifetime exceeds MAX_TOKEN_TTL_S");
    expect(await hook(withToken(s, v1(`${DEFAULT}/live/${s}`, nowS() + 29 * 86_400), "long0002"))).toEqual(ALLOW);
  });

  it("POST /admin/apps/{app}/tokens mints a season pass: every stream of the app, also one created later, and no other app", async () => {
    const s = await tokenStream();
    const r = await admin("POST", "/apps/live/tokens", { ttl: 300, sub: "season-pass-7" });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ resource: `${DEFAULT}/live/*`, sub: "season-pass-7" });
    expect(await hook(withToken(s, r.body.token))).toEqual(ALLOW);
    const later = await tokenStream();
    expect(await hook(withToken(later, r.body.token, "viewer02"))).toEqual(ALLOW);
    const other = uniqueStream();
    await createStream(other, { playAuth: "token" }, "other");
    expect((await hook({ ...withToken(later, r.body.token, "viewer03"), app: "other", stream: other })).body.reason).toBe("wrong stream");
    for (const body of [{ ttl: 0 }, { sub: "a b" }]) expect((await admin("POST", "/apps/live/tokens", body)).status).toBe(400);
    expect((await admin("POST", "/apps/live/tokens", {}, "wrong")).status).toBe(401);
  });

  it("POST …/tokens with a sub mints a v2 token that carries it; a malformed sub is a 400", async () => {
    const s = await tokenStream();
    const r = await admin("POST", `/streams/live/${s}/tokens`, { ttl: 60, sub: "viewer-42" });
    expect(r.status).toBe(201);
    expect(r.body.sub).toBe("viewer-42");
    const parts = (r.body.token as string).split(".");
    expect(parts[0]).toBe("v2");
    expect(Buffer.from(parts[4], "base64url").toString()).toBe("viewer-42");
    expect(await hook(withToken(s, r.body.token))).toEqual(ALLOW);
    for (const sub of ["", "a b", "x".repeat(65), "é", 42]) expect((await admin("POST", `/streams/live/${s}/tokens`, { sub })).status, String(sub)).toBe(400);
  });
});

describe("POST /admin/streams/{app}/{stream}/tokens", () => {
  it("defaults to one hour", async () => {
    const s = await tokenStream();
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(new Date("2026-11-25T12:00:00Z"));
    const r = await mint(s);
    expect(r.status).toBe(201);
    expect(r.body.expiresAt).toBe("2026-11-25T13:00:00.000Z");
  });

  it("refuses a ttl outside 1…604800 seconds or not an integer", async () => {
    const s = await tokenStream();
    for (const ttl of [0, -5, 604801, 1.5, "60", null]) {
      const r = await admin("POST", `/streams/live/${s}/tokens`, { ttl });
      expect(r.status, String(ttl)).toBe(400);
      expect(r.body.error).toMatch(/"ttl"/);
    }
    expect((await admin("POST", `/streams/live/${s}/tokens`, { ttl: 60, stream: "x" })).status).toBe(400);
    expect((await mint(s, 604800)).status).toBe(201);
  });

  it("answers 404 for an unknown stream and 401 without the admin token", async () => {
    expect((await mint(uniqueStream())).status).toBe(404);
    const s = await tokenStream();
    expect((await admin("POST", `/streams/live/${s}/tokens`, {}, "wrong")).status).toBe(401);
  });

  it("answers 500 when TOKEN_SIGNING_KEY is not configured", async () => {
    const s = await tokenStream();
    const r = await adminWith({ TOKEN_SIGNING_KEY: undefined }, "POST", `/streams/live/${s}/tokens`);
    expect(r.status).toBe(500);
    expect(r.body.error).toMatch(/TOKEN_SIGNING_KEY is not configured/);
  });
});

describe("publish keys: parameter names and lifecycle", () => {
  it("accepts the key as ?secret= (the Oryx convention) as well as ?key=", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    expect(await hook({ ...publish("live", s, null, { ...edge, client: "pub00001" }), param: `?secret=${key}` })).toEqual(ALLOW);
  });

  it("accepts the key and the token where WebRTC and SRT put them: SRS's param without a leading '?' (trunk/src/app/srs_app_rtc_api.cpp, srs_app_srt_utility.cpp)", async () => {
    const s = uniqueStream();
    const key = await createStream(s, { playAuth: "token" });
    const token = (await mint(s)).body.token;
    const params = [
      `app=live&stream=${s}&key=${key}&upstream=rtc`, // WHIP: the request's whole query, then SRS's own marker
      `?key=${key}&upstream=rtc`, // /rtc/v1/publish: the stream URL's query and the marker
      `key=${key}`, // SRT: streamid #!::r=live/<stream>,key=<key>,m=publish
    ];
    for (const [i, param] of params.entries()) {
      const client = `rtc0000${i}`;
      expect(await hook({ ...publish("live", s, null, { ...edge, client }), param }), param).toEqual(ALLOW);
      expect((await hook({ ...publish("live", s, null, { ...edge, client: `bad0000${i}` }), param: param.replace(key, "wrong") })).body.reason).toBe("invalid publish key");
      await hook({ ...publish("live", s, null, { ...edge, client }), action: "on_unpublish" });
    }
    // WHEP (the query) and SRT (streamid #!::r=live/<stream>,token=<token>,m=request).
    for (const [i, param] of [`app=live&stream=${s}&token=${token}`, `token=${token}`].entries()) {
      expect(await hook({ ...play("live", s, { ...edge, client: `whep000${i}` }), param }), param).toEqual(ALLOW);
    }
  });

  it("uses ?key= when both are given", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    const r = await hook({ ...publish("live", s, null, { ...edge, client: "pub00001" }), param: `?key=wrong&secret=${key}` });
    expect(r.body.reason).toBe("invalid publish key");
  });

  it("a rotated key is refused on the very next on_publish, while the live publisher keeps its session", async () => {
    const s = uniqueStream();
    const oldKey = await createStream(s);
    await hook(publish("live", s, oldKey, { ...edge, client: "pub00001" }));
    const newKey = (await admin("PUT", `/streams/live/${s}`, { rotateKey: true })).body.publishKey;
    expect((await streamState(s)).publisher.clientId).toBe("pub00001");
    expect((await hook(publish("live", s, oldKey, { ...edge, client: "pub00002" }))).body.reason).toBe("invalid publish key");
    await hook({ ...publish("live", s, null, { ...edge, client: "pub00001" }), action: "on_unpublish" });
    expect((await hook(publish("live", s, oldKey, { ...edge, client: "pub00002" }))).body.reason).toBe("invalid publish key");
    expect(await hook(publish("live", s, newKey, { ...edge, client: "pub00002" }))).toEqual(ALLOW);
  });
});
