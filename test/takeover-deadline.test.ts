/**
 * A publisher takeover (onDuplicatePublish "replace") against an old edge whose SRS API is slow
 * but healthy: the hook's calls to that API fit within the hook's deadline, and a kick is only
 * sent when there is time left to confirm it. Before, the takeover's calls (each up to 2 s) came
 * after the ghost check's with no regard for the hook's 10 s: against an edge answering each call
 * just under 2 s, the old publisher was kicked and the new one got a 503 all the same (README,
 * "Publisher takeover", the limit it named). Runs in the "srs-api" project, against
 * test/fake-srs.ts; the deadline is shortened with withDeadline so a test takes seconds.
 */
import { describe, expect, it } from "vitest";
import { admin, hook, publish, streamState, unpublish } from "./srs";
import { ALLOW, installFakeSrs, kickedOn, takeoverReady } from "./fake-srs";
import { until, withDeadline } from "./fleet";

installFakeSrs();

const events = async (s: string) => (await admin("GET", `/streams/live/${s}/events`)).body.events ?? [];

describe("a takeover against a slow old edge answers within the hook's deadline", () => {
  it("each call 1.9 s, the usual 10 s deadline: the old publisher is kicked and the new one admitted (was: 9.6 s of the 10 s, five calls in a row)", async () => {
    const { a, b, s, key } = await takeoverReady();
    a.fake.delayMs = 1_900;
    expect(await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }))).toEqual(ALLOW);
    expect(kickedOn(a.fake, "enc00001")).toBe(true);
    expect((await streamState(s)).publisher).toMatchObject({ clientId: "enc00002", state: "live" });
  });

  it("each call 1.5 s, a 6 s deadline: still admitted, the kick confirmed in time", async () => {
    const { a, b, s, key } = await takeoverReady();
    a.fake.delayMs = 1_500;
    expect(await withDeadline(6_000, () => hook(publish("live", s, key, { ...b.edge, client: "enc00002" })))).toEqual(ALLOW);
    expect(kickedOn(a.fake, "enc00001")).toBe(true);
    expect((await streamState(s)).publisher).toMatchObject({ clientId: "enc00002", state: "live" });
  });

  it("too little time left to kick and confirm: no kick is sent, 4009 says the edge is too slow, the old publisher keeps the stream", async () => {
    const { a, b, s, key } = await takeoverReady();
    a.fake.delayMs = 1_500;
    const r = await withDeadline(4_000, () => hook(publish("live", s, key, { ...b.edge, client: "enc00002" })));
    expect(r.status).toBe(403);
    expect(r.body.code).toBe(4009);
    expect(r.body.reason).toMatch(/^publisher takeover failed: edge .* too slow/);
    // Nothing was sent that the hook could not wait for: no kick now, none later.
    await until(() => a.fake.inFlight === 0);
    expect(kickedOn(a.fake, "enc00001")).toBe(false);
    expect((await streamState(s)).publisher).toMatchObject({ clientId: "enc00001", state: "live" });
    expect((await events(s)).some((e: any) => e.client === "enc00002" && e.decision === "deny" && /too slow/.test(e.reason))).toBe(true);
  });

  it("the kicked publisher's on_unpublish admits the new one at once, without waiting for the slow question after the kick", async () => {
    const { a, b, s, key } = await takeoverReady();
    a.fake.delayMs = 1_500;
    // As real SRS does (docs/e2e-notes.md, run 15): the kicked client's on_unpublish comes right after the kick.
    a.fake.onKick = () => void hook(unpublish("live", s, { ...a.edge, client: "enc00001" }));
    expect(await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }))).toEqual(ALLOW);
    const inFlight = a.fake.inFlight;
    expect(kickedOn(a.fake, "enc00001")).toBe(true);
    expect(inFlight).toBeGreaterThan(0); // the questions after the kick, still on their way: the stop event was proof enough
    expect((await streamState(s)).publisher).toMatchObject({ clientId: "enc00002", state: "live" });
  });
});
