import { env } from "cloudflare:workers";
import { createExecutionContext, runDurableObjectAlarm } from "cloudflare:test";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import worker from "../src/index";
import { ServerRegistry } from "../src/server/registry";
import { serverRegistry } from "../src/stubs";
import { StreamObject } from "../src/stream/object";
import {
  admin,
  close,
  createStream,
  type Edge,
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

const ALLOW = { status: 200, body: { code: 0 } };
const T0 = new Date("2026-11-25T12:00:00Z").getTime();
const TIMEOUT_MS = 30_000; // SERVER_TIMEOUT_S in wrangler.toml

const serverStub = (edge: Edge) => serverRegistry(env, edge.server);
const streamStub = (stream: string) => env.STREAM.get(env.STREAM.idFromName(`__defaultVhost__/live/${stream}`));
const beat = (edge: Edge) => hook(heartbeat(edge), undefined, "/heartbeat");
const restarted = (edge: Edge): Edge => ({ server: edge.server, service: newEdge().service });
const at = (ms: number) => vi.setSystemTime(T0 + ms);

async function serverListed(edge: Edge) {
  const list = await admin("GET", "/servers");
  return list.body.servers.find((s: any) => s.serverId === edge.server);
}

let edge: Edge;
let other: Edge;
beforeEach(() => {
  vi.useFakeTimers({ toFake: ["Date"] });
  at(0);
  edge = newEdge();
  other = newEdge();
});
afterEach(() => {
  vi.useRealTimers();
});

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

  it("the server's alarm ends a dead edge's sessions everywhere so the counts operators see converge", async () => {
    await beat(edge);
    const { pub, v1, v2 } = await edgeHoldsThreeStreams();
    at(TIMEOUT_MS + 1000);
    await runDurableObjectAlarm(serverStub(edge));
    expect((await streamState(pub)).live).toBe(false);
    expect((await streamState(v1)).viewers).toBe(0);
    expect((await streamState(v2)).viewers).toBe(0);
    expect(await serverListed(edge)).toMatchObject({ alive: false, sessions: 0 });
  });

  it("the stream's own alarm prunes a dead edge's viewers too", async () => {
    await beat(edge);
    const { v1 } = await edgeHoldsThreeStreams();
    at(TIMEOUT_MS + 1000);
    expect(await runDurableObjectAlarm(streamStub(v1))).toBe(true);
    expect((await streamState(v1)).viewers).toBe(0);
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

  it("a dead server that speaks again is alive again, and its new sessions count", async () => {
    await beat(edge);
    const { v2 } = await edgeHoldsThreeStreams();
    at(TIMEOUT_MS + 1000);
    await runDurableObjectAlarm(serverStub(edge));
    expect((await streamState(v2)).viewers).toBe(0);

    at(TIMEOUT_MS + 5000);
    expect(await beat(edge)).toEqual(ALLOW);
    expect((await serverListed(edge)).alive).toBe(true);
    expect(await hook(play("live", v2, { ...edge, client: "view0005" }))).toEqual(ALLOW);
    at(TIMEOUT_MS + 10_000);
    const refused = await hook(play("live", v2, { ...other, client: "view0006" }));
    expect(refused.status).toBe(403);
    expect((await streamState(v2)).viewers).toBe(1);
  });

  it("a hook from a dead server revives it too", async () => {
    await beat(edge);
    const { v2 } = await edgeHoldsThreeStreams();
    at(TIMEOUT_MS + 1000);
    await runDurableObjectAlarm(serverStub(edge));
    expect((await serverListed(edge)).alive).toBe(false);
    expect(await hook(play("live", v2, { ...edge, client: "view0005" }))).toEqual(ALLOW);
    expect((await serverListed(edge)).alive).toBe(true);
    expect((await streamState(v2)).viewers).toBe(1);
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

  it("a fence that could not reach a stream is retried by the server's alarm", async () => {
    const { pub, v1 } = await edgeHoldsThreeStreams();
    vi.spyOn(StreamObject.prototype, "endSessionsOf").mockImplementationOnce(() => {
      throw new Error("stream object unreachable");
    });
    await beat(restarted(edge));
    const stillHeld = [(await streamState(pub)).live, (await streamState(v1)).viewers > 0];
    expect(stillHeld.filter(Boolean)).toHaveLength(1); // one of the streams missed the fence
    vi.restoreAllMocks();
    await runDurableObjectAlarm(serverStub(edge));
    expect((await streamState(pub)).live).toBe(false);
    expect((await streamState(v1)).viewers).toBe(0);
    expect((await serverListed(edge)).sessions).toBe(0);
  });

  it("two restarts in quick succession: the hook of the process replaced meanwhile is refused, not admitted", async () => {
    const { v1 } = await edgeHoldsThreeStreams();
    const free = uniqueStream();
    await createStream(free);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const endSessionsOf = StreamObject.prototype.endSessionsOf;
    // The fan-out for the first restart is slow (the RPC awaits whatever the method returns).
    const slow = async function (this: StreamObject, ...args: Parameters<StreamObject["endSessionsOf"]>) {
      await gate;
      return endSessionsOf.apply(this, args);
    };
    vi.spyOn(StreamObject.prototype, "endSessionsOf").mockImplementationOnce(slow as unknown as StreamObject["endSessionsOf"]);
    const second = restarted(edge);
    const third = restarted(edge);
    const fromSecond = hook(play("live", free, { ...second, client: "view0009" }));
    await new Promise((r) => setTimeout(r, 20));
    expect(await beat(third)).toEqual(ALLOW);
    release();
    expect((await fromSecond).body.code).toBe(4006);
    expect((await streamState(free)).viewers).toBe(0);
    expect((await streamState(v1)).viewers).toBe(0);
    expect(await serverListed(edge)).toMatchObject({ serviceId: third.service, sessions: 0 });
  });

  it("a stream refuses a start hook of a replaced process that reaches it after the fence did", async () => {
    const { v1 } = await edgeHoldsThreeStreams();
    await beat(restarted(edge));
    const late = await streamStub(v1).play({ serverId: edge.server, serviceId: edge.service, clientId: "late0001" }, "127.0.0.1", { ok: true }, 10);
    expect(late).toMatchObject({ allow: false, denial: { code: 4006 } });
    expect((await streamState(v1)).viewers).toBe(0);
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
    });
    await beat(restarted(edge));
    expect(await serverListed(edge)).toMatchObject({ serviceId: expect.not.stringMatching(edge.service), sessions: 0 });
  });

  it("needs the admin token", async () => {
    expect((await admin("GET", "/servers", undefined, "wrong")).status).toBe(401);
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
