/**
 * Adversarial review of d4ad866 (SRS API): an admitted on_play never waits on an edge's API.
 * Runs in the "srs-api" project (SRS_API_URL = https://{device_id}.srs.test:1985).
 */
import { runDurableObjectAlarm } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createStream, hook, play, stopPlay, uniqueStream } from "../srs";
import { ALLOW, allCalls, edgeWithApi, installFakeSrs } from "../fake-srs";
import { at, shardStub } from "../fleet";

installFakeSrs();
afterEach(() => void vi.useRealTimers());

describe("an admitted on_play waits on no edge's API", () => {
  it("a slot another edge no longer uses, although the stream's record of it shows none unused, is handed over without asking that edge's API", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    at(0);
    const a = await edgeWithApi(["view0001", "view0002", "view0003"]);
    const b = await edgeWithApi(["view0004", "view0005"]);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 4 });
    for (const c of ["view0001", "view0002", "view0003"]) expect(await hook(play("live", s, { ...a.edge, client: c }))).toEqual(ALLOW);
    // A's idle slots go back after LEASE_IDLE_MS: the stream's record of A is now granted 3, live 3.
    at(31_000);
    await runDurableObjectAlarm(shardStub(a.edge));
    // One of A's viewers leaves (the stream is not tight: A keeps the slot, the stream's record is not told).
    expect(await hook(stopPlay("live", s, { ...a.edge, client: "view0003" }))).toEqual(ALLOW);
    a.fake.clients.delete("view0003");
    expect(await hook(play("live", s, { ...b.edge, client: "view0004" }))).toEqual(ALLOW); // the stream's 4th slot
    a.fake.hang = true; // A's API would hold anyone who asked it
    const before = allCalls.length;
    // B needs a slot: A's unused one exists (2 viewers, 3 slots); an admission must not wait on A's API.
    expect(await hook(play("live", s, { ...b.edge, client: "view0005" }))).toEqual(ALLOW);
    expect(allCalls.slice(before), "calls to an edge's API before an admitted on_play was answered").toEqual([]);
  });
});
