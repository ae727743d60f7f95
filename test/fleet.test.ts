import { env } from "cloudflare:workers";
import { createExecutionContext, runDurableObjectAlarm } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import worker from "../src/index";
import { sha256Hex } from "../src/auth/secrets";
import { ServerRegistry } from "../src/server/registry";
import { StreamObject } from "../src/stream/object";
import { ViewerShard } from "../src/viewers/shard";
import {
  ALLOW,
  admin,
  close,
  createStream,
  heartbeat,
  hook,
  newEdge,
  play,
  publish,
  stopPlay,
  streamState,
  uniqueStream,
  unpublish,
} from "./srs";
import { at, beat, deliverNotices, playRequest, restarted, serverListed, serverStub, shardStub, streamStub, T0, edge, other, twoEdgesOnTheFakeClock } from "./fleet";

// In the future: alarms the objects set at fake times never fire by themselves, only when a test runs them.
const TIMEOUT_MS = 30_000; // SERVER_TIMEOUT_S in wrangler.toml

twoEdgesOnTheFakeClock();

/** A publisher on one stream and full viewer caps on two others, all held by `edge`. */
async function edgeHoldsThreeStreams() {
  const [pub, v1, v2] = [uniqueStream("pub"), uniqueStream("capped"), uniqueStream("capped")];
  const key = await createStream(pub);
  await createStream(v1, { maxViewers: 2 });
  await createStream(v2, { maxViewers: 1 });
  expect(await hook(publish("live", pub, key, { ...edge, client: "pub00001" }))).toEqual(ALLOW);
  expect(await hook(play("live", v1, { ...edge, client: "view0001" }))).toEqual(ALLOW);
  expect(await hook(play("live", v1, { ...edge, client: "view0002" }))).toEqual(ALLOW);
  expect(await hook(play("live", v2, { ...edge, client: "view0001" }))).toEqual(ALLOW);
  expect((await hook(play("live", v2, { ...other, client: "blocked1" }))).status).toBe(403);
  return { pub, key, v1, v2 };
}

describe("restart fencing: a new service_id ends the old process's sessions", () => {
  it("frees a publisher and viewer slots on several streams at once when the restarted edge heartbeats", async () => {
    const { pub, key, v1, v2 } = await edgeHoldsThreeStreams();
    expect(await beat(restarted(edge))).toEqual(ALLOW);
    await deliverNotices(edge);

    expect(await streamState(pub)).toMatchObject({ live: false, publisher: null });
    expect((await streamState(v1)).viewers).toBe(0);
    expect((await streamState(v2)).viewers).toBe(0);
    expect(await hook(publish("live", pub, key, { ...other, client: "pub00002" }))).toEqual(ALLOW);
    expect(await hook(play("live", v2, { ...other, client: "view0003" }))).toEqual(ALLOW);
  });

  it("lets the restarted edge's publisher republish at once, its first hook being the news", async () => {
    const { pub, key, v1 } = await edgeHoldsThreeStreams();
    const next = restarted(edge);
    expect(await hook(publish("live", pub, key, { ...next, client: "pub00009" }))).toEqual(ALLOW);
    expect((await streamState(pub)).publisher).toMatchObject({ serverId: edge.server, serviceId: next.service, clientId: "pub00009" });
    await deliverNotices(edge);
    expect((await streamState(v1)).viewers).toBe(0);
  });

  it("frees a full cap for the restarted edge's first viewer", async () => {
    const { v2 } = await edgeHoldsThreeStreams();
    expect(await hook(play("live", v2, { ...restarted(edge), client: "view0009" }))).toEqual(ALLOW);
    expect((await streamState(v2)).viewers).toBe(1);
  });

  it("refuses a late start hook from the replaced process and does not count it", async () => {
    const { v1 } = await edgeHoldsThreeStreams();
    await beat(restarted(edge));
    const late = await hook(play("live", v1, { ...edge, client: "late0001" }));
    expect(late.status).toBe(403);
    expect(late.body.reason).toMatch(/^stale server process/);
    expect((await streamState(v1)).viewers).toBe(0);
  });

  it("ends consistently when the old process's stop events race the new process's first hooks", async () => {
    const { pub, key, v1, v2 } = await edgeHoldsThreeStreams();
    const next = restarted(edge);
    const results = await Promise.all([
      hook(publish("live", pub, key, { ...next, client: "pub00001" })),
      hook(unpublish("live", pub, { ...edge, client: "pub00001" })),
      hook(stopPlay("live", v1, { ...edge, client: "view0001" })),
      hook(play("live", v1, { ...next, client: "view0001" })),
      hook(close({ ...edge, client: "view0002" })),
      hook(stopPlay("live", v2, { ...edge, client: "view0001" })),
      hook(play("live", v2, { ...next, client: "view0007" })),
    ]);
    expect(results.every((r) => r.status === 200)).toBe(true);
    // Late duplicates after everything settled change nothing either.
    await hook(unpublish("live", pub, { ...edge, client: "pub00001" }));
    await hook(stopPlay("live", v1, { ...edge, client: "view0002" }));
    await deliverNotices(edge);

    expect((await streamState(pub)).publisher).toMatchObject({ serviceId: next.service, clientId: "pub00001" });
    expect((await streamState(v1)).viewers).toBe(1);
    expect((await streamState(v2)).viewers).toBe(1);
    expect((await serverListed(edge)).sessions).toBe(3);
  });
});

describe("dead servers: heartbeat silence for SERVER_TIMEOUT_S", () => {
  it("keeps a silent edge's sessions until the timeout, and frees them for decisions right after it", async () => {
    await beat(edge);
    const { pub, key, v2 } = await edgeHoldsThreeStreams();

    at(TIMEOUT_MS - 1000);
    expect((await hook(publish("live", pub, key, { ...other, client: "pub00002" }))).status).toBe(403);
    expect((await hook(play("live", v2, { ...other, client: "view0003" }))).status).toBe(403);

    at(TIMEOUT_MS + 1000); // no alarm has run: the denial checks the sessions it rests on
    expect(await hook(publish("live", pub, key, { ...other, client: "pub00002" }))).toEqual(ALLOW);
    expect(await hook(play("live", v2, { ...other, client: "view0003" }))).toEqual(ALLOW);
    expect((await streamState(v2)).viewers).toBe(1);
  });

  it("a heartbeat in time keeps the edge alive", async () => {
    await beat(edge);
    const { pub, key } = await edgeHoldsThreeStreams();
    at(TIMEOUT_MS - 1000);
    await beat(edge);
    at(TIMEOUT_MS + 1000);
    expect((await hook(publish("live", pub, key, { ...other, client: "pub00002" }))).status).toBe(403);
    await runDurableObjectAlarm(serverStub(edge));
    expect((await streamState(pub)).live).toBe(true);
    expect((await serverListed(edge)).alive).toBe(true);
  });

  it("the server's alarm suspends a silent edge's sessions everywhere, so the counts operators see converge", async () => {
    await beat(edge);
    const { pub, v1, v2 } = await edgeHoldsThreeStreams();
    at(TIMEOUT_MS + 1000);
    await runDurableObjectAlarm(serverStub(edge));
    expect(await streamState(pub)).toMatchObject({ live: false, publisher: { clientId: "pub00001", state: "suspended" } });
    expect(await streamState(v1)).toMatchObject({ viewers: 0, suspendedViewers: 2 });
    expect(await streamState(v2)).toMatchObject({ viewers: 0, suspendedViewers: 1 });
    // Suspended, not forgotten: the server still holds them.
    expect(await serverListed(edge)).toMatchObject({ alive: false, sessions: 4 });
  });

  it("the viewer shard's own alarm suspends a silent edge's viewers too", async () => {
    await beat(edge);
    const { v1 } = await edgeHoldsThreeStreams();
    at(TIMEOUT_MS + 1000);
    expect(await runDurableObjectAlarm(shardStub(edge))).toBe(true);
    expect(await streamState(v1)).toMatchObject({ viewers: 0, suspendedViewers: 2 });
  });

  it("never times out a server that sent no heartbeat", async () => {
    const { pub, key, v2 } = await edgeHoldsThreeStreams();
    at(24 * 3600 * 1000);
    expect((await hook(publish("live", pub, key, { ...other, client: "pub00002" }))).status).toBe(403);
    expect((await hook(play("live", v2, { ...other, client: "view0003" }))).status).toBe(403);
    await runDurableObjectAlarm(serverStub(edge)); // whatever else the shard holds, this server has no deadline
    await runDurableObjectAlarm(streamStub(v2));
    expect((await streamState(v2)).viewers).toBe(1);
    expect((await streamState(pub)).live).toBe(true);
    expect(await serverListed(edge)).toMatchObject({ alive: true, lastHeartbeat: null, sessions: 4 });
  });

  it("a silent edge that speaks before anything declared it dead keeps its sessions", async () => {
    await beat(edge);
    const { v2 } = await edgeHoldsThreeStreams();
    at(TIMEOUT_MS + 1000);
    expect((await hook(play("live", v2, { ...edge, client: "view0005" }))).status).toBe(403);
    expect((await serverListed(edge)).alive).toBe(true);
    expect((await streamState(v2)).viewers).toBe(1);
  });
});

describe("partitions heal: a silent edge's sessions come back when the same process is heard from again", () => {
  /** Publisher and viewer on edge E (cap 1), then 31 s without heartbeats, and the alarms have run. */
  async function partitioned() {
    await beat(edge);
    const s = uniqueStream();
    const key = await createStream(s, { maxViewers: 1 });
    expect(await hook(publish("live", s, key, { ...edge, client: "pub00001" }))).toEqual(ALLOW);
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    at(TIMEOUT_MS + 1000);
    await runDurableObjectAlarm(serverStub(edge));
    await runDurableObjectAlarm(streamStub(s));
    return { s, key };
  }

  it("a heartbeat of the same process brings back its publisher and viewer: both count and block again at once", async () => {
    const { s, key } = await partitioned();
    expect(await streamState(s)).toMatchObject({ live: false, viewers: 0, suspendedViewers: 1, publisher: { state: "suspended" } });

    at(TIMEOUT_MS + 2000);
    expect(await beat(edge)).toEqual(ALLOW);
    // No alarm has delivered anything yet: the refusals ask the registry themselves.
    const second = await hook(publish("live", s, key, { ...other, client: "pub00002" }));
    expect(second).toMatchObject({ status: 403, body: { code: 4004 } });
    expect((await hook(play("live", s, { ...other, client: "view0002" }))).body.code).toBe(4005);
    await deliverNotices(edge);
    expect(await streamState(s)).toMatchObject({
      live: true,
      viewers: 1,
      suspendedViewers: 0,
      publisher: { serverId: edge.server, clientId: "pub00001", state: "live" },
      conflicts: [],
    });
  });

  it("any hook of the same process heals it too: its sessions block at once, and the view follows the notices", async () => {
    const { s, key } = await partitioned();
    at(TIMEOUT_MS + 2000);
    // Another client on the healed edge: its viewer slot is taken again by view0001.
    expect((await hook(play("live", s, { ...edge, client: "view0005" }))).body.code).toBe(4005);
    expect(await streamState(s)).toMatchObject({ viewers: 1, suspendedViewers: 0 });
    // The stream asks the registry before a publisher elsewhere could take the stream of the healed one.
    expect((await hook(publish("live", s, key, { ...other, client: "pub00002" }))).body.code).toBe(4004);
    expect((await hook(play("live", s, { ...other, client: "view0002" }))).body.code).toBe(4005);
    await deliverNotices(edge);
    expect(await streamState(s)).toMatchObject({ live: true, viewers: 1, suspendedViewers: 0 });
  });

  it("a hook that gates nothing (on_connect, on_hls) of the same process heals it too; one from a server never seen creates nothing", async () => {
    const { s, key } = await partitioned();
    at(TIMEOUT_MS + 2000);
    const connect = { ...play("live", s, { ...edge, client: "conn0001" }), action: "on_connect" };
    expect(await hook(connect)).toEqual(ALLOW);
    expect((await hook(publish("live", s, key, { ...other, client: "pub00002" }))).body.code).toBe(4004);
    expect((await hook(play("live", s, { ...other, client: "view0002" }))).body.code).toBe(4005);
    await deliverNotices(edge);
    expect(await streamState(s)).toMatchObject({ live: true, viewers: 1, suspendedViewers: 0 });

    const stranger = newEdge();
    expect(await hook({ ...play("live", s, { ...stranger, client: "hls00001" }), action: "on_hls" })).toEqual(ALLOW);
    expect(await serverListed(stranger)).toBeUndefined();
  });

  it("a hook that gates nothing is allowed when the registry cannot be told", async () => {
    const { s } = await partitioned();
    vi.spyOn(ServerRegistry.prototype, "heard").mockRejectedValue(new Error("registry down"));
    expect(await hook({ ...play("live", s, { ...edge, client: "conn0001" }), action: "on_connect" })).toEqual(ALLOW);
    vi.restoreAllMocks();
    expect(await streamState(s)).toMatchObject({ live: false, suspendedViewers: 1 });
  });

  it("while the edge is silent, its sessions block nobody; when it returns, the publisher holding the stream keeps it and the conflict is reported", async () => {
    const { s, key } = await partitioned();
    expect(await hook(publish("live", s, key, { ...other, client: "pub00002" }))).toEqual(ALLOW);
    expect(await hook(play("live", s, { ...other, client: "view0002" }))).toEqual(ALLOW);

    at(TIMEOUT_MS + 5000);
    expect(await beat(edge)).toEqual(ALLOW);
    await deliverNotices(edge);
    const state = await streamState(s);
    expect(state).toMatchObject({
      live: true,
      publisher: { serverId: other.server, clientId: "pub00002", state: "live" },
      conflicts: [{ serverId: edge.server, clientId: "pub00001", state: "conflict" }],
      // Both viewers are connected: both count, over the cap, and nobody else gets in until one leaves.
      viewers: 2,
      suspendedViewers: 0,
    });
    expect((await hook(play("live", s, { ...other, client: "view0003" }))).body.code).toBe(4005);
    const events = (await admin("GET", `/streams/live/${s}/events`)).body.events;
    expect(events.some((e: any) => e.decision === "conflict" && e.client === "pub00001")).toBe(true);

    // The newer publisher stops: the returning one, which never stopped, holds the stream again.
    expect(await hook(unpublish("live", s, { ...other, client: "pub00002" }))).toEqual(ALLOW);
    expect(await streamState(s)).toMatchObject({ live: true, publisher: { clientId: "pub00001", state: "live" }, conflicts: [] });
  });

  it("a stop event during the silence ends the session for good", async () => {
    const { s } = await partitioned();
    expect(await hook(stopPlay("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    expect(await streamState(s)).toMatchObject({ viewers: 0, suspendedViewers: 0 });
  });

  it("a restart (new service_id) after the silence ends the old process's sessions for good", async () => {
    const { s } = await partitioned();
    expect(await beat(restarted(edge))).toEqual(ALLOW);
    await deliverNotices(edge);
    expect(await streamState(s)).toMatchObject({ live: false, publisher: null, viewers: 0, suspendedViewers: 0 });
  });

  it("after SESSION_GRACE_S of silence the sessions end for good, and a later return does not bring them back", async () => {
    const { s } = await partitioned();
    at(86_400_000 + 1000);
    await runDurableObjectAlarm(serverStub(edge));
    await deliverNotices(edge);
    expect(await streamState(s)).toMatchObject({ live: false, publisher: null, viewers: 0, suspendedViewers: 0 });
    expect(await serverListed(edge)).toMatchObject({ alive: false, sessions: 0 });
    expect(await beat(edge)).toEqual(ALLOW);
    await deliverNotices(edge);
    expect(await streamState(s)).toMatchObject({ live: false, viewers: 0 });
  });

  it("a viewer admitted when the edge returned after SESSION_GRACE_S, before the grace's end reached its shard, is suspended at the next silence", async () => {
    await beat(edge);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 2 });
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    // The edge returns after a day of silence; its first viewer is admitted before the registry's notices go out.
    at(86_400_000 + 5000);
    expect(await hook(play("live", s, { ...edge, client: "view0002" }))).toEqual(ALLOW);
    expect(await beat(edge)).toEqual(ALLOW);
    await deliverNotices(edge);
    expect(await streamState(s)).toMatchObject({ viewers: 1, suspendedViewers: 0 });
    // Silent again: the viewer that came with the return is suspended like any other, everywhere.
    at(86_400_000 + 5000 + TIMEOUT_MS + 15_000);
    await runDurableObjectAlarm(serverStub(edge));
    await deliverNotices(edge);
    expect(await streamState(s)).toMatchObject({ viewers: 0, suspendedViewers: 1 });
    expect((await hook(play("live", s, { ...other, client: "view0003" }))).status).toBe(200);
    expect((await hook(play("live", s, { ...other, client: "view0004" }))).status).toBe(200);
  });
});

describe("slow and failing paths between the objects", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("a restarted edge's publisher admitted before its server object heard of the restart is not taken for a ghost", async () => {
    await beat(edge);
    const s = uniqueStream();
    const key = await createStream(s);
    const next = restarted(edge);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const track = ServerRegistry.prototype.track;
    vi.spyOn(ServerRegistry.prototype, "track").mockImplementationOnce(async function (this: ServerRegistry, ...args: Parameters<ServerRegistry["track"]>) {
      await gate; // the index write of the restarted edge's first hook is slow to arrive
      return track.apply(this, args);
    });
    const first = hook(publish("live", s, key, { ...next, client: "enc00001" }));
    await vi.waitFor(async () => expect((await streamState(s)).live).toBe(true), { interval: 5 });
    const second = await hook(publish("live", s, key, { ...other, client: "enc00002" }));
    release();
    expect(second.status).toBe(403);
    expect(await first).toEqual(ALLOW);
    expect((await streamState(s)).publisher).toMatchObject({ serviceId: next.service, clientId: "enc00001" });
  });

  it("when the server index cannot be written, the admission is undone so no ghost blocks the retry", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    vi.spyOn(ServerRegistry.prototype, "track").mockImplementationOnce(async () => {
      throw new Error("server object overloaded");
    });
    const failed = await hook(publish("live", s, key, { ...edge, client: "enc00001" }));
    expect(failed.status).toBe(500);
    expect((await streamState(s)).live).toBe(false);
    expect(await hook(publish("live", s, key, { ...edge, client: "enc00002" }))).toEqual(ALLOW);
  });

  it("a notice that could not reach a stream is retried by the server's alarm", async () => {
    const { pub, v1, v2 } = await edgeHoldsThreeStreams();
    const applyStatus = StreamObject.prototype.applyStatus;
    let failures = 0;
    // The shard may hold other tests' servers: only the first notice about this edge fails.
    vi.spyOn(StreamObject.prototype, "applyStatus").mockImplementation(function (this: StreamObject, news) {
      if (news.serverId === edge.server && failures++ === 0) throw new Error("stream object unreachable");
      return applyStatus.call(this, news);
    });
    await beat(restarted(edge));
    await runDurableObjectAlarm(serverStub(edge));
    const stillHeld = [(await streamState(pub)).live, (await streamState(v1)).viewers > 0, (await streamState(v2)).viewers > 0];
    expect(stillHeld.filter(Boolean)).toHaveLength(1); // one of the streams missed the notice
    expect((await serverListed(edge)).pendingNotices).toBe(1);
    vi.restoreAllMocks();
    vi.setSystemTime(Date.now() + 5_000); // the failed notice is due again (NOTICE_RETRY_MS)
    await runDurableObjectAlarm(serverStub(edge));
    expect((await streamState(pub)).live).toBe(false);
    expect((await streamState(v1)).viewers).toBe(0);
    expect((await streamState(v2)).viewers).toBe(0);
    expect(await serverListed(edge)).toMatchObject({ sessions: 0, pendingNotices: 0 });
  });

  it("two restarts in quick succession: late hooks of the process replaced meanwhile are refused, not admitted", async () => {
    const { v1 } = await edgeHoldsThreeStreams();
    const free = uniqueStream();
    await createStream(free);
    const second = restarted(edge);
    const third = restarted(edge);
    expect(await hook(play("live", free, { ...second, client: "view0009" }))).toEqual(ALLOW);
    expect(await beat(third)).toEqual(ALLOW);
    expect((await hook(play("live", free, { ...second, client: "view0010" }))).body.code).toBe(4006);
    expect((await hook(publish("live", free, "k", { ...second, client: "view0011" }))).body.code).toBe(4006);
    await deliverNotices(edge);
    expect((await streamState(free)).viewers).toBe(0);
    expect((await streamState(v1)).viewers).toBe(0);
    expect(await serverListed(edge)).toMatchObject({ serviceId: third.service, sessions: 0 });
  });

  it("a viewer shard refuses a start hook of a replaced process that reaches it after the notice did", async () => {
    const { v1 } = await edgeHoldsThreeStreams();
    await beat(restarted(edge));
    await deliverNotices(edge);
    const late = await shardStub(edge).play(playRequest(v1, edge, "late0001"));
    expect(late).toMatchObject({ allow: false, denial: { code: 4006 } });
    expect((await streamState(v1)).viewers).toBe(0);
  });

  it("a stream refuses an on_publish of a replaced process that reaches it after the notice did, its right key notwithstanding", async () => {
    const { pub, key } = await edgeHoldsThreeStreams();
    await beat(restarted(edge));
    await deliverNotices(edge);
    // The late hook's own registry answer ("retired") may be lost or still on its way: the stream refuses by itself.
    const late = await streamStub(pub).publish({ serverId: edge.server, serviceId: edge.service, clientId: "late0001" }, "127.0.0.1", await sha256Hex(key), 10);
    expect(late).toMatchObject({ allow: false, denial: { code: 4006 } });
    expect(await streamState(pub)).toMatchObject({ live: false, publisher: null });
  });
});

describe("GET /admin/servers", () => {
  it("lists each server with its process, device, ip, last heartbeat, liveness and sessions held", async () => {
    await beat(edge);
    await hook(play("live", (await (async () => { const s = uniqueStream(); await createStream(s); return s; })()), { ...edge, client: "view0001" }));
    const listed = await serverListed(edge);
    expect(listed).toEqual({
      serverId: edge.server,
      serviceId: edge.service,
      deviceId: "edge-a",
      ip: "192.0.2.2",
      pid: "7126",
      lastHeartbeat: new Date(T0).toISOString(),
      alive: true,
      sessions: 1,
      duplicateServiceIds: [],
      pendingNotices: 0,
      candidateServiceIds: [],
      api: null,
      apiOk: null,
    });
    // In the order README's GET /admin/servers row shows them.
    expect(Object.keys(listed)).toEqual(["serverId", "serviceId", "deviceId", "ip", "pid", "lastHeartbeat", "alive", "sessions", "duplicateServiceIds", "pendingNotices", "candidateServiceIds", "api", "apiOk"]);
    await beat(restarted(edge));
    await deliverNotices(edge);
    expect(await serverListed(edge)).toMatchObject({ serviceId: expect.not.stringMatching(edge.service), sessions: 0 });
  });

  it("needs the admin token", async () => {
    expect((await admin("GET", "/servers", undefined, "wrong")).status).toBe(401);
  });

  it("?server= lists only the servers named, asking only their shards (the console's publishers' devices)", async () => {
    const third = newEdge();
    for (const e of [edge, other, third]) await beat(e);
    const counted = vi.spyOn(ViewerShard.prototype, "sessionCount");
    const r = await admin("GET", `/servers?server=${edge.server}&server=${third.server}&server=vid-neverseen`);
    expect(r.status).toBe(200);
    expect(r.body.servers.map((x: any) => x.serverId)).toEqual([edge.server, third.server].sort());
    expect(counted).toHaveBeenCalledTimes(2);
    vi.restoreAllMocks();
    expect(r.body.servers.find((x: any) => x.serverId === edge.server)).toEqual(await serverListed(edge));
    const many = Array.from({ length: 101 }, (_, i) => `server=vid-${i}`).join("&");
    expect((await admin("GET", `/servers?${many}`)).status).toBe(400);
  });
});

describe("configuration", () => {
  it("refuses hooks with a clear 500 when SERVER_TIMEOUT_S is not a positive number", async () => {
    const res = await worker.fetch(
      new Request("http://gate.test/hooks/srs/test-hook-secret-32-chars-or-more/heartbeat", { method: "POST", body: JSON.stringify(heartbeat(edge)) }),
      { ...env, SERVER_TIMEOUT_S: "thirty" },
      createExecutionContext(),
    );
    expect(res.status).toBe(500);
    expect(((await res.json()) as any).reason).toMatch(/SERVER_TIMEOUT_S must be a positive number/);
    expect(await serverListed(edge)).toBeUndefined();
  });
});
