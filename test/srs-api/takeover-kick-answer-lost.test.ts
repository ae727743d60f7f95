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
import { ALLOW, installFakeSrs, kickedOn, takeoverReady } from "../fake-srs";

installFakeSrs();

describe("a takeover's kick carried out, its answer lost", () => {
  it("the API then says the old client is gone: the new publisher is admitted (was: 4009, and no publisher left)", async () => {
    const { a, b, s, key } = await takeoverReady();
    a.fake.override = async (req) => {
      a.fake.override = null;
      const res = await a.fake.handle(req);
      if (req.method !== "DELETE") {
        a.fake.override = lostDelete;
        return res;
      }
      throw new TypeError("Network connection lost.");
    };
    const lostDelete = a.fake.override;
    const r = await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }));
    expect(kickedOn(a.fake, "enc00001")).toBe(true);
    expect(a.fake.clients.has("enc00001")).toBe(false);
    expect(r).toEqual(ALLOW);
    expect((await streamState(s)).publisher).toMatchObject({ clientId: "enc00002", state: "live" });
  });

  it("the API unreachable after the kick, the old client's on_unpublish arrives: the new publisher is admitted", async () => {
    const { a, b, s, key } = await takeoverReady();
    a.fake.override = async (req) => {
      if (req.method !== "DELETE") {
        a.fake.override = null;
        try {
          return await a.fake.handle(req);
        } finally {
          a.fake.override = lostDelete;
        }
      }
      a.fake.clients.delete("enc00001");
      a.fake.reachable = false;
      // SRS sends the kicked client's on_unpublish at once.
      expect(await hook(unpublish("live", s, { ...a.edge, client: "enc00001" }))).toEqual(ALLOW);
      throw new TypeError("Network connection lost.");
    };
    const lostDelete = a.fake.override;
    const r = await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }));
    expect(r).toEqual(ALLOW);
    expect((await streamState(s)).publisher).toMatchObject({ clientId: "enc00002", state: "live" });
  });

  it("holds: the DELETE never reached SRS (the old client still there, the API unreachable): 4009, the old publisher keeps the stream", async () => {
    const { a, b, s, key } = await takeoverReady();
    a.fake.override = async (req) => {
      if (req.method !== "DELETE") {
        a.fake.override = null;
        try {
          return await a.fake.handle(req);
        } finally {
          a.fake.override = lostDelete;
        }
      }
      a.fake.reachable = false;
      throw new TypeError("Network connection lost.");
    };
    const lostDelete = a.fake.override;
    const r = await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }));
    expect(r.body.code).toBe(4009);
    expect(a.fake.clients.has("enc00001")).toBe(true);
    expect((await streamState(s)).publisher).toMatchObject({ clientId: "enc00001", state: "live" });
  });
});
