/**
 * Adversarial tests of e48040d (a start hook SRS serves whatever the answer — an HLS on_play whose
 * param mentions hls_ctx — is kicked after a refusal, a 400 or a 5xx: src/srs/hook.ts
 * servedUnlessAllowed / servedSessionOf, src/srs/routes.ts handleHook / kickRefused, the registry
 * outbox src/srs/kick-outbox.ts (queued by the registry's queueKicks) with delayMs).
 *
 * For an HLS viewer the client_id is the hls_ctx the player chose (README "SRS caveats"): the one
 * field of a kick's target an outside client controls. SRS keeps a ctx until 2 × hls_window after
 * the player's last request, then sends on_stop and forgets it; the same player may then come back
 * with the same ctx, which SRS sends through on_play again as a new session.
 *
 * Runs in the "srs-api" project (SRS_API_URL set), as every file in test/srs-api/.
 */
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import { ServerRegistry, shardOf } from "../../src/server/registry";
import { admin, createStream, heartbeat, hlsPlay, hook, hookWith, newEdge, play, publish, stopPlay, streamState, uniqueStream } from "../srs";
import { ALLOW, deviceOf, edgeWithApi, installFakeSrs, kickedOn } from "../fake-srs";
import { at, countCalls, futureClock, serverStub, streamStub, T0, until } from "../fleet";

installFakeSrs();

type Edge = { server: string; service: string };

/** The rows of the server's registry outbox for `client`. */
const kickRows = (edge: Edge, client: string) =>
  runInDurableObject(serverStub(edge), (_: ServerRegistry, state: DurableObjectState) =>
    state.storage.sql.exec<{ why: string; attempt: number; next_at: number; until: number; stream_key: string }>("SELECT why, attempt, next_at, until, stream_key FROM kicks WHERE client_id = ?", client).toArray(),
  );

async function waitForRow(edge: Edge, client: string) {
  await vi.waitFor(async () => expect((await kickRows(edge, client)).length).toBe(1), { timeout: 15_000, interval: 20 });
}

const beatWithApi = (edge: Edge) => hook({ ...heartbeat(edge), device_id: deviceOf(edge as any) }, undefined, "/heartbeat");

/**
 * A stream capped at 1 and full, its edge's API out of reach, and `client`'s HLS play (its own ctx) refused, its kick
 * waiting in the outbox; `served`: SRS holds that refused session (it does until kicked or expired).
 */
async function refusedWhileApiDown(client: string, served: boolean) {
  futureClock();
  const { edge, fake } = await edgeWithApi(["view0001"]);
  const s = uniqueStream();
  await createStream(s, { maxViewers: 1 });
  expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
  fake.reachable = false;
  if (served) fake.clients.add(client);
  expect((await hook(hlsPlay(s, { ...edge, client }, `?hls_ctx=${client}`))).body.code).toBe(4005);
  await waitForRow(edge, client);
  return { edge, fake, s };
}

describe("a refused session's kick outlives the session it was meant for", () => {
  it("must not happen (fixed): a refused HLS kick still retrying after SRS forgot the ctx kicks the same player's LATER, admitted session", async () => {
    // The edge's API cannot be reached for a while (a firewall change, an API restart, a partition). A player with its own
    // ctx is refused for the cap: kick queued, its attempts fail, retried for KICK_RETRY_MS (5 min). SRS forgot the ctx.
    const { edge, fake, s } = await refusedWhileApiDown("hlsback1", false);
    at(1_000);
    await runDurableObjectAlarm(serverStub(edge));
    expect((await kickRows(edge, "hlsback1"))[0].attempt).toBe(1); // failed once, will retry
    // 2 × hls_window later SRS drops the ctx (on_stop), the slot holder leaves, and the same player comes back with
    // the same ctx (ffmpeg keeps it): SRS sends on_play again, and streamgate ADMITS it (the slot is free).
    at(130_000);
    expect(await beatWithApi(edge)).toEqual(ALLOW);
    expect(await hook({ ...stopPlay("live", s, { ...edge, client: "hlsback1" }), stream: `${s}.m3u8` })).toEqual(ALLOW);
    expect(await hook(stopPlay("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    fake.clients.delete("view0001");
    expect(await hook(hlsPlay(s, { ...edge, client: "hlsback1" }, "?hls_ctx=hlsback1"))).toEqual(ALLOW);
    fake.clients.add("hlsback1");
    expect((await streamState(s)).viewers).toBe(1);
    // The API is back; the outbox still holds the old refusal's kick (nothing cancelled it at the admission).
    fake.reachable = true;
    at(131_000);
    await runDurableObjectAlarm(serverStub(edge));
    // must not happen: the viewer streamgate admitted 1 s ago is kicked for the refusal of its previous session, 2 minutes
    // earlier (README: "a client id that a restarted process reuses is never kicked by mistake"; here the same process
    // reuses it, and the id is the player's own). SRS then ends it and sends on_stop: the paying viewer loses playback.
    expect(kickedOn(fake, "hlsback1")).toBe(false);
  });

  it("must not happen (fixed): the same, when the player comes back on ANOTHER stream: a kick queued for stream A ends an admitted session of stream B", async () => {
    futureClock();
    const { edge, fake } = await edgeWithApi(["view0001"]);
    const a = uniqueStream();
    const b = uniqueStream();
    await createStream(a, { playAuth: "token" });
    await createStream(b, { maxViewers: 5 });
    fake.reachable = false;
    expect((await hook(hlsPlay(a, { ...edge, client: "hlsback2" }, "?hls_ctx=hlsback2"))).body.code).toBeGreaterThan(0);
    await waitForRow(edge, "hlsback2");
    at(1_000);
    await runDurableObjectAlarm(serverStub(edge));
    at(130_000);
    expect(await beatWithApi(edge)).toEqual(ALLOW);
    expect(await hook({ ...stopPlay("live", a, { ...edge, client: "hlsback2" }), stream: `${a}.m3u8` })).toEqual(ALLOW);
    expect(await hook(hlsPlay(b, { ...edge, client: "hlsback2" }, "?hls_ctx=hlsback2"))).toEqual(ALLOW);
    fake.clients.add("hlsback2");
    fake.reachable = true;
    at(131_000);
    await runDurableObjectAlarm(serverStub(edge));
    // must not happen: the kick names stream A (the row's stream_key) but is sent by id alone; the GET before it checks only
    // the process, not that the client is still the refused session of A, so B's admitted viewer is ended.
    expect(kickedOn(fake, "hlsback2")).toBe(false);
  });
});

describe("a refused session's kick and the same player's next refusal", () => {
  it("must not happen (fixed): a player refused again with its hls_ctx, its API back, was served until the backoff of its earlier session's kick ran out (up to 30 s)", async () => {
    // Shrunk from test/srs-api/model-api.test.ts: a kick waiting with its backoff (doubling to 30 s) while the edge's API
    // could not be reached; SRS expires the refused session; the API is back; the same player comes back with the same
    // ctx and is refused again: SRS serves that new session until the gate's kick.
    const { edge, fake, s } = await refusedWhileApiDown("hlsagn01", true);
    // Its tries fail (the edge heartbeats all along), 1 s, 2 s, 4 s, 8 s, 16 s, then 30 s apart.
    for (const t of [1_000, 3_000, 7_000, 15_000, 31_000, 47_000]) {
      at(t);
      expect(await beatWithApi(edge)).toEqual(ALLOW);
      await runDurableObjectAlarm(serverStub(edge));
    }
    expect((await kickRows(edge, "hlsagn01"))[0].next_at).toBeGreaterThan(T0 + 70_000);
    // SRS expires the refused session (its on_stop); the API is back; the player comes back with its ctx and is refused again.
    at(48_000);
    fake.clients.delete("hlsagn01");
    expect(await hook({ ...stopPlay("live", s, { ...edge, client: "hlsagn01" }), stream: `${s}.m3u8` })).toEqual(ALLOW);
    fake.reachable = true;
    fake.clients.add("hlsagn01");
    const queued = countCalls(ServerRegistry.prototype, "queueKicks", (_self, [kicks]) => kicks.some((k: { clientId: string }) => k.clientId === "hlsagn01"));
    expect((await hook(hlsPlay(s, { ...edge, client: "hlsagn01" }, "?hls_ctx=hlsagn01"))).body.code).toBe(4005);
    await until(() => queued.done > 0);
    at(49_000);
    await runDurableObjectAlarm(serverStub(edge));
    // must not happen: the new refusal's kick went into the waiting row (ON CONFLICT DO NOTHING), due at 77 s: SRS served
    // the refused session for half a minute past the cap (README "Kicks": kicked "in the background, 0.3 s after the answer").
    expect(kickedOn(fake, "hlsagn01")).toBe(true);
    expect(fake.clients.has("hlsagn01")).toBe(false);
  });
});

describe("one edge's kicks and another's in the same registry shard", () => {
  it("must not happen (fixed): a hundred refused kicks waiting for an edge whose API hangs held back another edge's refused kick for seconds", async () => {
    const slow = await edgeWithApi(Array.from({ length: 100 }, (_, i) => `slow${String(i).padStart(4, "0")}`));
    slow.fake.hang = true; // each call waits out its timeout (2 s)
    let other = newEdge();
    while (shardOf(other.server) !== shardOf(slow.edge.server)) other = newEdge();
    const fast = await edgeWithApi(["fast0001"], other);
    const s = uniqueStream("nosuch");
    await Promise.all(
      Array.from({ length: 100 }, (_, i) => hook(hlsPlay(s, { ...slow.edge, client: `slow${String(i).padStart(4, "0")}` }, `?hls_ctx=slow${String(i).padStart(4, "0")}`))),
    );
    const began = Date.now();
    expect((await hook(hlsPlay(s, { ...fast.edge, client: "fast0001" }, "?hls_ctx=fast0001"))).status).toBe(403);
    // 20 kicks per run, oldest first, would have sent this one after five runs of 2 s each.
    await vi.waitFor(() => expect(kickedOn(fast.fake, "fast0001")).toBe(true), { timeout: 5000, interval: 50 });
    expect(Date.now() - began).toBeLessThan(5000);
  });
});

describe("ON CONFLICT DO UPDATE: a refused hook re-queues an operator's pending kick of the same key", () => {
  it("must not happen (fixed): a refused HLS hook naming a client the operator is kicking rewrote that kick's reason: the decision log said \"ended by operator\" no more", async () => {
    futureClock();
    const { edge, fake } = await edgeWithApi(["rtmp0001", "view0002"]);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    expect(await hook(play("live", s, { ...edge, client: "rtmp0001" }))).toEqual(ALLOW);
    fake.reachable = false;
    // The operator ends rtmp0001 (its API is briefly unreachable: the kick waits in the outbox, retried).
    expect((await admin("DELETE", `/streams/live/${s}/sessions?client=rtmp0001`)).body.kicking).toHaveLength(1);
    expect((await kickRows(edge, "rtmp0001"))[0].why).toBe("ended by operator");
    expect(await hook(play("live", s, { ...edge, client: "view0002" }))).toEqual(ALLOW);
    // An HLS request naming that id (?hls_ctx=rtmp0001) on the same stream is refused for the cap: same outbox key.
    const queued = countCalls(ServerRegistry.prototype, "queueKicks", (_self, [kicks]) => kicks.some((k: { clientId: string }) => k.clientId === "rtmp0001"));
    expect((await hook(hlsPlay(s, { ...edge, client: "rtmp0001" }, "?hls_ctx=rtmp0001"))).body.code).toBe(4005);
    // The refused hook's kick is queued in the background: once it has been, the operator's kick must be as it was.
    await until(() => queued.done > 0);
    expect((await kickRows(edge, "rtmp0001"))[0].why).toBe("ended by operator");
    fake.reachable = true;
    at(2_000);
    await runDurableObjectAlarm(serverStub(edge));
    const events = (await admin("GET", `/streams/live/${s}/events`)).body.events ?? [];
    const kicks = events.filter((e: any) => e.action === "kick" && e.client === "rtmp0001").map((e: any) => e.reason);
    expect(kicks).toHaveLength(1);
    // must not happen: the operator's kick is recorded as "kicked (refused (viewer cap reached …)…)": the audit trail of who
    // ended the session (and why) is replaced by whatever a client's request said last.
    expect(kicks[0]).toContain("ended by operator");
  });
});

describe("a flood of refused HLS hooks and the outbox", () => {
  it("must not happen (fixed): a flood of refused hls_ctx requests (one HTTP GET each) holds back an operator's key-rotation kick past the 5 s contract", async () => {
    // The edge's API answers in 200 ms (an edge on another continent). KICKS_PER_RUN is 20, run together, so the outbox drains at
    // about 20 kicks per API round trip, oldest first: a kick queued behind N others waits N / 20 round trips.
    const { edge, fake } = await edgeWithApi(["enc00001"]);
    fake.delayMs = 200;
    const s = uniqueStream();
    const key = await createStream(s);
    expect(await hook(publish("live", s, key, { ...edge, client: "enc00001" }))).toEqual(ALLOW);
    // The attacker: GET /live/<any>.m3u8?hls_ctx=<random>, 800 times, each refused (no such stream) and so each a kick.
    const N = 800;
    for (let i = 0; i < N; i += 100) {
      await Promise.all(
        Array.from({ length: 100 }, (_, j) => hook(hlsPlay(`nosuch-${i + j}`, { ...edge, client: `fl${String(i + j).padStart(6, "0")}` }, `?hls_ctx=x`))),
      );
    }
    const began = Date.now();
    const put = await admin("PUT", `/streams/live/${s}`, { rotateKey: true });
    expect(put.body.kicking).toEqual([{ role: "publisher", serverId: edge.server, clientId: "enc00001" }]);
    await vi.waitFor(() => expect(kickedOn(fake, "enc00001")).toBe(true), { timeout: 60_000, interval: 100 });
    const waited = Date.now() - began;
    console.log(JSON.stringify({ floodKicks: N, keyRotationKickAfterMs: waited, apiCalls: fake.calls.length }));
    // must not happen: the publisher whose key was rotated (a leaked key) keeps publishing well past the contract
    // ("its alarm runs them at once … the contract is 5 s"), for as long as the attacker keeps the outbox full.
    expect(waited).toBeLessThan(5_000);
  }, 120_000);
});

describe("holds", () => {
  it("holds: a kick for a stream that does not exist writes nothing in that stream's object, and leaves the outbox", async () => {
    const { edge, fake } = await edgeWithApi(["ghost001"]);
    const s = uniqueStream("nosuch");
    expect((await hook(hlsPlay(s, { ...edge, client: "ghost001" }, "?hls_ctx=ghost001"))).status).toBe(403);
    await vi.waitFor(() => expect(kickedOn(fake, "ghost001")).toBe(true), { timeout: 40_000, interval: 50 });
    await vi.waitFor(async () => expect(await kickRows(edge, "ghost001")).toEqual([]), { timeout: 40_000, interval: 50 });
    const tables = await runInDurableObject(streamStub(s), (_: unknown, state: DurableObjectState) => state.storage.sql.exec("SELECT name FROM sqlite_master").toArray());
    expect(tables).toEqual([]);
  });

  it("holds: 400 salvage with odd fields answers 400 (never 500), and kicks whenever the session parses (a name outside the rules too: SRS names the session from the request)", async () => {
    const { edge, fake } = await edgeWithApi(["salv0001", "salv0002", "salv0003"]);
    const s = uniqueStream("nosuch");
    // control characters in param: 400, kicked (session and stream parse).
    const r1 = await hook(hlsPlay(s, { ...edge, client: "salv0001" }, "?hls_ctx=salv0001\u0001"));
    expect(r1.status).toBe(400);
    // client_id over 64 characters (kicked: test/srs-api/client-ids-in-api-paths.test.ts), a number as param (no hls_ctx
    // SRS could have read): 400, nothing to kick here.
    expect((await hook(hlsPlay(s, { ...edge, client: "s".repeat(65) }, "?hls_ctx=x\u0001"))).status).toBe(400);
    expect((await hook({ ...hlsPlay(s, { ...edge, client: "salv0002" }, "?hls_ctx=x"), param: 42 })).status).toBe(400);
    // An array as vhost, a stream outside the name rules: 400, and the session is kicked all the same.
    expect((await hook({ ...hlsPlay(s, { ...edge, client: "salv0003" }, "?hls_ctx=x\u0001"), vhost: ["a"] })).status).toBe(400);
    expect((await hook({ ...hlsPlay(s, { ...edge, client: "salv0003" }, "?hls_ctx=x\u0001"), stream: "../x.m3u8" })).status).toBe(400);
    await vi.waitFor(() => expect([kickedOn(fake, "salv0001"), kickedOn(fake, "salv0003")]).toEqual([true, true]), { timeout: 15_000, interval: 50 });
    await new Promise((r) => setTimeout(r, 800));
    expect(kickedOn(fake, "salv0002")).toBe(false);
  });

  it("holds: a refused on_publish or RTMP on_play with '.m3u8' and 'hls_ctx' is not kicked as HLS unless it is an on_play", async () => {
    const { edge, fake } = await edgeWithApi(["pub00001"]);
    const s = uniqueStream("nosuch");
    expect((await hook({ ...publish("live", `${s}.m3u8`, "bad", { ...edge, client: "pub00001" }), param: "?key=bad&hls_ctx=pub00001" })).status).toBe(403);
    await new Promise((r) => setTimeout(r, 800));
    expect(kickedOn(fake, "pub00001")).toBe(false);
  });

  it("holds: without SRS_API_URL a refused, a 400 and a salvaged HLS hook never reach the registry's outbox", async () => {
    const spy = vi.spyOn(ServerRegistry.prototype, "queueKicks");
    const { edge } = await edgeWithApi(["noapi001"]);
    const s = uniqueStream("nosuch");
    const refused = await hookWith({ SRS_API_URL: "" }, hlsPlay(s, { ...edge, client: "noapi001" }, "?hls_ctx=noapi001"));
    expect(refused.status).toBe(403);
    const invalid = await hookWith({ SRS_API_URL: "" }, hlsPlay(s, { ...edge, client: "noapi002" }, `?hls_ctx=noapi002&pad=${"x".repeat(5000)}`));
    expect(invalid.status).toBe(400);
    await new Promise((r) => setTimeout(r, 800));
    expect(spy).not.toHaveBeenCalled();
    expect(await kickRows(edge, "noapi001")).toEqual([]);
    expect(await kickRows(edge, "noapi002")).toEqual([]);
  });
});
