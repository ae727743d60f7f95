/**
 * Adversarial review of viewer identity (issue 14): seats (src/viewers/seats.ts), the viewer shard's
 * seat handling (src/viewers/shard.ts), revocations (src/stream/revocations.ts, src/admin/viewers.ts,
 * src/admin/validate.ts) and the play path's undo (src/session/lifecycle.ts).
 *
 * Tests named "must not happen (fixed): …" failed on the code the review found: each states what a
 * user would have seen. "must not happen (open): …" are it.fails: the defect lies in a file this
 * review could not change (the comment says where and how to fix it). "holds: …" probes found no
 * defect and pin down what the review tried to break.
 */
import { env } from "cloudflare:workers";
import { runDurableObjectAlarm } from "cloudflare:test";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { signPlayToken } from "../src/auth/token";
import { viewerSeats } from "../src/object-access";
import { ViewerSeats } from "../src/viewers/seats";
import { ViewerShard } from "../src/viewers/shard";
import { StreamObject } from "../src/stream/object";
import { admin, close, createStream, type Edge, hook, newEdge, play, stopPlay, streamState, uniqueStream } from "./srs";
import { at, beat, deliverNotices, events, overloaded, restarted, retryable, serverStub, shardStub, streamStub, useFakeClock } from "./fleet";

const ALLOW = { status: 200, body: { code: 0 } };
const KEY = "test-token-signing-key-32-chars-or-more"; // TOKEN_SIGNING_KEY in vitest.config.mts
const LIMIT = { status: 403, body: { code: 4016, reason: "viewer session limit" } };
const REVOKED = { status: 403, body: { code: 4019, reason: "token revoked" } };
const DAY_S = 86_400;
const nowS = () => Math.floor(Date.now() / 1000);
const name = (stream: string) => ({ vhost: "__defaultVhost__", app: "live", stream });
const keyOf = (stream: string) => `__defaultVhost__/live/${stream}`;

let a: Edge;
let b: Edge;
let c: Edge;
useFakeClock();
beforeEach(() => {
  a = newEdge();
  b = newEdge();
  c = newEdge();
});

/** An on_play of `client` on `edge` with a token. */
const playWith = (stream: string, edge: Edge, client: string, token: string) => ({ ...play("live", stream, { ...edge, client }), param: `?token=${token}` });

async function limited(policy: Record<string, unknown> = {}): Promise<string> {
  const s = uniqueStream();
  await createStream(s, { playAuth: "token", maxSessionsPerViewer: 1, ...policy });
  return s;
}

async function tokenOf(stream: string, sub?: string, issuedAt = nowS(), ttl = 3600): Promise<string> {
  return signPlayToken(name(stream), issuedAt + ttl, KEY, { ...(sub === undefined ? {} : { sub }), issuedAt });
}

/** The clients holding seats of `sub` on the stream, as the seat object has them. */
async function seatsOf(stream: string, sub: string): Promise<string[]> {
  return (await viewerSeats(env, keyOf(stream), sub).seats(keyOf(stream))).filter((x) => x.sub === sub).map((x) => x.clientId).sort();
}

/** Live sessions per viewer id, as GET …/viewers shows them. */
async function livePerSub(stream: string): Promise<Record<string, number>> {
  const body = (await admin("GET", `/streams/live/${stream}/viewers`)).body;
  return Object.fromEntries(body.viewers.map((v: any) => [v.sub, v.live]));
}

/** Lets the objects' background work (waitUntil: seat releases) run. */
const settle = () => new Promise((r) => setTimeout(r, 100));

describe("one session, two on_play racing", () => {
  it("must not happen (fixed): a repeated on_play of a live session, racing the first, gives the session's seat back, and the viewer's second screen is admitted beside it", async () => {
    const s = await limited();
    const token = await tokenOf(s, "alice");
    // The same session's on_play twice at once (a Worker retry whose first attempt is still running, or SRS re-sending).
    const replies = await Promise.all([hook(playWith(s, a, "tv000001", token)), hook(playWith(s, a, "tv000001", token))]);
    expect(replies).toEqual([ALLOW, ALLOW]);
    await settle();
    expect(await seatsOf(s, "alice")).toEqual(["tv000001"]);
    expect(await hook(playWith(s, b, "phone001", token))).toEqual(LIMIT);
    expect(await livePerSub(s)).toEqual({ alice: 1 });
  });
});

describe("changing maxSessionsPerViewer", () => {
  it("must not happen (fixed): sessions admitted while the stream had no limit are not counted once it has one: a viewer on two screens is admitted on a third with maxSessionsPerViewer 1", async () => {
    const s = uniqueStream();
    await createStream(s, { playAuth: "token" });
    const token = await tokenOf(s, "alice");
    expect(await hook(playWith(s, a, "tv000001", token))).toEqual(ALLOW);
    expect(await hook(playWith(s, b, "phone001", token))).toEqual(ALLOW);
    expect((await admin("PUT", `/streams/live/${s}`, { maxSessionsPerViewer: 1 })).status).toBe(200);
    await settle();
    expect(await hook(playWith(s, c, "tablet01", token))).toEqual(LIMIT);
    expect(await livePerSub(s)).toEqual({ alice: 2 });
    // Once the viewer is under the limit again, it plays.
    expect(await hook(stopPlay("live", s, { ...a, client: "tv000001" }))).toEqual(ALLOW);
    expect(await hook(stopPlay("live", s, { ...b, client: "phone001" }))).toEqual(ALLOW);
    await settle();
    expect(await hook(playWith(s, c, "tablet01", token))).toEqual(ALLOW);
    expect(await livePerSub(s)).toEqual({ alice: 1 });
  });

  it("must not happen (fixed): with replace, a limit set while a viewer watches on two screens still leaves two live after its next on_play", async () => {
    const s = uniqueStream();
    await createStream(s, { playAuth: "token" });
    const token = await tokenOf(s, "alice");
    expect(await hook(playWith(s, a, "tv000001", token))).toEqual(ALLOW);
    expect(await hook(playWith(s, b, "phone001", token))).toEqual(ALLOW);
    expect((await admin("PUT", `/streams/live/${s}`, { maxSessionsPerViewer: 1, onExtraViewerSession: "replace" })).status).toBe(200);
    await settle();
    expect(await hook(playWith(s, c, "tablet01", token))).toEqual(ALLOW);
    expect(await livePerSub(s)).toEqual({ alice: 1 });
  });
});

describe("revocations past the cap", () => {
  it("must not happen (fixed): with 1,000 active revocations, the way out the 409 names (revoke every token by time) is refused with 409 too", async () => {
    const s = uniqueStream();
    await createStream(s, { playAuth: "token" });
    const token = await tokenOf(s, "alice");
    expect(await hook(playWith(s, a, "tv000001", token))).toEqual(ALLOW);
    for (let i = 0; i < 1000; i++) expect(await streamStub(s).revoke(`leak${i}`, nowS() + 1, nowS() + DAY_S)).not.toBeNull();
    const over = await admin("POST", `/streams/live/${s}/revocations`, { sub: "bob" });
    expect(over.status).toBe(409);
    expect(over.body.error).toMatch(/"before"/);
    const byTime = await admin("POST", `/streams/live/${s}/revocations`, { before: nowS() + 1 });
    expect(byTime.status).toBe(201);
    expect(byTime.body.ended.map((e: any) => e.clientId)).toEqual(["tv000001"]);
    expect(await hook(playWith(s, b, "phone001", token))).toEqual(REVOKED);
  });
});
