/**
 * Candidates: start hooks from processes never heard of, on a server that
 * heartbeats. They wait for their own first heartbeat; neither a forger nor a
 * late hook can take a server over, also while its heartbeats are late.
 */
import { env } from "cloudflare:workers";
import { runDurableObjectAlarm } from "cloudflare:test";
import { beforeEach, describe, expect, it } from "vitest";
import { serverTimeoutMs } from "../src/config";
import { ALLOW, createStream, type Edge, hook, newEdge, play, publish, stopPlay, streamState, uniqueStream } from "./srs";
import { at, beat, deliverNotices, serverListed, serverStub, useFakeClock } from "./fleet";


/** SERVER_TIMEOUT_S as the objects read it (a local .dev.vars can change it: see the report). */
const T = serverTimeoutMs(env);

let edge: Edge;
useFakeClock();
beforeEach(() => {
  edge = newEdge();
});

describe("two candidates when the current process falls silent", () => {
  it("the real restart's own first heartbeat completes the restart even if a forged candidate is also waiting", async () => {
    // README: a candidate's "own first heartbeat completes the restart".
    await beat(edge);
    const s = uniqueStream();
    const key = await createStream(s);
    expect(await hook(publish("live", s, key, { ...edge, client: "enc00001" }))).toEqual(ALLOW);

    // Someone holding the hook secret sends one start hook under the edge's server_id
    // (a service_id that sorts first).
    at(1000);
    const forged = { server: edge.server, service: "00000000" };
    await hook(play("live", s, { ...forged, client: "forg0001" }));

    // The edge's process hangs (last heartbeat at 0) and is restarted; the new process's
    // encoder reconnects before the new process's first heartbeat.
    at(T - 5000);
    const next = { server: edge.server, service: "zzzzzzzz" };
    await hook(play("live", s, { ...next, client: "view0001" }));

    // The old process is now silent: the shard's alarm runs.
    at(T);
    await runDurableObjectAlarm(serverStub(edge));

    // The new process's first heartbeat.
    at(T + 5000);
    await beat(next);
    const listed = await serverListed(edge);
    expect(listed.serviceId, "the heartbeating process is current").toBe(next.service);
    expect(await hook(publish("live", s, key, { ...next, client: "enc00002" })), "the restarted edge's encoder").toEqual(ALLOW);
  });
});

describe("a late or forged hook followed by a heartbeat hiccup", () => {
  it("a running edge whose heartbeats are late for SERVER_TIMEOUT_S keeps its process and its sessions", async () => {
    // README: "One late or forged hook can no longer lock a running edge out", and
    // "A timeout that is too short only suspends sessions of a server whose heartbeats are late
    // (they come back with its next message); it no longer ends them."
    await beat(edge);
    const s = uniqueStream();
    const key = await createStream(s);
    expect(await hook(publish("live", s, key, { ...edge, client: "enc00001" }))).toEqual(ALLOW);
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);

    at(1000);
    await hook(play("live", uniqueStream("nosuch"), { server: edge.server, service: "forged01", client: "x" }));

    // The edge's heartbeats are late (a congested uplink): none for SERVER_TIMEOUT_S.
    at(T + 1000);
    await runDurableObjectAlarm(serverStub(edge));
    await deliverNotices(edge);

    at(T + 3000);
    await beat(edge); // the same process, still running
    await deliverNotices(edge);
    expect(await serverListed(edge), "the running process stays current").toMatchObject({ serviceId: edge.service, alive: true });
    expect(await streamState(s), "its sessions come back").toMatchObject({ live: true, viewers: 1, publisher: { clientId: "enc00001" } });
    expect(await hook(play("live", s, { ...edge, client: "view0002" })), "its next viewer").toEqual(ALLOW);
  });
});

/**
 * The edge falls silent; a new process of its server (a candidate: no heartbeat yet) publishes and plays on a stream
 * with a cap of 1. `other` heartbeats throughout.
 */
async function aCandidateOnASilentEdge() {
  const other = newEdge();
  await beat(edge);
  const s = uniqueStream();
  const key = await createStream(s, { maxViewers: 1 });
  at(T + 1000); // the edge is silent; its alarm suspends it
  await beat(other);
  await runDurableObjectAlarm(serverStub(edge));
  const next = { server: edge.server, service: newEdge().service };
  expect(await hook(publish("live", s, key, { ...next, client: "enc00001" })), "the restarted process's encoder").toEqual(ALLOW);
  expect(await hook(play("live", s, { ...next, client: "view0001" }))).toEqual(ALLOW);
  return { s, key, next, other };
}

/** The candidate sends nothing for SERVER_TIMEOUT_S (it crashed before its first heartbeat): quiet, its sessions suspended. */
async function fallsQuiet({ s, other }: { s: string; other: Edge }) {
  at(2 * T + 2000);
  await beat(other);
  await runDurableObjectAlarm(serverStub(edge));
  await deliverNotices(edge);
  expect(await streamState(s)).toMatchObject({ live: false, viewers: 0, suspendedViewers: 1, publisher: { clientId: "enc00001", state: "suspended" } });
}

/** Both: a candidate of the silent edge that fell quiet. */
async function aQuietCandidate() {
  const candidate = await aCandidateOnASilentEdge();
  await fallsQuiet(candidate);
  return candidate;
}

describe("a candidate of a silent server that never heartbeats (a restart that crashed at once)", () => {
  it("stops counting and blocking SERVER_TIMEOUT_S after its last hook, and counts again when it speaks", async () => {
    const candidate = await aCandidateOnASilentEdge();
    const { s, key, next, other } = candidate;
    expect((await hook(publish("live", s, key, { ...other, client: "enc00002" }))).body.code, "while the candidate speaks").toBe(4004);

    // It crashes before its first heartbeat: nothing more comes from the edge.
    await fallsQuiet(candidate);
    expect(await hook(publish("live", s, key, { ...other, client: "enc00002" })), "a publisher elsewhere").toEqual(ALLOW);
    expect(await hook(play("live", s, { ...other, client: "view0002" })), "a viewer elsewhere").toEqual(ALLOW);
    expect(await serverListed(edge)).toMatchObject({ serviceId: edge.service, candidateServiceIds: [next.service] });

    // Its first heartbeat after all: it is the edge's process, and what it holds counts again.
    at(2 * T + 4000);
    await beat(next);
    await deliverNotices(edge);
    expect(await serverListed(edge)).toMatchObject({ serviceId: next.service, candidateServiceIds: [] });
    expect(await streamState(s)).toMatchObject({ viewers: 2, suspendedViewers: 0, publisher: { clientId: "enc00002" }, conflicts: [{ clientId: "enc00001" }] });
  });
});

describe("what a candidate costs, as operators see it", () => {
  it("a forged viewer fills a cap of 1 until the alarm refuses it; its session is in the server's `sessions` meanwhile", async () => {
    await beat(edge);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    const forged = { server: edge.server, service: "forged02" };
    expect(await hook(play("live", s, { ...forged, client: "forg0001" }))).toEqual(ALLOW);
    expect((await hook(play("live", s, { ...edge, client: "view0001" }))).body.code, "the real viewer, while the candidate waits").toBe(4005);
    expect(await serverListed(edge)).toMatchObject({ serviceId: edge.service, sessions: 1, duplicateServiceIds: [], candidateServiceIds: ["forged02"] });

    at(T / 2);
    await beat(edge);
    at(T + 500);
    await beat(edge);
    await runDurableObjectAlarm(serverStub(edge));
    await deliverNotices(edge);
    expect(await streamState(s)).toMatchObject({ viewers: 0, suspendedViewers: 0 });
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    expect((await hook(play("live", s, { ...forged, client: "forg0002" }))).body.code, "the refused candidate").toBe(4006);
    expect(await serverListed(edge)).toMatchObject({ serviceId: edge.service, sessions: 1, candidateServiceIds: [] });
  });

  it("a candidate's on_stop ends its session and does not move the epoch", async () => {
    await beat(edge);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    const next = { server: edge.server, service: newEdge().service };
    expect(await hook(play("live", s, { ...next, client: "view0001" }))).toEqual(ALLOW);
    expect(await hook(stopPlay("live", s, { ...next, client: "view0001" }))).toEqual(ALLOW);
    expect(await serverListed(edge)).toMatchObject({ serviceId: edge.service, sessions: 0 });
    expect(await hook(play("live", s, { ...edge, client: "view0002" }))).toEqual(ALLOW);
  });
});

describe("a candidate's whole SERVER_TIMEOUT_S to heartbeat", () => {
  it("an alarm that fires earlier for the current process's deadline does not refuse a candidate that appeared less than SERVER_TIMEOUT_S ago", async () => {
    // The old process heartbeats at 0 (the shard's alarm is due at T) and once more at T - 5 s. The new
    // process's encoder connects at T - 10 s, before the new process's first heartbeat (at T + 5 s).
    await beat(edge);
    const s = uniqueStream();
    const key = await createStream(s);
    at(T - 10_000);
    const next = { server: edge.server, service: newEdge().service };
    expect(await hook(publish("live", s, key, { ...next, client: "enc00001" })), "the candidate's encoder").toEqual(ALLOW);
    at(T - 5000);
    await beat(edge);

    // The alarm armed for the old process's deadline runs at T: the candidate has waited only 10 s.
    at(T);
    await runDurableObjectAlarm(serverStub(edge));
    await deliverNotices(edge);
    expect(await serverListed(edge), "still a candidate").toMatchObject({ serviceId: edge.service, candidateServiceIds: [next.service] });

    // Its first heartbeat, within SERVER_TIMEOUT_S of its first hook: it is the server's process, and keeps its encoder.
    at(T + 5000);
    expect(await beat(next)).toEqual(ALLOW);
    await deliverNotices(edge);
    expect(await serverListed(edge)).toMatchObject({ serviceId: next.service, candidateServiceIds: [], duplicateServiceIds: [] });
    expect(await streamState(s)).toMatchObject({ live: true, publisher: { clientId: "enc00001", serverId: next.server, state: "live" } });
  });
});

describe("a quiet candidate that speaks again", () => {
  it("its hook (not a heartbeat) makes what it holds count again, as the admin view shows once the notices ran", async () => {
    const { s, next } = await aQuietCandidate();
    // It speaks again: a viewer of another stream on it. Still a candidate, but alive: its sessions count again.
    at(2 * T + 3000);
    const elsewhere = uniqueStream();
    await createStream(elsewhere);
    expect(await hook(play("live", elsewhere, { ...next, client: "view0002" }))).toEqual(ALLOW);
    await deliverNotices(edge);
    expect(await serverListed(edge)).toMatchObject({ serviceId: edge.service, candidateServiceIds: [next.service] });
    expect(await streamState(s)).toMatchObject({ live: true, viewers: 1, suspendedViewers: 0, publisher: { clientId: "enc00001", state: "live" } });
  });
});

describe("a quiet candidate that becomes current while the old process is back", () => {
  it("its heartbeat after the old process returned makes what it holds count again: its publisher live, its viewer counted, the stream not open to a second publisher", async () => {
    const { s, key, next, other } = await aQuietCandidate();
    // The old process is heard from again (a partition healed), then, before any alarm, the new process's first
    // heartbeat arrives: it is the server's process now, and its sessions count (its server is not silent).
    at(2 * T + 3000);
    await beat(edge);
    at(2 * T + 4000);
    expect(await beat(next)).toEqual(ALLOW);
    await deliverNotices(edge);
    expect(await serverListed(edge)).toMatchObject({ serviceId: next.service, candidateServiceIds: [] });
    expect(await streamState(s)).toMatchObject({ live: true, viewers: 1, suspendedViewers: 0, publisher: { clientId: "enc00001", state: "live" } });
    // Counted again: a second publisher and a second viewer are refused.
    expect((await hook(publish("live", s, key, { ...other, client: "enc00002" }))).body.code).toBe(4004);
    expect((await hook(play("live", s, { ...other, client: "view0002" }))).body.code).toBe(4005);
  });
});
