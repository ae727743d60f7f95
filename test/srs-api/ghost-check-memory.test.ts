/**
 * What a refusal's ghost check remembers between refusals (src/srs/ghosts.ts; README, "Ghosts of lost
 * stop hooks": "an answer per client kept 3 s, a server whose API failed left alone for 5 s"). A flood
 * of refused hooks on a full stream must not turn into a flood of calls to the edges' APIs, and an edge
 * whose API is failing is not asked again at every refusal. Runs in the "srs-api" project against
 * test/fake-srs.ts, on the fake clock (Date only: the calls' own timeouts run on real time).
 */
import { describe, expect, it } from "vitest";
import { createStream, hook, play, streamState, uniqueStream } from "../srs";
import { ALLOW, edgeWithApi, installFakeSrs } from "../fake-srs";
import { useFakeClock, at, CAP } from "../fleet";

installFakeSrs();
useFakeClock();

const asked = (fake: { calls: { path: string }[] }, client: string) => fake.calls.filter((c) => c.path === `/api/v1/clients/${client}`).length;

describe("a refusal's ghost check between refusals", () => {
  it("an answer 'present' is kept 3 s: the next refusals within 3 s do not ask about that viewer again, one after it does", async () => {
    const { edge, fake } = await edgeWithApi(["view0001", "view0002", "view0003", "view0004"]);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    at(1_000);
    expect((await hook(play("live", s, { ...edge, client: "view0002" }))).body.code).toBe(CAP);
    expect(asked(fake, "view0001")).toBe(1);
    at(3_500);
    expect((await hook(play("live", s, { ...edge, client: "view0003" }))).body.code).toBe(CAP);
    expect(asked(fake, "view0001")).toBe(1);
    at(4_100);
    expect((await hook(play("live", s, { ...edge, client: "view0004" }))).body.code).toBe(CAP);
    expect(asked(fake, "view0001")).toBe(2);
  });

  it("who answers at an edge's address, asked to believe a bare 'not found', is kept 5 s: ghosts cleared by refusals within 5 s cost one identity call", async () => {
    const { edge, fake } = await edgeWithApi(["view0001", "view0002", "view0003", "view0004"]);
    const versions = () => fake.calls.filter((c) => c.path === "/api/v1/versions").length;
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    // Each viewer leaves in turn, its on_stop lost: the next viewer's refusal finds the ghost and is admitted.
    for (const [t, gone, next] of [[1_000, "view0001", "view0002"], [4_000, "view0002", "view0003"]] as const) {
      at(t);
      fake.clients.delete(gone);
      expect(await hook(play("live", s, { ...edge, client: next }))).toEqual(ALLOW);
    }
    expect(versions()).toBe(1);
    at(7_000);
    fake.clients.delete("view0003");
    expect(await hook(play("live", s, { ...edge, client: "view0004" }))).toEqual(ALLOW);
    expect(versions()).toBe(2);
  });

  it("an edge whose API failed is left alone 5 s (its sessions stand, the refusals are as without the API), then asked again and its ghost cleared", async () => {
    const { edge, fake } = await edgeWithApi(["view0001"]);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    fake.reachable = false;
    at(1_000);
    expect((await hook(play("live", s, { ...edge, client: "view0002" }))).body.code).toBe(CAP);
    const calls = fake.calls.length;
    expect(calls).toBeGreaterThan(0);
    // The API is back and view0001 has gone (its on_stop lost), but the edge is left alone until 6 s: past the
    // 3 s an answer is kept, still no call, and the ghost keeps its slot.
    fake.reachable = true;
    fake.clients.delete("view0001");
    fake.clients.add("view0003");
    at(4_500);
    expect((await hook(play("live", s, { ...edge, client: "view0003" }))).body.code).toBe(CAP);
    expect(fake.calls.length).toBe(calls);
    expect(await streamState(s)).toMatchObject({ viewers: 1 });
    at(6_100);
    expect(await hook(play("live", s, { ...edge, client: "view0003" }))).toEqual(ALLOW);
    expect(asked(fake, "view0001")).toBeGreaterThan(0);
  });
});
