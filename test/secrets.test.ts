/**
 * Secrets shorter than 32 characters are refused: the Worker answers 500
 * naming the setting instead of running with a guessable secret.
 */
import { env } from "cloudflare:workers";
import { createExecutionContext } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { signPlayToken } from "../src/auth/token";
import type { Env } from "../src/env";
import worker from "../src/index";
import { ALLOW, ADMIN_TOKEN, admin, createStream, HOOK_SECRET, heartbeat, newEdge, play, publish, uniqueStream } from "./srs";

const SHORT = "x".repeat(31);
const EXACTLY_32 = "y".repeat(32);
const HINT = "(set a random one, e.g. openssl rand -hex 24)";

async function send(overrides: Partial<Env>, path: string, init: RequestInit): Promise<{ status: number; body: any }> {
  const res = await worker.fetch(new Request(`http://gate.test${path}`, init), { ...env, ...overrides }, createExecutionContext());
  return { status: res.status, body: await res.json() };
}

const hookAt = (secret: string, body: unknown, overrides: Partial<Env>, path = "") =>
  send(overrides, `/hooks/srs/${secret}${path}`, { method: "POST", body: JSON.stringify(body) });

const adminAt = (token: string, overrides: Partial<Env>) =>
  send(overrides, "/admin/streams", { headers: { authorization: `Bearer ${token}` } });

describe("HOOK_SECRET and HOOK_SECRET_PREVIOUS of fewer than 32 characters", () => {
  it("refuse every hook and heartbeat with a 500 naming HOOK_SECRET, even one sent with that secret", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    const edge = newEdge();
    const expected = { status: 500, body: { code: 500, reason: `HOOK_SECRET is shorter than 32 characters: refusing every hook ${HINT}` } };
    expect(await hookAt(SHORT, publish("live", s, key, { ...edge, client: "pub00001" }), { HOOK_SECRET: SHORT })).toEqual(expected);
    expect(await hookAt(SHORT, heartbeat(edge), { HOOK_SECRET: SHORT }, "/heartbeat")).toEqual(expected);
    expect((await admin("GET", `/streams/live/${s}`)).body.live).toBe(false);
  });

  it("refuse every hook with a 500 naming HOOK_SECRET_PREVIOUS when only that one is short", async () => {
    const s = uniqueStream();
    await createStream(s);
    const r = await hookAt(EXACTLY_32, play("live", s, { ...newEdge(), client: "view0001" }), { HOOK_SECRET: EXACTLY_32, HOOK_SECRET_PREVIOUS: SHORT });
    expect(r).toEqual({ status: 500, body: { code: 500, reason: `HOOK_SECRET_PREVIOUS is shorter than 32 characters: refusing every hook ${HINT}` } });
  });

  it("accept 32 characters", async () => {
    const s = uniqueStream();
    await createStream(s);
    const r = await hookAt(EXACTLY_32, play("live", s, { ...newEdge(), client: "view0001" }), { HOOK_SECRET: EXACTLY_32, HOOK_SECRET_PREVIOUS: "z".repeat(32) });
    expect(r).toEqual(ALLOW);
  });
});

describe("ADMIN_TOKEN of fewer than 32 characters", () => {
  it("disables the admin API with a 500 naming it, even for a caller presenting that token", async () => {
    expect(await adminAt(SHORT, { ADMIN_TOKEN: SHORT })).toEqual({
      status: 500,
      body: { error: `ADMIN_TOKEN is shorter than 32 characters: the admin API is disabled ${HINT}` },
    });
    expect((await adminAt(EXACTLY_32, { ADMIN_TOKEN: EXACTLY_32 })).status).toBe(200);
  });
});

describe("TOKEN_SIGNING_KEY and TOKEN_SIGNING_KEY_PREVIOUS of fewer than 32 characters", () => {
  const tokenStream = async () => {
    const s = uniqueStream();
    await createStream(s, { playAuth: "token" });
    return s;
  };
  const withToken = (s: string, token: string, client: string) => ({ ...play("live", s, { ...newEdge(), client }), param: `?token=${token}` });
  const inAnHour = () => Math.floor(Date.now() / 1000) + 3600;

  it("minting answers 500 naming TOKEN_SIGNING_KEY", async () => {
    const s = await tokenStream();
    const r = await send({ TOKEN_SIGNING_KEY: SHORT }, `/admin/streams/live/${s}/tokens`, {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    expect(r).toEqual({ status: 500, body: { error: `TOKEN_SIGNING_KEY is shorter than 32 characters: cannot mint play tokens ${HINT}` } });
  });

  it("a token stream refuses every viewer (500, code 4015 naming the key), even with a token that key signed; open streams play", async () => {
    const s = await tokenStream();
    const token = await signPlayToken({ vhost: "__defaultVhost__", app: "live", stream: s }, inAnHour(), SHORT);
    const r = await hookAt(HOOK_SECRET, withToken(s, token, "view0001"), { TOKEN_SIGNING_KEY: SHORT });
    expect(r).toEqual({ status: 500, body: { code: 4015, reason: "play tokens are not configured: TOKEN_SIGNING_KEY is shorter than 32 characters" } });
    const open = uniqueStream();
    await createStream(open);
    expect(await hookAt(HOOK_SECRET, play("live", open, { ...newEdge(), client: "view0002" }), { TOKEN_SIGNING_KEY: SHORT })).toEqual(ALLOW);
  });

  it("a short TOKEN_SIGNING_KEY_PREVIOUS refuses token viewers too (500, code 4015 naming it)", async () => {
    const s = await tokenStream();
    const token = await signPlayToken({ vhost: "__defaultVhost__", app: "live", stream: s }, inAnHour(), EXACTLY_32);
    const keys = { TOKEN_SIGNING_KEY: EXACTLY_32, TOKEN_SIGNING_KEY_PREVIOUS: SHORT };
    expect(await hookAt(HOOK_SECRET, withToken(s, token, "view0001"), keys)).toEqual({
      status: 500,
      body: { code: 4015, reason: "play tokens are not configured: TOKEN_SIGNING_KEY_PREVIOUS is shorter than 32 characters" },
    });
    expect(await hookAt(HOOK_SECRET, withToken(s, token, "view0002"), { ...keys, TOKEN_SIGNING_KEY_PREVIOUS: undefined })).toEqual(ALLOW);
  });
});
