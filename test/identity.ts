/**
 * Helpers for tests of viewer identity (issue 14): play tokens with a viewer id, streams that
 * limit sessions per viewer, and the answers SRS receives.
 */
import { env } from "cloudflare:workers";
import { signPlayToken } from "../src/auth/token";
import { viewerSeats } from "../src/object-access";
import { admin, createStream, type Edge, hook, newEdge, play, streamState, uniqueStream } from "./srs";
import { at, beat, deliverNotices, serverStub, until, useFakeClock } from "./fleet";
import { runDurableObjectAlarm } from "cloudflare:test";
import { beforeEach, expect } from "vitest";
import { edgeWithApi } from "./fake-srs";

export { ALLOW } from "./fake-srs";

/** Three SRS edges (a viewer's TV, phone and laptop), new for each test of a file that calls screensOnTheFakeClock(). */
export let a: Edge;
export let b: Edge;
export let c: Edge;

/** For the whole file: the fake clock (useFakeClock), and edges `a`, `b` and `c` new before each test. */
export function screensOnTheFakeClock(): void {
  useFakeClock();
  beforeEach(() => {
    a = newEdge();
    b = newEdge();
    c = newEdge();
  });
}

/** Lets the objects' background work (waitUntil: seat releases, kicks) run. */
export const settle = () => new Promise((r) => setTimeout(r, 150));
/** TOKEN_SIGNING_KEY in vitest.config.mts. */
export const KEY = "test-token-signing-key-32-chars-or-more";
export const LIMIT = { status: 403, body: { code: 4016, reason: "viewer session limit" } };
export const REVOKED = { status: 403, body: { code: 4019, reason: "token revoked" } };

export const nowS = () => Math.floor(Date.now() / 1000);
export const name = (stream: string) => ({ vhost: "__defaultVhost__", app: "live", stream });
export const keyOf = (stream: string) => `__defaultVhost__/live/${stream}`;

/** An on_play of `client` on `edge` with a token. */
export const playWith = (stream: string, edge: Edge, client: string, token: string) => ({ ...play("live", stream, { ...edge, client }), param: `?token=${token}` });

/** A new playAuth "token" stream with maxSessionsPerViewer 1 (and whatever `policy` adds). */
export async function limited(policy: Record<string, unknown> = {}): Promise<string> {
  const s = uniqueStream();
  await createStream(s, { playAuth: "token", maxSessionsPerViewer: 1, ...policy });
  return s;
}

/**
 * On the fake clock: a `limited` stream whose viewer alice watches on edge `a` (her TV, tv000001), both
 * edges heard from at 0; then `a` is silent for SERVER_TIMEOUT_S (30 s) while `b` heartbeats. With
 * `told`, the registry's alarm has noticed and its notice reached `a`'s shard (her TV is suspended).
 */
export async function aliceOnASilentEdge(a: Edge, b: Edge, { told = false }: { told?: boolean } = {}) {
  const s = await limited();
  const token = await tokenOf(s, "alice");
  await beat(a);
  await beat(b);
  expect(await hook(playWith(s, a, "tv000001", token))).toEqual({ status: 200, body: { code: 0 } });
  at(31_000);
  await beat(b);
  if (told) {
    await runDurableObjectAlarm(serverStub(a));
    await deliverNotices(a);
    expect(await streamState(s)).toMatchObject({ viewers: 0, suspendedViewers: 1 });
  }
  return { s, token };
}

/** A v2 token for the stream, of viewer `sub` (none: no viewer id), issued at `issuedAt`, valid `ttl` seconds. */
export async function tokenOf(stream: string, sub?: string, issuedAt = nowS(), ttl = 3600): Promise<string> {
  return signPlayToken(name(stream), issuedAt + ttl, KEY, { ...(sub === undefined ? {} : { sub }), issuedAt });
}

/** A v1 token (README: "v1." + b64url(resource) + "." + exp, then the signature): no issue time, no viewer id. */
export async function v1Token(stream: string, exp = nowS() + 600): Promise<string> {
  const b64 = (bytes: Uint8Array) => btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  const message = `v1.${b64(new TextEncoder().encode(keyOf(stream)))}.${exp}`;
  const hmac = await crypto.subtle.importKey("raw", new TextEncoder().encode(KEY), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return `${message}.${b64(new Uint8Array(await crypto.subtle.sign("HMAC", hmac, new TextEncoder().encode(message))))}`;
}

/** The clients holding seats of `sub` on the stream, as the seat object has them. */
export async function seatsOf(stream: string, sub: string): Promise<string[]> {
  return (await viewerSeats(env, keyOf(stream), sub).seats(keyOf(stream))).filter((x) => x.sub === sub).map((x) => x.clientId).sort();
}

/**
 * Waits (real time, up to 10 s) until the seat object holds exactly these seats of `sub` (their clients, in any
 * order): background work that takes or gives back seats (a stop's release, a limit set over unseated sessions)
 * has landed. The caller asserts on what follows; never for seats that must NOT change (that cannot fail).
 */
export async function seatsBecome(stream: string, sub: string, clients: string[]): Promise<void> {
  const want = JSON.stringify([...clients].sort());
  await until(async () => JSON.stringify(await seatsOf(stream, sub)) === want);
}

/** Live sessions per viewer id, as GET …/viewers shows them. */
export async function livePerSub(stream: string): Promise<Record<string, number>> {
  const body = (await admin("GET", `/streams/live/${stream}/viewers`)).body;
  return Object.fromEntries(body.viewers.map((v: any) => [v.sub, v.live]));
}

/**
 * With SRS's API (test/fake-srs.ts): alice's TV ("tv000001") plays on edge `a` a limited stream with
 * onExtraViewerSession "replace"; edge `b`'s SRS has her other screens (`screens`), about to play.
 */
export async function aliceTvAndAnotherEdge(screens: string[]) {
  const a = await edgeWithApi(["tv000001"]);
  const b = await edgeWithApi(screens);
  return { a, b, ...(await aliceReplacingOn(a.edge)) };
}

/** A `limited` stream with onExtraViewerSession "replace" whose viewer alice watches on `edge` (her TV, tv000001). */
export async function aliceReplacingOn(edge: Edge): Promise<{ s: string; token: string }> {
  const s = await limited({ onExtraViewerSession: "replace" });
  const token = await tokenOf(s, "alice");
  expect(await hook(playWith(s, edge, "tv000001", token))).toEqual({ status: 200, body: { code: 0 } });
  return { s, token };
}
