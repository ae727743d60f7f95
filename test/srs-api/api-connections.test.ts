/**
 * The SRS API calls one object has in flight at once (src/srs/api.ts, API_CALLS_IN_FLIGHT; README,
 * "Kicks"). Workers keeps at most 6 connections open per invocation and holds any more unsent until one
 * closes, each held call's 2 s running meanwhile: a kick to a healthy edge held behind kicks to edges that
 * hang failed as "edge unreachable" and marked the edge's API as failing. Local workerd holds nothing back,
 * so the calls in flight are counted at the fakes. Runs in the "srs-api" project, against test/fake-srs.ts.
 */
import { runDurableObjectAlarm } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import { shardOf } from "../../src/server/registry";
import { admin, createStream, hook, newEdge, play, uniqueStream, type Edge } from "../srs";
import { ALLOW, edgeWithApi, installFakeSrs, kickedOn, network } from "../fake-srs";
import { serverListed, serverStub, until, useFakeClock } from "../fleet";

installFakeSrs();
useFakeClock(); // alarms run only when the test runs them; the calls' 2 s are real time

const streamEvents = async (s: string) => (await admin("GET", `/streams/live/${s}/events`)).body.events ?? [];

/** A new edge whose registry shard is `shard`'s. */
function edgeInShard(shard: number): Edge {
  for (;;) {
    const edge = newEdge();
    if (shardOf(edge.server) === shard) return edge;
  }
}

describe("a registry shard's kicks while edges of the shard hang", () => {
  it("have at most 5 API calls in flight across its overlapping runs, and a healthy edge's kick queued behind 8 hanging ones lands", async () => {
    const shard = shardOf(newEdge().server);
    const hanging = [];
    for (let i = 0; i < 8; i++) hanging.push(await edgeWithApi(["view0001"], edgeInShard(shard)));
    const healthy = await edgeWithApi(["view0002"], edgeInShard(shard));
    const s = uniqueStream();
    await createStream(s, { maxViewers: 20 });
    for (const { edge } of hanging) expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    const t = uniqueStream();
    await createStream(t, { maxViewers: 20 });
    expect(await hook(play("live", t, { ...healthy.edge, client: "view0002" }))).toEqual(ALLOW);
    for (const { fake } of hanging) fake.hang = true; // each call answers only when its 2 s are up

    // The operator ends the first stream's viewers: queueing starts a run that tries their 8 kicks ...
    expect((await admin("DELETE", `/streams/live/${s}/sessions`)).body.kicking).toHaveLength(8);
    await until(() => network.inFlight > 0);
    // ... then the second stream's viewer, on the healthy edge: another run, beside the first ...
    expect((await admin("DELETE", `/streams/live/${t}/sessions`)).body.kicking).toHaveLength(1);
    // ... and the alarm fires meanwhile (armed for now by both): a third.
    await runDurableObjectAlarm(serverStub(healthy.edge));

    const kicked = async () => (await streamEvents(t)).some((e: any) => e.action === "kick" && e.reason === "kicked (ended by operator)");
    await vi.waitFor(async () => expect(await kicked()).toBe(true), { timeout: 15_000, interval: 50 });
    expect(kickedOn(healthy.fake, "view0002")).toBe(true);
    // 5 at most, and all 5 taken: the healthy edge's kick waited for a place.
    expect(network.maxInFlight, "API calls in flight at once from the registry shard").toBe(5);
    // The healthy edge's call waited for a place, not in its own 2 s: its API is not taken for a failing one.
    expect((await serverListed(healthy.edge)).apiOk).toBe(true);
    expect((await streamEvents(t)).filter((e: any) => e.action === "kick-wait")).toEqual([]);
  });
});
