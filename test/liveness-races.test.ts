/**
 * Attacks on the liveness rules (issue 10) from a review: late, forged and
 * racing hooks, lost notices, settings typos. Each held after its fix.
 */
import { env } from "cloudflare:workers";
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { ServerRegistry } from "../src/server/registry";
import type { StreamObject } from "../src/stream/object";
import {
  ALLOW,
  admin,
  createStream,
  type Edge,
  hook,
  newEdge,
  play,
  publish,
  stopPlay,
  streamState,
  uniqueStream,
} from "./srs";
import { at, beat, deliverNotices, gate, serverListed, serverStub, shardStub, streamStub, useFakeClock } from "./fleet";

const TIMEOUT_MS = 30_000;

let edge: Edge;
let other: Edge;
let third: Edge;
useFakeClock();
beforeEach(() => {
  edge = newEdge();
  other = newEdge();
  third = newEdge();
});

/**
 * The registry's first answer that says `edge` is suspended (to a stream's or a viewer shard's liveness question)
 * is computed at once but held on its way back until `deliver()`: news older than whatever reaches the asker meanwhile.
 */
function suspendedAnswerHeld(edge: Edge): { answered: Promise<void>; deliver: () => void } {
  const answered = gate();
  const deliver = gate();
  let held = false;
  const real = ServerRegistry.prototype.liveness;
  vi.spyOn(ServerRegistry.prototype, "liveness").mockImplementation(async function (this: ServerRegistry, ...args: Parameters<ServerRegistry["liveness"]>) {
    const answer = await real.apply(this, args);
    if (!held && answer.some((a) => a.serverId === edge.server && a.status === "suspended")) {
      held = true;
      answered.open();
      await deliver.wait;
    }
    return answer;
  });
  return { answered: answered.wait, deliver: deliver.open };
}

describe("a typo in SESSION_GRACE_S does not keep registry shards from starting", () => {
  it("the registry's constructor survives a malformed SESSION_GRACE_S", async () => {
    // README: a malformed SESSION_GRACE_S is logged and the default applies (test/settings.test.ts runs the
    // paths); the constructor needs it for every object start, whatever the message.
    await beat(edge); // a live server in the shard, no notices pending
    const result = await runInDurableObject(serverStub(edge), async (registry: ServerRegistry) => {
      // What the constructor runs inside blockConcurrencyWhile (registry.ts: `const next = this.nextWake(Date.now())`),
      // with the same storage and SESSION_GRACE_S mistyped.
      const probe = Object.create(registry) as any;
      probe.env = { ...env, SESSION_GRACE_S: "1 day" };
      try {
        probe.nextWake(Date.now());
        return "constructed";
      } catch (err) {
        return `constructor would fail: ${String(err)}`;
      }
    });
    // A heartbeat of a live server does not need SESSION_GRACE_S: starting the object must not fail on it.
    expect(result).toBe("constructed");
  });
});

describe("a guesser rotating spoofed ips cannot flush the decision log", () => {
  it("forged play tokens from rotating (X-Forwarded-For) ips do not push real decisions out of the log", async () => {
    const s = uniqueStream();
    const key = await createStream(s, { playAuth: "token" });
    expect(await hook({ ...publish("live", s, key, { ...edge, client: "enc00001" }), ip: "198.51.100.20" })).toEqual(ALLOW);
    const forged = "v1.AAAA.1900000000.AAAA";
    for (let i = 0; i < 100; i++) {
      const res = await hook({ ...play("live", s, { ...edge, client: `flv${i}` }), ip: `203.0.113.${i}`, param: `?token=${forged}` });
      expect(res.status).toBe(403);
    }
    const events = (await admin("GET", `/streams/live/${s}/events`)).body.events;
    // README: "an ip over the limit gets its answer without a storage write and without a log entry, so a
    // guesser cannot flush real decisions out of the 100-entry log".
    expect(events.some((e: any) => e.action === "on_publish" && e.client === "enc00001")).toBe(true);
  });
});

describe("a notice left in the outbox is not applied to a later incarnation of the process's sessions", () => {
  it("a viewer of a live server, admitted after an operator ended its ghost, is not shown suspended once the alarms ran", async () => {
    await beat(edge);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 5 });
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    at(TIMEOUT_MS + 1000);
    expect(await runDurableObjectAlarm(shardStub(edge))).toBe(true); // the viewer shard's sweep: edge is silent (notice queued)
    // An operator ends the (HLS) ghost by hand while the edge is silent.
    expect((await admin("DELETE", `/streams/live/${s}/sessions?server=${edge.server}&client=view0001`)).body.ended).toHaveLength(1);
    at(TIMEOUT_MS + 2000);
    expect(await hook(play("live", s, { ...edge, client: "view0002" }))).toEqual(ALLOW); // the edge is back
    expect(await streamState(s)).toMatchObject({ viewers: 1, suspendedViewers: 0 });
    await deliverNotices(edge);
    expect(await serverListed(edge)).toMatchObject({ alive: true });
    // Rule: once the alarms have run, the admin state is the truth.
    expect(await streamState(s)).toMatchObject({ viewers: 1, suspendedViewers: 0 });
  });
});

describe("races around heals and suspended holders", () => {
  it("two publishers racing for a stream whose holder is suspended: exactly one gets it", async () => {
    await beat(edge);
    const s = uniqueStream();
    const key = await createStream(s);
    expect(await hook(publish("live", s, key, { ...edge, client: "enc00001" }))).toEqual(ALLOW);
    at(TIMEOUT_MS + 1000);
    const [b, c] = await Promise.all([
      hook(publish("live", s, key, { ...other, client: "enc00002" })),
      hook(publish("live", s, key, { ...third, client: "enc00003" })),
    ]);
    expect([b.status, c.status].sort()).toEqual([200, 403]);
    const state = await streamState(s);
    expect(state.live).toBe(true);
    expect([state.publisher, ...state.conflicts].filter((p: any) => p.state === "live")).toHaveLength(1);
  });

  it("a heal racing a new publisher never leaves two live publishers", async () => {
    for (let round = 0; round < 5; round++) {
      const a = newEdge();
      const b = newEdge();
      at(round * 1_000_000);
      await beat(a);
      const s = uniqueStream();
      const key = await createStream(s);
      expect(await hook(publish("live", s, key, { ...a, client: "enc00001" }))).toEqual(ALLOW);
      at(round * 1_000_000 + TIMEOUT_MS + 1000);
      await runDurableObjectAlarm(streamStub(s));
      const [, second] = await Promise.all([beat(a), hook(publish("live", s, key, { ...b, client: "enc00002" }))]);
      await deliverNotices(a);
      const state = await streamState(s);
      const live = [state.publisher, ...state.conflicts].filter((p: any) => p && p.state === "live");
      expect(live).toHaveLength(1);
      if (second.status === 200) expect(state.publisher.clientId).toBe("enc00002");
      else expect(state.publisher.clientId).toBe("enc00001");
    }
  });

  it("a liveness answer the registry gave before a heal, arriving at the stream after the heal's notice, does not suspend the healed publisher again", async () => {
    await beat(edge);
    const s = uniqueStream();
    const key = await createStream(s);
    expect(await hook(publish("live", s, key, { ...edge, client: "enc00001" }))).toEqual(ALLOW);
    at(TIMEOUT_MS + 1000); // edge silent: a second publisher's refusal would rest on a suspended holder
    // The registry's answer to the stream's question (edge: suspended) is slow on its way back.
    const stale = suspendedAnswerHeld(edge);
    const second = hook(publish("live", s, key, { ...other, client: "enc00002" }));
    await stale.answered;
    // Meanwhile the edge is heard from again, and the registry's notice of it reaches the stream first.
    await beat(edge);
    await deliverNotices(edge);
    stale.deliver();
    // The older answer is older news: the edge's publisher holds the stream, the second one is refused.
    expect((await second).body.code).toBe(4004);
    vi.restoreAllMocks();
    expect(await streamState(s)).toMatchObject({ live: true, publisher: { clientId: "enc00001", state: "live" }, conflicts: [] });
  });

  it("a liveness answer the registry gave before a heal, arriving at the viewer shard after the heal's notice, does not suspend the healed viewer again", async () => {
    await beat(edge);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    at(TIMEOUT_MS + 1000); // edge silent: a viewer elsewhere asks for the slot its viewer holds
    // The stream has the edge's shard check its server with the registry; the answer (suspended) is slow on its way back.
    const stale = suspendedAnswerHeld(edge);
    const second = hook(play("live", s, { ...other, client: "view0002" }));
    await stale.answered;
    // Meanwhile the edge is heard from again, and the registry's notice of it reaches its shard first.
    await beat(edge);
    await deliverNotices(edge);
    stale.deliver();
    // The older answer is older news: the edge's viewer holds the only slot, the second viewer is refused.
    expect((await second).body.code).toBe(4005);
    vi.restoreAllMocks();
    expect(await streamState(s)).toMatchObject({ viewers: 1, suspendedViewers: 0 });
  });

  it("a cap of 3 with 3 suspended viewers admits exactly 3 of 20 concurrent viewers, and none after the heal", async () => {
    await beat(edge);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 3 });
    for (let i = 0; i < 3; i++) expect(await hook(play("live", s, { ...edge, client: `old${i}` }))).toEqual(ALLOW);
    at(TIMEOUT_MS + 1000);
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => hook(play("live", s, { ...other, client: `new${i}` }))));
    expect(answers.filter((r) => r.status === 200)).toHaveLength(3);
    expect(await beat(edge)).toEqual(ALLOW);
    expect((await hook(play("live", s, { ...other, client: "late0001" }))).body.code).toBe(4005);
    await deliverNotices(edge);
    expect(await streamState(s)).toMatchObject({ viewers: 6, suspendedViewers: 0 });
  });

  it("HLS viewers (name.m3u8) are counted, suspended and resumed on the stream's name", async () => {
    await beat(edge);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    expect(await hook(play("live", `${s}.m3u8`, { ...edge, client: "hlsctx01" }))).toEqual(ALLOW);
    at(TIMEOUT_MS + 1000);
    expect(await hook(play("live", `${s}.m3u8`, { ...other, client: "hlsctx02" }))).toEqual(ALLOW);
    expect(await beat(edge)).toEqual(ALLOW);
    await deliverNotices(edge);
    expect(await streamState(s)).toMatchObject({ viewers: 2, suspendedViewers: 0 });
    expect(await hook(stopPlay("live", `${s}.m3u8`, { ...edge, client: "hlsctx01" }))).toEqual(ALLOW);
    expect(await hook(stopPlay("live", `${s}.m3u8`, { ...edge, client: "hlsctx01" }))).toEqual(ALLOW); // duplicate HLS stop
    expect((await streamState(s)).viewers).toBe(1);
  });

  it("a late on_stop of a retired process ends only its own session and moves no epoch", async () => {
    await beat(edge);
    const s = uniqueStream();
    await createStream(s);
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    const next = { server: edge.server, service: newEdge().service };
    await beat(next);
    expect(await hook(play("live", s, { ...next, client: "view0001" }))).toEqual(ALLOW); // same client id, new process
    expect(await hook(stopPlay("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW); // late stop of the old one
    await deliverNotices(edge);
    expect(await serverListed(edge)).toMatchObject({ serviceId: next.service, sessions: 1 });
    expect((await streamState(s)).viewers).toBe(1);
  });
});

describe("the brute-force limit never refuses a correct key or a valid token", () => {
  it("an ip over the limit for wrong keys and forged tokens still publishes with the key and plays with a valid token", async () => {
    const s = uniqueStream();
    const key = await createStream(s, { playAuth: "token" });
    const token = (await admin("POST", `/streams/live/${s}/tokens`, { ttl: 600 })).body.token as string;
    const ip = "192.0.2.77";
    for (let i = 0; i < 15; i++) await hook({ ...publish("live", s, `wrong-${i}`, { ...edge, client: `p${i}` }), ip });
    for (let i = 0; i < 15; i++) await hook({ ...play("live", s, { ...edge, client: `v${i}` }), ip, param: `?token=${token.slice(0, -2)}xx` });
    expect((await hook({ ...publish("live", s, "wrong", { ...edge, client: "p99" }), ip })).body.code).toBe(4029);
    expect(await hook({ ...publish("live", s, key, { ...edge, client: "enc00001" }), ip })).toEqual(ALLOW);
    expect(await hook({ ...play("live", s, { ...edge, client: "view0001" }), ip, param: `?token=${token}` })).toEqual(ALLOW);
    // ... also through a spoofed list in the ip field, which is cleaned to its first element.
    expect(await hook({ ...play("live", s, { ...edge, client: "view0002" }), ip: `${ip}, 10.0.0.1`, param: `?token=${token}` })).toEqual(ALLOW);
  });

  it("a rate-limited guess writes nothing to the stream's object", async () => {
    const s = uniqueStream();
    await createStream(s);
    const ip = "192.0.2.78";
    for (let i = 0; i < 10; i++) await hook({ ...publish("live", s, `wrong-${i}`, { ...edge, client: `p${i}` }), ip });
    const before = await runInDurableObject(streamStub(s), async (_: StreamObject, state: DurableObjectState) => state.storage.sql.databaseSize);
    for (let i = 0; i < 30; i++) expect((await hook({ ...publish("live", s, `more-${i}`, { ...edge, client: `q${i}` }), ip })).body.code).toBe(4029);
    const after = await runInDurableObject(streamStub(s), async (_: StreamObject, state: DurableObjectState) => state.storage.sql.databaseSize);
    expect(after).toBe(before);
  });
});

describe("SESSION_GRACE_S ends only the sessions from before the silence", () => {
  it("a new viewer of a server returning after SESSION_GRACE_S, admitted by its shard before the registry's notices arrive, keeps counting", async () => {
    await beat(edge);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 2 });
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    at(86_400_000 + 5000); // a day of silence, and no alarm has run; the edge comes back with a new viewer
    expect(await hook(play("live", s, { ...edge, client: "view0002" }))).toEqual(ALLOW);
    expect((await streamState(s)).viewers).toBe(2);
    expect(await beat(edge)).toEqual(ALLOW); // its heartbeat: grace is over for what came before the silence
    await deliverNotices(edge);
    // view0001 is over (grace); view0002 is a new session of the returning process, admitted and connected.
    expect(await streamState(s)).toMatchObject({ viewers: 1, suspendedViewers: 0 });
  });
});
