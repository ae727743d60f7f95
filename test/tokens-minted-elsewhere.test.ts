/**
 * Review of issue 14 (viewer identity in play tokens): the README's token spec
 * followed by an independent minter, revocations at their edges, app-wide tokens.
 */
import { describe, expect, it, vi } from "vitest";
import { ALLOW, LIMIT, REVOKED, limited, nowS, playWith, tokenOf, screensOnTheFakeClock, a, b } from "./identity";
import { admin, createStream, hook, hookWith, newEdge, stopPlay, uniqueStream } from "./srs";
import { at, beat, events, restarted, T0 } from "./fleet";
import { README_VECTORS } from "./token-vectors";

const DAY_S = 86400;
screensOnTheFakeClock();

describe("the README's format, minted elsewhere", () => {
  // Minted with Python's stdlib from the README's text alone (base64.urlsafe_b64encode + hmac), key = the tests'
  // TOKEN_SIGNING_KEY, iat = T0 (2031-03-01T12:00:00Z), exp = iat + 3600.
  const PY = {
    alice: "v2.X19kZWZhdWx0Vmhvc3RfXy9saXZlL3Jldmlld3B5MQ.1930132800.1930136400.YWxpY2VAZXhhbXBsZS5jb20.0mXu2d-UbfCBXhzKXCC7zDDfctfKXA02RaYIoslzPJE",
    anonymous: "v2.X19kZWZhdWx0Vmhvc3RfXy9saXZlL3Jldmlld3B5MQ.1930132800.1930136400.-.x1csmfzbhIYuKUjpkpxaTjHyd8sU_uRNhiOICqseA6w",
    pass: "v2.X19kZWZhdWx0Vmhvc3RfXy9saXZlLyo.1930132800.1930136400.c2Vhc29uLXBhc3MtNw.Jbuhdm24t9gp9zFEDG624cM2gx6BAOSJCIEktrnGRCg",
  };

  it("tokens a Python backend mints from the README play, are counted per viewer id, and a season pass plays another stream", async () => {
    expect(T0 / 1000).toBe(1930132800);
    await createStream("reviewpy1", { playAuth: "token", maxSessionsPerViewer: 1 });
    expect(await hook(playWith("reviewpy1", a, "tv000001", PY.alice))).toEqual(ALLOW);
    expect(await hook(playWith("reviewpy1", b, "phone001", PY.alice))).toEqual(LIMIT);
    expect((await hook(playWith("reviewpy1", b, "anon0001", PY.anonymous))).body.code).toBe(4018);
    const other = uniqueStream();
    await createStream(other, { playAuth: "token" });
    expect(await hook(playWith(other, a, "pass0001", PY.pass))).toEqual(ALLOW);
    const log = JSON.stringify(await events("reviewpy1"));
    for (const t of Object.values(PY)) expect(log).not.toContain(t.split(".").pop());
  });

  it("the README's test vectors play on live/cam1 at their issue time, with the vectors' key", async () => {
    const vectorKey = { TOKEN_SIGNING_KEY: "streamgate-test-vector-key-0123456789" };
    vi.setSystemTime(1795621490 * 1000 + 5000);
    await createStream("cam1", { playAuth: "token" });
    expect(await hookWith(vectorKey, playWith("cam1", a, "vec00001", README_VECTORS.withSub))).toEqual(ALLOW);
    expect(await hookWith(vectorKey, playWith("cam1", a, "vec00002", README_VECTORS.noSub))).toEqual(ALLOW);
    expect(await hookWith(vectorKey, playWith("cam1", a, "vec00003", README_VECTORS.wholeApp))).toEqual(ALLOW);
  });
});

describe("revocations at their edges", () => {
  it("a revocation of a viewer's tokens issued before a time long past (every one of them expired) is accepted: it is not 'too many active revocations'", async () => {
    const s = await limited();
    const r = await admin("POST", `/streams/live/${s}/revocations`, { sub: "alice", before: nowS() - 31 * DAY_S });
    expect(r.status, JSON.stringify(r.body)).not.toBe(409);
    expect(r.status).toBe(201);
    expect(r.body.ended).toEqual([]);
    // Nothing it covers can play, and alice's current tokens play on.
    expect(await hook(playWith(s, a, "tv000001", await tokenOf(s, "alice")))).toEqual(ALLOW);
  });

  it("a revocation of a viewer's tokens issued before a time long past ends the session still live that one of them admitted", async () => {
    const s = uniqueStream();
    await createStream(s, { playAuth: "token" });
    const issued = nowS();
    expect(await hook(playWith(s, a, "marathon", await tokenOf(s, "alice", issued, 3600)))).toEqual(ALLOW);
    // An admitted viewer is not re-checked when its token expires: 31 days later it still watches.
    at(31 * DAY_S * 1000);
    const r = await admin("POST", `/streams/live/${s}/revocations`, { sub: "alice", before: issued + 1 });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body.ended.map((e: any) => e.clientId)).toEqual(["marathon"]);
  });

  it("by sub: a token minted in the same second, after the revocation, is refused (README: within 61 s); one minted 61 s later plays", async () => {
    const s = await limited();
    expect((await admin("POST", `/streams/live/${s}/revocations`, { sub: "alice" })).status).toBe(201);
    expect(await hook(playWith(s, a, "tv000001", await tokenOf(s, "alice")))).toEqual(REVOKED);
    at(61_000);
    expect(await hook(playWith(s, a, "tv000002", await tokenOf(s, "alice")))).toEqual(ALLOW);
  });
});

describe("concurrency probes", () => {
  for (const [limit, mode] of [[2, "deny"], [3, "deny"], [2, "replace"]] as const) {
    it(`50 simultaneous on_play of one viewer id on five edges, limit ${limit}, ${mode}: exactly ${limit} live afterwards`, async () => {
      const s = await limited({ maxSessionsPerViewer: limit, onExtraViewerSession: mode });
      const token = await tokenOf(s, "alice");
      const edges = Array.from({ length: 5 }, newEdge);
      const replies = await Promise.all(Array.from({ length: 50 }, (_, i) => hook(playWith(s, edges[i % 5], `c${String(i).padStart(7, "0")}`, token))));
      if (mode === "deny") expect(replies.filter((r) => r.status === 200)).toHaveLength(limit);
      const listed = (await admin("GET", `/streams/live/${s}/viewers`)).body.viewers;
      expect(listed).toHaveLength(1);
      expect(listed[0].live).toBe(limit);
    });
  }

  it("50 simultaneous on_play, half of them repeats of one live session: the live session stays, every other is refused", async () => {
    const s = await limited();
    const token = await tokenOf(s, "alice");
    expect(await hook(playWith(s, a, "tv000001", token))).toEqual(ALLOW);
    const edges = Array.from({ length: 5 }, newEdge);
    const replies = await Promise.all(
      Array.from({ length: 50 }, (_, i) => (i % 2 === 0 ? hook(playWith(s, a, "tv000001", token)) : hook(playWith(s, edges[i % 5], `c${String(i).padStart(7, "0")}`, token)))),
    );
    replies.forEach((r, i) => expect(r, String(i)).toEqual(i % 2 === 0 ? ALLOW : LIMIT));
    expect((await admin("GET", `/streams/live/${s}/viewers`)).body.viewers).toEqual([expect.objectContaining({ sub: "alice", live: 1 })]);
  });
});

describe("edge restarts", () => {
  it("a viewer whose edge restarted plays again on it at once (its old session died with the process) once the new process heartbeats (README: Restarts)", async () => {
    const s = await limited();
    const token = await tokenOf(s, "alice");
    await beat(a);
    expect(await hook(playWith(s, a, "tv000001", token))).toEqual(ALLOW);
    const next = restarted(a);
    await beat(next);
    expect(await hook(playWith(s, next, "tv000002", token))).toEqual(ALLOW);
    expect((await admin("GET", `/streams/live/${s}/viewers`)).body.viewers).toEqual([expect.objectContaining({ sub: "alice", live: 1 })]);
  });

  it("a viewer whose edge restarted plays on another edge at once once the restart is known (heartbeat)", async () => {
    const s = await limited();
    const token = await tokenOf(s, "alice");
    await beat(a);
    expect(await hook(playWith(s, a, "tv000001", token))).toEqual(ALLOW);
    await beat(restarted(a));
    expect(await hook(playWith(s, b, "phone001", token))).toEqual(ALLOW);
  });
});

describe("a stream deleted and created again", () => {
  it("starts with no revocations; a session live through the delete (SRS keeps it) still counts, and once it stops the viewer plays elsewhere", async () => {
    const s = await limited();
    const token = await tokenOf(s, "alice");
    expect(await hook(playWith(s, a, "tv000001", token))).toEqual(ALLOW);
    expect((await admin("POST", `/streams/live/${s}/revocations`, { sub: "bob" })).status).toBe(201);
    expect((await admin("DELETE", `/streams/live/${s}`)).status).toBe(200);
    await createStream(s, { playAuth: "token", maxSessionsPerViewer: 1 });
    expect((await admin("GET", `/streams/live/${s}/revocations`)).body.revocations).toEqual([]);
    expect(await hook(playWith(s, b, "phone001", token))).toEqual(LIMIT);
    expect(await hook(stopPlay("live", s, { ...a, client: "tv000001" }))).toEqual(ALLOW);
    expect(await hook(playWith(s, b, "phone002", token))).toEqual(ALLOW);
    expect(await hook(playWith(s, b, "bob00001", await tokenOf(s, "bob")))).toEqual(ALLOW);
  });
});

describe("a revocation racing plays", () => {
  for (const policy of [{}, { maxSessionsPerViewer: 3, onExtraViewerSession: "replace" }] as Record<string, unknown>[]) {
    it(`no session admitted with the revoked token survives: 30 plays on six edges while it is posted (${JSON.stringify(policy)})`, async () => {
      const s = uniqueStream();
      await createStream(s, { playAuth: "token", ...policy });
      const token = await tokenOf(s, "alice");
      const edges = Array.from({ length: 6 }, newEdge);
      const plays = Array.from({ length: 30 }, (_, i) => hook(playWith(s, edges[i % 6], `c${String(i).padStart(7, "0")}`, token)));
      const revoked = admin("POST", `/streams/live/${s}/revocations`, { sub: "alice" });
      await Promise.all([...plays, revoked]);
      expect((await revoked).status).toBe(201);
      expect((await admin("GET", `/streams/live/${s}/viewers`)).body.viewers).toEqual([]);
      expect(await hook(playWith(s, edges[0], "late0001", token))).toEqual(REVOKED);
    });
  }
});

describe("a viewer's revocation expires once every token it covers has", () => {
  it("listed until before + MAX_TOKEN_TTL_S, gone then; the last token it covers (issued at before - 1, living MAX_TOKEN_TTL_S) is refused until it expires", async () => {
    const s = uniqueStream();
    await createStream(s, { playAuth: "token" });
    const r = (await admin("POST", `/streams/live/${s}/revocations`, { sub: "alice" })).body.revocation;
    const ttl = 30 * DAY_S;
    expect(r.expires).toBe(r.before + ttl);
    const last = await tokenOf(s, "alice", r.before - 1, ttl);
    at((r.expires - 2 - nowS()) * 1000);
    expect((await admin("GET", `/streams/live/${s}/revocations`)).body.revocations).toHaveLength(1);
    expect(await hook(playWith(s, a, "last0001", last))).toEqual(REVOKED);
    vi.setSystemTime(r.expires * 1000);
    expect((await admin("GET", `/streams/live/${s}/revocations`)).body.revocations).toEqual([]);
    expect((await hook(playWith(s, a, "last0002", last))).body.code).toBe(4013);
  });
});
