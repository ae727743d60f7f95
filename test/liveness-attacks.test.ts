/**
 * Attacks on the liveness rules (issue 10) from a review: late, forged and
 * racing hooks, lost notices, settings typos. Each held after its fix.
 */
import { runDurableObjectAlarm } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import { ServerRegistry } from "../src/server/registry";
import {
  ALLOW,
  admin,
  close,
  createStream,
  hook,
  newEdge,
  play,
  publish,
  stopPlay,
  streamState,
  uniqueStream,
} from "./srs";
import { at, beat, deliverNotices, serverListed, serverStub, shardStub, streamStub, edge, other, twoEdgesOnTheFakeClock } from "./fleet";

const TIMEOUT_MS = 30_000;
const GRACE_MS = 86_400_000;
const RETENTION_MS = 7 * 86_400_000;

twoEdgesOnTheFakeClock();

describe("a start hook from a process never heard of cannot overrule a process that heartbeats", () => {
  it("one delayed on_play from the process that ran before the current one leaves the running edge current and admitted", async () => {
    // The edge runs process `edge.service` and heartbeats. Its previous process (`older`) crashed;
    // one of its on_play requests was still in flight and arrives now.
    const older = { server: edge.server, service: "old00001" };
    await beat(edge);
    const s = uniqueStream();
    const key = await createStream(s);
    expect(await hook(publish("live", s, key, { ...edge, client: "enc00001" }))).toEqual(ALLOW);

    at(1000);
    await hook(play("live", s, { ...older, client: "late0001" })); // late, from a process that is gone

    at(2000);
    await beat(edge); // the running process keeps beating
    // Rule: a late hook of an old process changes nothing for the running process.
    expect(await serverListed(edge)).toMatchObject({ serviceId: edge.service, alive: true });
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    expect(await hook(publish("live", s, key, { ...edge, client: "enc00002" }))).not.toMatchObject({ body: { code: 4006 } });
    await deliverNotices(edge);
    expect(await streamState(s)).toMatchObject({ live: true, publisher: { serviceId: edge.service, clientId: "enc00001" } });

    // SERVER_TIMEOUT_S later, the running process still beating and `older` never having beaten:
    // `older` was a late (or forged) hook. Its session ends, and its further hooks are refused.
    at(31_500);
    await beat(edge);
    await runDurableObjectAlarm(serverStub(edge));
    await deliverNotices(edge);
    expect((await streamState(s)).viewers).toBe(1);
    expect((await hook(play("live", s, { ...older, client: "late0002" }))).body.code).toBe(4006);
    expect(await serverListed(edge)).toMatchObject({ serviceId: edge.service, alive: true, sessions: 2 });
  });

  it("a restarted process's first start hook, before its first heartbeat, is admitted, and its heartbeat completes the restart", async () => {
    await beat(edge);
    const s = uniqueStream();
    const key = await createStream(s, { maxViewers: 2 });
    expect(await hook(publish("live", s, key, { ...edge, client: "enc00001" }))).toEqual(ALLOW);
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    const next = { server: edge.server, service: newEdge().service };
    at(2000);
    // SRS restarted; a viewer reconnects before the new process's first heartbeat.
    expect(await hook(play("live", s, { ...next, client: "view0002" }))).toEqual(ALLOW);
    // The encoder's republish waits for that heartbeat (at most one interval): the old publisher still counts.
    expect((await hook(publish("live", s, key, { ...next, client: "enc00002" }))).body.code).toBe(4004);
    at(5000);
    await beat(next);
    expect(await hook(publish("live", s, key, { ...next, client: "enc00002" }))).toEqual(ALLOW);
    await deliverNotices(edge);
    expect(await streamState(s)).toMatchObject({ live: true, publisher: { serviceId: next.service, clientId: "enc00002" }, viewers: 1 });
  });
});

describe("with the hook secret, one forged hook cannot lock an edge out", () => {
  it("an on_play with the victim's server_id and a made-up service_id leaves the victim's process current", async () => {
    await beat(edge);
    const s = uniqueStream();
    await createStream(s);
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    const res = await hook(play("live", uniqueStream("nosuch"), { server: edge.server, service: "forged01", client: "x" }));
    expect(res.body.code).toBe(4001); // unknown stream: refused, and yet...
    await beat(edge);
    await deliverNotices(edge);
    expect(await hook(play("live", s, { ...edge, client: "view0002" }))).toEqual(ALLOW);
    expect((await streamState(s)).viewers, "the victim's viewers").toBe(2);
  });
});

describe("the server index keeps an entry for every session a stream holds", () => {
  it("if hooks of one client ever overlapped (SRS sends them one at a time), the ghost left behind is ended by hand", async () => {
    await beat(edge);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);

    // on_stop reaches the stream, its index delete is slow; the same client id plays again meanwhile.
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const forget = ServerRegistry.prototype.forget;
    vi.spyOn(ServerRegistry.prototype, "forget").mockImplementationOnce(async function (this: ServerRegistry, ...args: Parameters<ServerRegistry["forget"]>) {
      await gate;
      return forget.apply(this, args);
    });
    const stopping = hook(stopPlay("live", s, { ...edge, client: "view0001" }));
    await vi.waitFor(async () => expect((await streamState(s)).viewers).toBe(0), { interval: 5 });
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    release();
    expect(await stopping).toEqual(ALLOW);
    expect((await streamState(s)).viewers).toBe(1);

    // The stream still knows the session: an operator ends it there, and the slot is free.
    const ended = await admin("DELETE", `/streams/live/${s}/sessions?server=${edge.server}&client=view0001`);
    expect(ended.body.ended).toHaveLength(1);
    expect(await hook(play("live", s, { ...other, client: "view0002" })), "the freed slot").toEqual(ALLOW);
  });

  it("a replay of the same client right after SESSION_GRACE_S ended its session keeps its index entry when the end notice lands", async () => {
    await beat(edge);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);

    // A day of silence. The stream's own sweep asks the registry first: grace is over, the
    // session ends at the stream, and the registry's end notice is queued (not yet delivered).
    at(GRACE_MS + 60_000);
    expect(await runDurableObjectAlarm(shardStub(edge))).toBe(true);
    expect(await streamState(s)).toMatchObject({ viewers: 0, suspendedViewers: 0 });

    // The edge is back, and the same client plays again: a new session, admitted and counted.
    at(GRACE_MS + 61_000);
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    expect((await streamState(s)).viewers, "viewers after the replay").toBe(1);
    await deliverNotices(edge);
    expect((await streamState(s)).viewers, "viewers after the notices").toBe(1);
    expect(await hook(close({ ...edge, client: "view0001" }))).toEqual(ALLOW);
    expect((await streamState(s)).viewers, "viewers after on_close").toBe(0);
    expect(await hook(play("live", s, { ...other, client: "view0002" })), "the freed slot").toEqual(ALLOW);
  });

  it("an operator's DELETE …/sessions racing a replay of that client leaves the new session indexed", async () => {
    await beat(edge);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const forgetSessions = ServerRegistry.prototype.forgetSessions;
    vi.spyOn(ServerRegistry.prototype, "forgetSessions").mockImplementationOnce(async function (this: ServerRegistry, ...args: Parameters<ServerRegistry["forgetSessions"]>) {
      await gate;
      return forgetSessions.apply(this, args);
    } as never);
    const deleting = admin("DELETE", `/streams/live/${s}/sessions`);
    await vi.waitFor(async () => expect((await streamState(s)).viewers).toBe(0), { interval: 5 });
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    release();
    expect((await deleting).status).toBe(200);
    expect((await streamState(s)).viewers).toBe(1);
    // The viewer's session is live at the stream; ending every session of its server must find it.
    const res = await admin("DELETE", `/servers/${edge.server}/sessions`);
    expect(res.body.ended, "ended by DELETE /admin/servers/{id}/sessions").toHaveLength(1);
    expect((await streamState(s)).viewers).toBe(0);
    expect(await hook(close({ ...edge, client: "view0001" }))).toEqual(ALLOW);
    expect((await streamState(s)).viewers, "viewers after on_close too").toBe(0);
  });
});

describe("a stream that resumed a process on its own word is corrected by the registry", () => {
  it("a start hook of a suspended process while its registry shard is unreachable does not leave its ghosts counting", async () => {
    await beat(edge);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    at(TIMEOUT_MS + 1000);
    expect(await runDurableObjectAlarm(shardStub(edge))).toBe(true); // the sweep: edge's viewer suspended
    expect(await streamState(s)).toMatchObject({ viewers: 0, suspendedViewers: 1 });

    // One last hook of the (dying) edge arrives while its registry shard is briefly unreachable.
    const down = () => {
      throw new Error("registry overloaded");
    };
    const liveness = ServerRegistry.prototype.liveness;
    let livenessFailures = 0;
    vi.spyOn(ServerRegistry.prototype, "liveness").mockImplementation(function (this: ServerRegistry, ...args: Parameters<ServerRegistry["liveness"]>) {
      if (livenessFailures++ < 2) down(); // down for the whole hook
      return liveness.apply(this, args);
    });
    // The shard takes the hook's word that the process is back: view0001 counts again and fills the cap.
    expect((await hook(play("live", s, { ...edge, client: "view0002" }))).body.code).toBe(4005);
    vi.restoreAllMocks();

    // The edge is gone for good. Its sessions must neither count nor block.
    at(TIMEOUT_MS + 120_000);
    await runDurableObjectAlarm(serverStub(edge));
    await runDurableObjectAlarm(shardStub(edge));
    expect(await serverListed(edge)).toMatchObject({ alive: false });
    expect(await hook(play("live", s, { ...other, client: "view0003" }))).toEqual(ALLOW);
    expect(await streamState(s)).toMatchObject({ viewers: 1, suspendedViewers: 1 });
  });
});

describe("the publisher holding the stream keeps it when another returns", () => {
  it("B holds after its return; when A (admitted while B was silent) returns, B keeps the stream and A is a logged conflict", async () => {
    const a = edge;
    const b = other;
    const errors: string[] = [];
    const consoleError = console.error;
    vi.spyOn(console, "error").mockImplementation((...args: unknown[]) => {
      errors.push(args.map(String).join(" "));
      consoleError(...args);
    });
    await beat(a);
    await beat(b);
    const s = uniqueStream();
    const key = await createStream(s);
    expect(await hook(publish("live", s, key, { ...b, client: "encB0001" }))).toEqual(ALLOW);

    // B goes silent; A keeps beating and takes the stream.
    at(20_000);
    await beat(a);
    at(31_000);
    expect(await hook(publish("live", s, key, { ...a, client: "encA0001" }))).toEqual(ALLOW);

    // Now A goes silent and B comes back: B (which never stopped) holds the stream.
    at(45_000);
    await beat(b);
    at(62_000);
    await beat(b);
    await runDurableObjectAlarm(serverStub(a));
    await runDurableObjectAlarm(serverStub(b));
    await deliverNotices(a);
    await deliverNotices(b);
    await runDurableObjectAlarm(streamStub(s));
    expect(await streamState(s)).toMatchObject({ live: true, publisher: { clientId: "encB0001", state: "live" } });

    // A comes back: it is the returning one, B holds the stream.
    at(63_000);
    await beat(a);
    await deliverNotices(a);
    const state = await streamState(s);
    expect(errors.filter((e) => e.includes("holder changed on resume"))).toEqual([]);
    expect(state).toMatchObject({
      publisher: { clientId: "encB0001", state: "live" },
      conflicts: [{ clientId: "encA0001", state: "conflict" }],
    });
    // Whoever ends up in conflict, the decision log must say so (README: "the decision log records a conflict line").
    const events = (await admin("GET", `/streams/live/${s}/events`)).body.events;
    const inConflict = state.conflicts.map((p: any) => p.clientId);
    for (const client of inConflict) {
      expect(events.some((e: any) => e.decision === "conflict" && e.client === client), `conflict line for ${client}`).toBe(true);
    }
  });
});

describe("a duplicate server_id never flips the current process, also after SERVER_RETENTION_S", () => {
  it("the retired duplicate stays retired and the running process keeps working", async () => {
    const b = { server: edge.server, service: newEdge().service };
    await beat(edge);
    at(1000);
    await beat(b); // b replaces edge's process; edge keeps running: two SRS share a server_id
    const s = uniqueStream();
    await createStream(s);
    expect(await hook(play("live", s, { ...b, client: "curr0001" }))).toEqual(ALLOW);
    for (const day of [1, 3, 5, 6]) {
      at(day * 86_400_000 + 5000);
      await beat(b);
      await beat(edge); // refused, reported as duplicate
      await runDurableObjectAlarm(serverStub(edge)); // the shard's alarm runs every 30 s in real life
    }
    expect(await serverListed(edge)).toMatchObject({ serviceId: b.service, duplicateServiceIds: [edge.service] });
    at(RETENTION_MS + 60_000);
    await beat(b);
    await runDurableObjectAlarm(serverStub(edge));
    await beat(edge);
    await beat(b);
    // Rule: a retired service_id never becomes current again; duplicates are not flip-flopped.
    expect(await serverListed(edge)).toMatchObject({ serviceId: b.service, duplicateServiceIds: [edge.service] });
    expect(await hook(play("live", s, { ...b, client: "curr0002" }))).toEqual(ALLOW);
    await deliverNotices(edge);
    // b beat only every other day here, so SESSION_GRACE_S ended curr0001: its new viewer is the one.
    expect((await streamState(s)).viewers, "b's viewers").toBe(1);
  });
});

describe("a retired service_id that stays silent longer than SERVER_RETENTION_S and comes back is still retired", () => {
  it("the running process keeps its server and its viewers", async () => {
    const b = { server: edge.server, service: newEdge().service };
    await beat(edge);
    at(1000);
    await beat(b); // b replaces edge's process
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    expect(await hook(play("live", s, { ...b, client: "curr0001" }))).toEqual(ALLOW);
    // b heartbeats all along; the old process (a duplicate SRS with the same server_id) is silent for 8 days.
    for (let t = 60_000; t <= RETENTION_MS + 86_400_000; t += 6 * 3600_000) {
      at(t);
      await beat(b);
      await runDurableObjectAlarm(serverStub(edge));
    }
    await beat(edge); // the duplicate is back
    await beat(b);
    await deliverNotices(edge);
    expect(await serverListed(edge)).toMatchObject({ serviceId: b.service });
    expect(await streamState(s)).toMatchObject({ viewers: 1 });
    expect((await hook(play("live", s, { ...edge, client: "dupl0001" }))).body.code).toBe(4006);
  });
});

describe("registry rows of servers that never heartbeat are forgotten after SERVER_RETENTION_S", () => {
  it("hooks on never-created streams from server_ids that never heartbeat leave no server row for ever", async () => {
    const scanner = newEdge();
    const s = uniqueStream("never");
    expect((await hook(play("live", s, { ...scanner, client: "scan0001" }))).status).toBe(403);
    expect((await hook(publish("live", s, "guess", { ...scanner, client: "scan0002" }))).status).toBe(403);
    at(RETENTION_MS * 2);
    await runDurableObjectAlarm(serverStub(scanner));
    // Rule: hooks on never-created streams leave no durable state; a server without sessions does not stay forever.
    expect(await serverListed(scanner)).toBeUndefined();
  });

  it("a server forgotten and heard from again numbers its news above what it sent before (streams and shards ignore older news)", async () => {
    const edge = newEdge();
    expect(await beat(edge)).toEqual(ALLOW);
    const news = async () => (await serverStub(edge).liveness([{ serverId: edge.server, serviceId: edge.service }]))[0];
    at(TIMEOUT_MS + 1_000);
    await runDurableObjectAlarm(serverStub(edge)); // silent: suspended, the next news
    const before = await news();
    expect(before.status).toBe("suspended");
    at(RETENTION_MS * 2);
    await runDurableObjectAlarm(serverStub(edge));
    expect(await serverListed(edge)).toBeUndefined(); // forgotten
    expect(await beat(edge)).toEqual(ALLOW); // the same process, heard from again
    const after = await news();
    expect(after.status).toBe("live");
    expect(after.seq).toBeGreaterThan(before.seq);
  });
});
