/**
 * Deterministic examples found by test/model-operator.test.ts and test/model-seats-operator.test.ts (operator actions interleaved with a fleet
 * that restarts, retries and loses hooks).
 */
import { env } from "cloudflare:workers";
import { evictDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { viewerShard } from "../src/object-access";
import { admin, hook, newEdge, play, publish, stopPlay, streamState, type Edge } from "./srs";
import { ALLOW } from "./fake-srs";
import { at, beat, restarted, streamAtZero, useFakeClock } from "./fleet";

/** A stream (`policy`) and an edge that heartbeats, at time 0; with `viewer`, that viewer admitted on it at 1 ms. */
async function edgeOn(policy: Record<string, unknown>, viewer?: string): Promise<{ s: string; a: Edge }> {
  const s = await streamAtZero(policy);
  const a = newEdge();
  expect(await beat(a)).toEqual(ALLOW);
  if (viewer) {
    at(1);
    expect(await hook(play("live", s, { ...a, client: viewer }))).toEqual(ALLOW);
  }
  return { s, a };
}

describe("DELETE /admin/servers/{id}/sessions answers only the sessions it ended", () => {
  useFakeClock();

  // Model sequence: [publish s0 c0, restart s0, late on_publish of s0's old process c0, endServer s0]. The restart's
  // notice had not reached the stream yet (the registry's alarm); the late hook (4006) made the stream end the old
  // process's publisher, but its index entry stayed until the notice: the operator's end found the entry, the stream
  // ended nothing (0), and the call answered that publisher as ended by the operator (with SRS_API_URL: a kick and a
  // session.ended_by_operator event for a session a restart had ended).
  it("must not happen (fixed): a publisher a restart had ended, its index entry not yet cleaned, is answered as ended by the operator", async () => {
    const { s, a } = await edgeOn({});
    const key = (await admin("PUT", `/streams/live/${s}`, { rotateKey: true })).body.publishKey;
    at(1);
    expect(await hook(publish("live", s, key, { ...a, client: "enc00001" }))).toEqual(ALLOW);
    at(2);
    const b = restarted(a);
    expect(await beat(b)).toEqual(ALLOW);
    at(3);
    // A late on_publish of the replaced process: refused, and the stream lets that publisher go.
    expect((await hook(publish("live", s, key, { ...a, client: "enc00001" }))).body.code).toBe(4006);
    expect((await streamState(s)).publisher).toBeNull();
    at(4);
    const res = await admin("DELETE", `/servers/${a.server}/sessions`);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ serverId: a.server, ended: [], remaining: 0 });
  });

  it("holds: a publisher the stream still holds is answered as ended, and its stream lets it go", async () => {
    const { s, a } = await edgeOn({});
    const key = (await admin("PUT", `/streams/live/${s}`, { rotateKey: true })).body.publishKey;
    at(1);
    expect(await hook(publish("live", s, key, { ...a, client: "enc00001" }))).toEqual(ALLOW);
    at(2);
    const res = await admin("DELETE", `/servers/${a.server}/sessions`);
    expect(res.body).toMatchObject({ ended: [{ stream: `__defaultVhost__/live/${s}`, role: "publisher", serviceId: a.service, clientId: "enc00001" }], remaining: 0 });
    expect((await streamState(s)).publisher).toBeNull();
  });
});

describe("a cap lowered below the viewers of a server that was silent, then restarted", () => {
  useFakeClock();

  // Model sequence: [play s2 c0 (cap 2), silence 31 s, PUT maxViewers null, heartbeat s2, PUT maxViewers 0, restart s2].
  // README "Flash crowds", Invariant: the viewers that count plus the slots leased but unused are at most maxViewers
  // (a lowered cap keeps the connected viewers, and no new one is admitted until the count is under it). Here the
  // viewer the cap of 0 kept ends with its process (the restart's fence) while its shard's report of it is on its way;
  // the answer covered that viewer with a slot (leased 1, 0 viewers), and the restarted server's next viewer was
  // admitted on it, past a cap of 0.
  it("must not happen (fixed): the slot of a viewer kept over a lowered cap stays leased once a restart ends it, and admits a new viewer past the cap", async () => {
    const { s, a } = await edgeOn({ maxViewers: 2 }, "v0000001");
    // The server falls silent; meanwhile the cap is removed; the server is back.
    at(31_001);
    expect((await admin("PUT", `/streams/live/${s}`, { maxViewers: null })).status).toBe(200);
    at(31_002);
    expect(await beat(a)).toEqual(ALLOW);
    // The cap set to 0 below the viewer still watching: it keeps its slot, nobody else is admitted.
    at(31_003);
    expect((await admin("PUT", `/streams/live/${s}`, { maxViewers: 0 })).status).toBe(200);
    expect(await streamState(s)).toMatchObject({ viewers: 1, leasedUnused: 0 });
    // The server restarts: its viewer ends with the old process.
    at(31_004);
    const b = restarted(a);
    expect(await beat(b)).toEqual(ALLOW);
    const state = await streamState(s);
    expect(state.viewers).toBe(0);
    expect({ viewers: state.viewers, leasedUnused: state.leasedUnused }, "viewers + unused leased slots within a cap of 0").toEqual({ viewers: 0, leasedUnused: 0 });
    at(31_005);
    expect((await hook(play("live", s, { ...b, client: "v0000002" }))).body.code, "a new viewer past a cap of 0").toBe(4005);
  });
});

describe("a cap set on a stream that was unlimited, under viewers already watching", () => {
  useFakeClock();

  // Model sequence (shrunk): [play s1 c1 (cap 2), PUT maxViewers null, PUT maxViewers 1, plays on s0 refused, PUT maxViewers 2, play s1 c0].
  // While the stream was unlimited its shard held no slots; the cap's push left it none (its viewer kept watching, on
  // no slot). Its next viewer asked for one: the stream counted the free slot above the watching viewer, but the
  // grant replaced the lease by max(lease + grant, viewers) = 1, the watching viewer's own slot, and the new viewer
  // was refused "viewer cap reached: 2 of 2 viewers" with one viewer watching (unless a round of recalls, at most one
  // per gap, happened to top the lease up).
  it("must not happen (fixed): the next viewer of that shard is refused while a slot is free", async () => {
    const { s, a } = await edgeOn({ maxViewers: 2 }, "v0000001");
    at(2);
    expect((await admin("PUT", `/streams/live/${s}`, { maxViewers: null })).status).toBe(200);
    at(3);
    expect((await admin("PUT", `/streams/live/${s}`, { maxViewers: 1 })).status).toBe(200);
    // Another edge's viewer refused at that cap: the stream has just run its rounds of recalls (at most one per gap).
    const b = newEdge();
    expect(await beat(b)).toEqual(ALLOW);
    expect((await hook(play("live", s, { ...b, client: "v0000009" }))).body.code).toBe(4005);
    at(4);
    expect((await admin("PUT", `/streams/live/${s}`, { maxViewers: 2 })).status).toBe(200);
    at(5);
    expect(await hook(play("live", s, { ...a, client: "v0000002" }))).toEqual(ALLOW);
    expect(await streamState(s)).toMatchObject({ viewers: 2, leasedUnused: 0 });
    at(6);
    expect((await hook(play("live", s, { ...a, client: "v0000003" }))).body.code).toBe(4005);
  });
});

describe("a viewer's on_stop is proof that its silent server is back", () => {
  useFakeClock();

  // README, "Fleet state you can trust": when the same process sends any hook or heartbeat again, every session of it
  // that received no stop event counts and blocks again at once. Without the stop (a's silence going on), w0000002
  // is admitted: a's other viewer does not count.
  it("holds: the server's other viewer counts again at once, and another edge cannot fill its slot", async () => {
    const s = await streamAtZero({ maxViewers: 2 });
    const a = newEdge();
    const b = newEdge();
    expect(await beat(a)).toEqual(ALLOW);
    expect(await beat(b)).toEqual(ALLOW);
    at(1);
    expect(await hook(play("live", s, { ...a, client: "v0000001" }))).toEqual(ALLOW);
    expect(await hook(play("live", s, { ...a, client: "v0000002" }))).toEqual(ALLOW);
    // a falls silent (b keeps beating); then a's first word is one of its viewers leaving.
    at(31_001);
    expect(await beat(b)).toEqual(ALLOW);
    expect(await hook(stopPlay("live", s, { ...a, client: "v0000001" }))).toEqual(ALLOW);
    at(31_002);
    expect(await hook(play("live", s, { ...b, client: "w0000001" }))).toEqual(ALLOW);
    expect((await hook(play("live", s, { ...b, client: "w0000002" }))).body.code).toBe(4005);
    expect(await streamState(s)).toMatchObject({ viewers: 2 });
  });
});

describe("a stream deleted and created again", () => {
  useFakeClock();

  // README, GET …/events: a stream created again starts with an empty decision log. Its object's lines went, but the
  // viewer shards' lines of its earlier life were merged in as if they were the new stream's.
  it("must not happen (fixed): its decision log shows the viewer decisions of its earlier life", async () => {
    const { s, a } = await edgeOn({ maxViewers: 5 }, "old00001");
    at(2);
    expect((await admin("DELETE", `/streams/live/${s}`)).status).toBe(200);
    at(3);
    expect((await admin("PUT", `/streams/live/${s}`, { maxViewers: 5 })).status).toBe(201);
    at(4);
    expect(await hook(play("live", s, { ...a, client: "new00001" }))).toEqual(ALLOW);
    const { events } = (await admin("GET", `/streams/live/${s}/events`)).body;
    expect(events.map((e: { action: string; client: string }) => `${e.action} ${e.client}`)).toEqual(["on_play new00001"]);
  });
});

describe("a viewer kept over a lowered cap, its shard restarted by the platform, then its server restarted", () => {
  useFakeClock();

  // Seats model sequence (shrunk by hand): [play (unlimited), PUT maxViewers 0, shard evicted, the same play again,
  // shard evicted, restart]. The shard held one slot covering its viewer over the cap; evicted, it read its lease back
  // without knowing the stream was tight, so the restart's fence left the slot unused (leased 1, no viewer) instead
  // of giving it back at once, and the restarted server's next viewer was admitted on it, past a cap of 0.
  it("must not happen (fixed): the slot stays leased after the fence, and admits a new viewer past the cap", async () => {
    const { s, a } = await edgeOn({}, "v0000001");
    at(2);
    expect((await admin("PUT", `/streams/live/${s}`, { maxViewers: 0 })).status).toBe(200);
    await evictDurableObject(viewerShard(env, a.server));
    at(3);
    expect(await hook(play("live", s, { ...a, client: "v0000001" }))).toEqual(ALLOW); // SRS sent it again: the same session
    await evictDurableObject(viewerShard(env, a.server));
    at(4);
    const b = restarted(a);
    expect(await beat(b)).toEqual(ALLOW);
    const state = await streamState(s);
    expect({ viewers: state.viewers, leasedUnused: state.leasedUnused }).toEqual({ viewers: 0, leasedUnused: 0 });
    at(5);
    expect((await hook(play("live", s, { ...b, client: "v0000002" }))).body.code, "a new viewer past a cap of 0").toBe(4005);
  });
});
