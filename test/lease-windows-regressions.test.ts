/**
 * Adversarial review of the lease protocol after b1dc85d (a slot freed on a tight lease while a message of the
 * shard to the stream is on its way went back to the next viewer with the answer): other windows of that family.
 * Tests named "must not happen (fixed): …" failed on the code reviewed; "holds: …" pin what the review tried to
 * break and found sound.
 */
import { describe, expect, it } from "vitest";
import { signPlayToken } from "../src/auth/token";
import { ViewerShard } from "../src/viewers/shard";
import { askForSlotsHeld, at, beat, CAP, holdMatching, shardStub, streamAtZero, streamStub, until, useFakeClock, viewer, viewerStop } from "./fleet";
import { ALLOW, admin, createStream, hook, newEdge, play, streamState, uniqueStream, type Edge } from "./srs";

useFakeClock();

const key = (s: string) => `__defaultVhost__/live/${s}`;

const SIGNING_KEY = "test-token-signing-key-32-chars-or-more"; // TOKEN_SIGNING_KEY in vitest.config.mts

async function tokenOf(s: string, sub: string): Promise<string> {
  const iat = Math.floor(Date.now() / 1000);
  return signPlayToken({ vhost: "__defaultVhost__", app: "live", stream: s }, iat + 3600, SIGNING_KEY, { sub, issuedAt: iat });
}

const playWith = (s: string, edge: Edge, client: string, token: string) => hook({ ...play("live", s, { ...edge, client }), param: `?token=${token}` });

describe("a policy push crossing a shard's ask for slots, then a viewer ending before the answer comes back", () => {
  it("must not happen (fixed): the answer is void (the push is newer), the slot of the viewer who ended meanwhile stays in the lease, and the viewer who asked is admitted on it at a cap lowered to 0", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 2 });
    const e = newEdge();
    expect(await viewer(s, e, "e0000001")).toEqual(ALLOW);
    expect(await viewer(s, e, "e0000002")).toEqual(ALLOW); // e's lease: 2, used up; the stream is full (tight)
    // A third viewer on e: its shard asks for slots; the stream refuses, and the answer waits on its way back.
    const { decided, back } = askForSlotsHeld(e, 1);
    const third = viewer(s, e, "e0000003");
    await decided;
    // Meanwhile the operator lowers the cap to 0: the push reaches e (its two viewers keep their slots).
    expect((await admin("PUT", `/streams/live/${s}`, { maxViewers: 0 })).status).toBe(200);
    // One of them leaves, still before the answer is back.
    expect(await viewerStop(s, e, "e0000001")).toEqual(ALLOW);
    back.open();
    const answer = await third;
    expect(answer.body.code, "a new viewer at a cap of 0, one viewer still watching").toBe(CAP);
    const state = await streamState(s);
    expect(state).toMatchObject({ maxViewers: 0, viewers: 1, leasedUnused: 0 });
    expect((await shardStub(e).audience(key(s))).viewers).toBe(1);
  });
});

describe("a viewer's new screen replacing its session on the same edge while the cap is lowered under it", () => {
  it("must not happen (fixed): the ended session's slot (covering it over the lowered cap) is kept for the new screen, admitted at a cap of 0", async () => {
    const s = await streamAtZero({ maxViewers: 4, playAuth: "token", maxSessionsPerViewer: 1, onExtraViewerSession: "replace" });
    const e = newEdge();
    expect(await beat(e)).toEqual(ALLOW);
    const alice = await tokenOf(s, "alice");
    at(1);
    expect(await playWith(s, e, "c0", alice)).toEqual(ALLOW); // e's lease: 2 slots, one used
    at(2);
    // Alice's new screen on the same edge has a slot and takes her seat: the seat object ends c0 there, held on its way.
    const held = holdMatching(ViewerShard.prototype, "endSeat", (self) => self.serverId === e.server);
    const second = playWith(s, e, "c1", alice);
    await until(() => held.reached);
    // Meanwhile the operator lowers the cap to 0: the push takes back the unused slot; c0 keeps its own.
    expect((await admin("PUT", `/streams/live/${s}`, { maxViewers: 0 })).status).toBe(200);
    held.released = true;
    const answer = await second;
    await until(() => held.done);
    expect(answer.body.code, "a new screen at a cap of 0 (its old one ended: nobody watches)").toBe(CAP);
    expect(await streamState(s)).toMatchObject({ maxViewers: 0, viewers: 0, leasedUnused: 0 });
  });

  it("holds: under the cap the new screen on the same edge replaces the old one on its own slot", async () => {
    const s = await streamAtZero({ maxViewers: 4, playAuth: "token", maxSessionsPerViewer: 1, onExtraViewerSession: "replace" });
    const e = newEdge();
    expect(await beat(e)).toEqual(ALLOW);
    const alice = await tokenOf(s, "alice");
    at(1);
    expect(await playWith(s, e, "c0", alice)).toEqual(ALLOW);
    at(2);
    expect(await playWith(s, e, "c1", alice)).toEqual(ALLOW);
    expect((await shardStub(e).viewersOf(key(s))).map((v) => v.clientId)).toEqual(["c1"]);
    expect(await streamState(s)).toMatchObject({ maxViewers: 4, viewers: 1 });
  });
});

describe("b1dc85d's take-back against a fresh grant", () => {
  it("holds: a viewer ending on a tight lease while its shard's ask is on its way gives back its own slot only: the viewer who asked is admitted on the slot the answer grants anew", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 3 });
    const [e, f] = [newEdge(), newEdge()];
    expect(await viewer(s, e, "e0000001")).toEqual(ALLOW);
    expect(await viewer(s, e, "e0000002")).toEqual(ALLOW); // e: 2 slots, both used
    expect(await viewer(s, f, "f0000001")).toEqual(ALLOW); // f: the last slot
    // A push (the same cap) makes both leases tight; f's viewer leaves: its slot goes back to the stream.
    expect((await admin("PUT", `/streams/live/${s}`, { maxViewers: 3 })).status).toBe(200);
    expect(await viewerStop(s, f, "f0000001")).toEqual(ALLOW);
    await until(async () => (await streamStub(s).state())!.shards.every((x: any) => x.serverId !== f.server || x.leased === 0));
    // A third viewer on e: the stream grants it f's old slot (and is full again); the answer waits on its way back.
    const { decided, back } = askForSlotsHeld(e, 1);
    const third = viewer(s, e, "e0000003");
    await decided;
    expect(await viewerStop(s, e, "e0000001")).toEqual(ALLOW);
    back.open();
    expect(await third, "the viewer who asked, on the slot granted to it").toEqual(ALLOW);
    expect(await streamState(s)).toMatchObject({ viewers: 2, leasedUnused: 0 });
    expect(await viewer(s, f, "f0000002"), "the slot of the viewer who left, back at the stream").toEqual(ALLOW);
    expect((await viewer(s, f, "f0000003")).body.code).toBe(CAP);
  });
});
