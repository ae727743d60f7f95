/**
 * Adversarial review of the lease protocol after d6a08cc (a slot freed on a tight lease while a message of the
 * shard to the stream is on its way went back to the next viewer with the answer): other windows of that family.
 * Tests named "must not happen (fixed): …" failed on the code reviewed; "holds: …" pin what the review tried to
 * break and found sound.
 */
import { describe, expect, it } from "vitest";
import { askForSlotsHeld, CAP, shardStub, useFakeClock, viewer, viewerStop } from "./fleet";
import { ALLOW, admin, createStream, newEdge, streamState, uniqueStream } from "./srs";

useFakeClock();

const key = (s: string) => `__defaultVhost__/live/${s}`;

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
