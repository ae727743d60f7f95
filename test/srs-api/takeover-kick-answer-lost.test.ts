/**
 * A takeover's DELETE that SRS carried out but whose answer never came back (the connection reset or
 * timed out on the way back: a flaky network). The old publisher is gone from its edge; the takeover
 * read the failed call as "edge unreachable" and refused the new publisher (4009), fail closed: the
 * stream was left with no publisher at all, the old one kicked for a new one that was refused. The
 * old client's going is provable: its edge's API says so, or its on_unpublish arrives. Runs in the
 * "srs-api" project, against test/fake-srs.ts.
 */
import { describe, expect, it } from "vitest";
import { hook, publish, streamState, unpublish } from "../srs";
import { ALLOW, installFakeSrs, kickedOn, takeoverReady, type FakeSrs } from "../fake-srs";

installFakeSrs();

/** The fake answers every call but a DELETE, which `reached` sees before the connection is lost on the way back. */
function deleteAnswerLost(fake: FakeSrs, reached: (req: Request) => unknown): void {
  const lost = async (req: Request): Promise<Response> => {
    fake.override = null;
    try {
      if (req.method !== "DELETE") return await fake.handle(req);
      await reached(req);
      throw new TypeError("Network connection lost.");
    } finally {
      fake.override = lost;
    }
  };
  fake.override = lost;
}

describe("a takeover's kick carried out, its answer lost", () => {
  it("the API then says the old client is gone: the new publisher is admitted (was: 4009, and no publisher left)", async () => {
    const { a, b, s, key } = await takeoverReady();
    deleteAnswerLost(a.fake, (req) => a.fake.handle(req));
    const r = await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }));
    expect(kickedOn(a.fake, "enc00001")).toBe(true);
    expect(a.fake.clients.has("enc00001")).toBe(false);
    expect(r).toEqual(ALLOW);
    expect((await streamState(s)).publisher).toMatchObject({ clientId: "enc00002", state: "live" });
  });

  it("the API unreachable after the kick, the old client's on_unpublish arrives: the new publisher is admitted", async () => {
    const { a, b, s, key } = await takeoverReady();
    deleteAnswerLost(a.fake, async () => {
      a.fake.clients.delete("enc00001");
      a.fake.reachable = false;
      // SRS sends the kicked client's on_unpublish at once.
      expect(await hook(unpublish("live", s, { ...a.edge, client: "enc00001" }))).toEqual(ALLOW);
    });
    const r = await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }));
    expect(r).toEqual(ALLOW);
    expect((await streamState(s)).publisher).toMatchObject({ clientId: "enc00002", state: "live" });
  });

  it("holds: the DELETE never reached SRS (the old client still there, the API unreachable): 4009, the old publisher keeps the stream", async () => {
    const { a, b, s, key } = await takeoverReady();
    deleteAnswerLost(a.fake, () => {
      a.fake.reachable = false;
    });
    const r = await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }));
    expect(r.body.code).toBe(4009);
    expect(a.fake.clients.has("enc00001")).toBe(true);
    expect((await streamState(s)).publisher).toMatchObject({ clientId: "enc00001", state: "live" });
  });
});
