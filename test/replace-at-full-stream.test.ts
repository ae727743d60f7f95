/**
 * onExtraViewerSession "replace" at a full stream (issue 14: "a viewer who moves from phone to TV is
 * not locked out"): the newer screen plays in the place of the session it replaces, on that session's
 * slot (handed from its shard to the newer screen's through the stream: src/viewers/seats.ts
 * SeatRequest.handOff, src/stream/leases.ts handOver), so the cap still holds for everyone else, and
 * no other edge waiting for slots is handed that slot. Where no session of the viewer's can make room,
 * the cap refuses it (4005) and nobody's session ends.
 */
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { ViewerShard } from "../src/viewers/shard";
import { ALLOW, a, b, c, keyOf, playWith, screensOnTheFakeClock, settle, tokenOf } from "./identity";
import { admin, hook, newEdge, stopPlay, streamState } from "./srs";
import { at, events, shardStub } from "./fleet";

import { FULL, fullStream, replaced } from "./hand-off";

screensOnTheFakeClock();

describe("replace at a full stream: the viewer's newer screen takes its old screen's slot", () => {
  it("on another edge: the TV is admitted, the phone ends, and the cap still refuses everyone else", async () => {
    const { s, alice, bob, carol } = await fullStream(2);
    expect(await hook(playWith(s, a, "phone001", alice))).toEqual(ALLOW);
    expect(await hook(playWith(s, b, "bob00001", bob))).toEqual(ALLOW);
    expect(await hook(playWith(s, c, "carol001", carol))).toEqual(FULL(2));
    expect(await hook(playWith(s, c, "tv000001", alice))).toEqual(ALLOW);
    expect(await replaced(s, "phone001")).toBe(true);
    expect(await streamState(s)).toMatchObject({ viewers: 2, distinctViewerIds: 2 });
    // The phone's slot went to the TV, not to the edge that waits for slots, nor back to the pool.
    expect(await hook(playWith(s, c, "carol001", carol))).toEqual(FULL(2));
    expect(await hook(playWith(s, a, "carol002", carol))).toEqual(FULL(2));
    await settle();
    expect(await hook(playWith(s, newEdge(), "carol003", carol))).toEqual(FULL(2));
    // The TV stopping frees its slot for the next viewer, as any viewer's would.
    expect(await hook(stopPlay("live", s, { ...c, client: "tv000001" }))).toEqual(ALLOW);
    expect(await hook(playWith(s, c, "carol001", carol))).toEqual(ALLOW);
    expect(await streamState(s)).toMatchObject({ viewers: 2 });
  });

  it("the old screen's shard restarted since (evicted while its viewers watched): its stored lease still hands the slot over", async () => {
    const { s, alice, bob, carol } = await fullStream(2);
    expect(await hook(playWith(s, a, "phone001", alice))).toEqual(ALLOW);
    expect(await hook(playWith(s, b, "bob00001", bob))).toEqual(ALLOW);
    await settle();
    await evictDurableObject(shardStub(a));
    expect(await hook(playWith(s, c, "tv000001", alice))).toEqual(ALLOW);
    expect(await replaced(s, "phone001")).toBe(true);
    expect(await hook(playWith(s, c, "carol001", carol))).toEqual(FULL(2));
    expect(await streamState(s)).toMatchObject({ viewers: 2 });
  });

  it("on the same edge: the TV plays on the phone's slot", async () => {
    const { s, alice, bob, carol } = await fullStream(2);
    expect(await hook(playWith(s, a, "phone001", alice))).toEqual(ALLOW);
    expect(await hook(playWith(s, a, "bob00001", bob))).toEqual(ALLOW);
    expect(await hook(playWith(s, a, "tv000001", alice))).toEqual(ALLOW);
    expect(await replaced(s, "phone001")).toBe(true);
    expect(await streamState(s)).toMatchObject({ viewers: 2 });
    expect(await hook(playWith(s, a, "carol001", carol))).toEqual(FULL(2));
    expect(await hook(playWith(s, b, "carol002", carol))).toEqual(FULL(2));
  });

  it("a viewer with no session to replace is refused for the cap, and nobody else's session ends", async () => {
    const { s, alice, bob, carol } = await fullStream(2);
    expect(await hook(playWith(s, a, "bob00001", bob))).toEqual(ALLOW);
    expect(await hook(playWith(s, b, "carol001", carol))).toEqual(ALLOW);
    expect(await hook(playWith(s, c, "tv000001", alice))).toEqual(FULL(2));
    expect(await streamState(s)).toMatchObject({ viewers: 2, distinctViewerIds: 2 });
    expect((await events(s)).some((e: any) => e.decision === "end")).toBe(false);
  });

  it("in deny mode the cap refuses the new screen and the old one plays on (unchanged)", async () => {
    const { s, alice, bob } = await fullStream(2, { onExtraViewerSession: "deny" });
    expect(await hook(playWith(s, a, "phone001", alice))).toEqual(ALLOW);
    expect(await hook(playWith(s, b, "bob00001", bob))).toEqual(ALLOW);
    expect(await hook(playWith(s, c, "tv000001", alice))).toEqual(FULL(2));
    expect(await streamState(s)).toMatchObject({ viewers: 2 });
  });

  it("two sessions to end for one slot (a limit lowered under them): refused for the cap, both sessions play on", async () => {
    const { s, alice, bob } = await fullStream(3, { maxSessionsPerViewer: 2 });
    expect(await hook(playWith(s, a, "phone001", alice))).toEqual(ALLOW);
    expect(await hook(playWith(s, b, "tablet01", alice))).toEqual(ALLOW);
    expect(await hook(playWith(s, c, "bob00001", bob))).toEqual(ALLOW);
    expect((await admin("PUT", `/streams/live/${s}`, { maxSessionsPerViewer: 1 })).status).toBe(200);
    expect(await hook(playWith(s, newEdge(), "tv000001", alice))).toEqual(FULL(3));
    expect(await streamState(s)).toMatchObject({ viewers: 3 });
    expect((await events(s)).some((e: any) => e.decision === "end")).toBe(false);
  });

  it("over a cap lowered under the viewers, the replacing screen takes its old screen's slot (the count stays), a new viewer is refused", async () => {
    const { s, alice, bob, carol, dave } = await fullStream(3);
    expect(await hook(playWith(s, a, "phone001", alice))).toEqual(ALLOW);
    expect(await hook(playWith(s, b, "bob00001", bob))).toEqual(ALLOW);
    expect(await hook(playWith(s, c, "carol001", carol))).toEqual(ALLOW);
    expect((await admin("PUT", `/streams/live/${s}`, { maxViewers: 2 })).status).toBe(200);
    expect(await hook(playWith(s, b, "tv000001", alice))).toEqual(ALLOW);
    expect(await streamState(s)).toMatchObject({ viewers: 3 });
    expect(await hook(playWith(s, c, "dave0001", dave))).toEqual(FULL(2));
    expect(await hook(playWith(s, a, "dave0002", dave))).toEqual(FULL(2));
  });

  it("a cap lowered after the slot was handed over, before the newer screen's shard took it: the slot goes back to the pool, the cap holds", async () => {
    const { s, alice, bob, dave } = await fullStream(2);
    expect(await hook(playWith(s, a, "phone001", alice))).toEqual(ALLOW);
    expect(await hook(playWith(s, b, "bob00001", bob))).toEqual(ALLOW);
    // c's shard asks no more after this hand-over.
    await handedToC(s);
    expect((await admin("PUT", `/streams/live/${s}`, { maxViewers: 1 })).status).toBe(200);
    // Bob alone fills the lowered cap: the slot handed to c is not granted to c's next viewer.
    expect(await hook(playWith(s, c, "dave0001", dave))).toEqual(FULL(1));
    expect(await streamState(s)).toMatchObject({ viewers: 1 });
  });

  /** Alice's phone on edge a ended by the seat object for a screen on edge c (as a hand-off take sends it): its slot is c's at the stream. */
  async function handedToC(s: string): Promise<void> {
    const ended = await runInDurableObject(shardStub(a), (shard: ViewerShard) =>
      shard.endSeat(keyOf(s), { serverId: a.server, serviceId: a.service, clientId: "phone001" }, "replaced by a newer session of viewer alice", "call-1", { serverId: c.server, serviceId: c.service, clientId: "tv000001" }),
    );
    expect(ended).toBe(true);
  }

  it("a round of recalls between the hand-over and the new screen's ask leaves the slot to that screen's edge: nobody else is admitted on it", async () => {
    const { s, alice, bob, dave } = await fullStream(2);
    expect(await hook(playWith(s, a, "phone001", alice))).toEqual(ALLOW);
    expect(await hook(playWith(s, b, "bob00001", bob))).toEqual(ALLOW);
    await handedToC(s);
    // Dave's refusal recalls the unused slots of the other edges, c's handed slot among them (c does not hold it yet).
    expect(await hook(playWith(s, newEdge(), "dave0001", dave))).toEqual(FULL(2));
    expect(await hook(playWith(s, c, "eve00001", await tokenOf(s, "eve")))).toEqual(ALLOW);
    expect(await streamState(s)).toMatchObject({ viewers: 2 });
  });

  it("a slot handed to an edge that never asks for it is an unused slot after 10 s, which a recall takes back for a viewer elsewhere", async () => {
    const { s, alice, bob, dave } = await fullStream(2);
    expect(await hook(playWith(s, a, "phone001", alice))).toEqual(ALLOW);
    expect(await hook(playWith(s, b, "bob00001", bob))).toEqual(ALLOW);
    await handedToC(s);
    expect(await hook(playWith(s, newEdge(), "dave0001", dave))).toEqual(FULL(2));
    at(11_000);
    expect(await hook(playWith(s, newEdge(), "dave0002", dave))).toEqual(ALLOW);
    expect(await hook(playWith(s, c, "eve00001", await tokenOf(s, "eve")))).toEqual(FULL(2));
    expect(await streamState(s)).toMatchObject({ viewers: 2 });
  });
});
