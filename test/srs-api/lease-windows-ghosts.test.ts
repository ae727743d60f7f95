/**
 * Adversarial review of the lease protocol after b1dc85d, the windows that need SRS's HTTP API (ghosts of lost
 * on_stop events): see test/lease-windows-regressions.test.ts. Runs in the "srs-api" project, against
 * test/fake-srs.ts. "must not happen (fixed): …" failed on the code reviewed.
 */
import { describe, expect, it } from "vitest";
import { admin, createStream, hook, play, streamState, uniqueStream } from "../srs";
import { ALLOW, edgeWithApi, installFakeSrs } from "../fake-srs";
import { CAP, events, useFakeClock } from "../fleet";

installFakeSrs();
useFakeClock();

describe("a ghost found by a refused viewer's own check, over a cap lowered under the viewers", () => {
  it("must not happen (fixed): the ghost's slot covered a viewer over the cap (no free slot anywhere), yet the viewer who found it was admitted on it, at a cap of 0", async () => {
    const { edge, fake } = await edgeWithApi(["view0001"]);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    // The operator lowers the cap to 0: view0001 keeps its slot (a cover slot: the stream is over its cap).
    expect((await admin("PUT", `/streams/live/${s}`, { maxViewers: 0 })).status).toBe(200);
    // view0001 leaves, its on_stop lost: a ghost SRS no longer has. A new viewer comes to the same edge.
    fake.clients.delete("view0001");
    fake.clients.add("view0002");
    const answer = await hook(play("live", s, { ...edge, client: "view0002" }));
    // The refusal's check finds the ghost (its session ends): nobody watches any more, and the cap is 0.
    expect((await events(s)).some((e: any) => e.action === "ghost" && e.client === "view0001")).toBe(true);
    expect(answer.body.code, "a new viewer at a cap of 0").toBe(CAP);
    const state = await streamState(s);
    expect(state).toMatchObject({ maxViewers: 0, viewers: 0 });
  });
});

describe("a ghost found by a refused viewer's own check, at the cap", () => {
  it("holds: the ghost's slot is free at the stream (nobody over the cap): the viewer who found it is admitted, with one more message to the stream", async () => {
    const { edge, fake } = await edgeWithApi(["view0001"]);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    fake.clients.delete("view0001");
    fake.clients.add("view0002");
    expect(await hook(play("live", s, { ...edge, client: "view0002" }))).toEqual(ALLOW);
    expect(await streamState(s)).toMatchObject({ maxViewers: 1, viewers: 1, leasedUnused: 0 });
    fake.clients.add("view0003");
    expect((await hook(play("live", s, { ...edge, client: "view0003" }))).body.code).toBe(CAP);
  });
});
