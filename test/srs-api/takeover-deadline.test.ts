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
import { admin, hook, publish, streamState, unpublish } from "../srs";
import { ALLOW, edgeWithApi, installFakeSrs, kickedOn, takeoverReady } from "../fake-srs";
import { until, withDeadline } from "../fleet";

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

  it("two new publishers with the key on two edges at once, the old edge slow: the old one is kicked, one new publisher holds the stream and was told so, never two", async () => {
    const { a, b, s, key } = await takeoverReady();
    const c = await edgeWithApi(["enc00003"]);
    a.fake.delayMs = 300;
    const [rb, rc] = await Promise.all([
      hook(publish("live", s, key, { ...b.edge, client: "enc00002" })),
      hook(publish("live", s, key, { ...c.edge, client: "enc00003" })),
    ]);
    expect(kickedOn(a.fake, "enc00001")).toBe(true);
    const allowed = [rb, rc].filter((r) => r.status === 200 && r.body.code === 0);
    const state = await streamState(s);
    expect(state.live).toBe(true);
    expect(state.conflicts).toEqual([]);
    // Whoever holds the stream was told so; if both were allowed, the first was replaced by the second (kicked on its edge).
    expect(allowed.length).toBeGreaterThanOrEqual(1);
    const holder = state.publisher.clientId;
    expect(holder === "enc00002" ? rb : rc).toEqual(ALLOW);
    if (allowed.length === 2) expect(kickedOn(holder === "enc00002" ? c.fake : b.fake, holder === "enc00002" ? "enc00003" : "enc00002")).toBe(true);
  });
});
