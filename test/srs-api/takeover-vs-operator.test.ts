/**
 * Adversarial review: operator (admin API) actions racing a publisher takeover (onDuplicatePublish
 * "replace"): a key rotation, a stream deletion, an operator's end of sessions, a switch back to
 * "deny" and an override of the old edge's API URL, each while the takeover is held in its kick
 * (GhostCheck.kick: before the DELETE is sent) or in its wait for the kicked client to go
 * (GhostCheck.untilGone: after it). Runs in the "srs-api" project, against test/fake-srs.ts.
 */
import { describe, expect, it } from "vitest";
import { admin, hook, publish, streamState, unpublish } from "../srs";
import { ALLOW, fakeAt, installFakeSrs, kickedOn, takeoverReady } from "../fake-srs";
import { GhostCheck } from "../../src/srs/ghosts";
import { holdMatching, serverListed, until } from "../fleet";

installFakeSrs();

type Phase = "kick" | "untilGone";

/** takeoverReady, then enc00002's on_publish (the old key) on edge b, held in the takeover's `phase`. */
async function heldTakeover(phase: Phase) {
  const t = await takeoverReady();
  const held = holdMatching(GhostCheck.prototype, phase, () => true);
  const answer = hook(publish("live", t.s, t.key, { ...t.b.edge, client: "enc00002" }));
  await until(() => held.reached);
  return { ...t, held, answer };
}

describe("adversarial: a key rotation during a takeover", () => {
  for (const phase of ["kick", "untilGone"] as Phase[]) {
    it(`${phase === "kick" ? "must not happen (fixed): rotated before the takeover's kick is sent: the takeover still kicks the old publisher for the new one (old key) it then refuses" : "holds: rotated after the takeover's kick was sent"}: the new publisher (old key) is refused, nobody is left live or indexed`, async () => {
      const { a, b, s, held, answer } = await heldTakeover(phase);
      const put = await admin("PUT", `/streams/live/${s}`, { rotateKey: true });
      expect(put.status).toBe(200);
      expect(put.body.kicking).toEqual([expect.objectContaining({ clientId: "enc00001" })]);
      held.released = true;
      const r = await answer;
      expect(r).not.toEqual(ALLOW);
      // The rotation's kick (or the takeover's) reaches enc00001; SRS then sends its on_unpublish.
      await until(() => !a.fake.clients.has("enc00001"));
      expect(await hook(unpublish("live", s, { ...a.edge, client: "enc00001" }))).toEqual(ALLOW);
      const st = await streamState(s);
      expect(st.live).toBe(false);
      expect(st.publisher).toBeNull();
      expect(st.conflicts).toEqual([]);
      expect(kickedOn(b.fake, "enc00002")).toBe(false);
      // One kick each time: the takeover's, else the rotation's (a takeover called off before its DELETE sends none).
      await scheduler.wait(200);
      expect(a.fake.calls.filter((c) => c.method === "DELETE").length).toBeLessThanOrEqual(phase === "kick" ? 1 : 2);
      await until(async () => (await serverListed(a.edge)).sessions === 0 && (await serverListed(b.edge)).sessions === 0);
    });
  }
});

describe("adversarial: a stream deletion during a takeover", () => {
  it("must not happen (fixed): deleted while the takeover waits for the kicked publisher to go, whose on_unpublish is lost: its index entry stays (the takeover ended its session after the stream's name was gone)", async () => {
    const { a, b, s, held, answer } = await heldTakeover("untilGone");
    expect((await admin("DELETE", `/streams/live/${s}`)).status).toBe(200);
    held.released = true;
    expect(await answer).not.toEqual(ALLOW);
    expect((await admin("GET", `/streams/live/${s}`)).status).toBe(404);
    expect(kickedOn(a.fake, "enc00001")).toBe(true);
    expect(kickedOn(b.fake, "enc00002")).toBe(false);
    await until(async () => (await serverListed(b.edge)).sessions === 0);
    await until(async () => (await serverListed(a.edge)).sessions === 0);
  });

  it("must not happen (fixed): deleted before the takeover's kick is sent: the takeover still kicks the old publisher as 'replaced' for a new one it then refuses (the deletion's kick is the one to send); nothing stays indexed once the old one's on_unpublish arrives", async () => {
    const { a, b, s, held, answer } = await heldTakeover("kick");
    expect((await admin("DELETE", `/streams/live/${s}`)).body.kicking).toEqual([expect.objectContaining({ clientId: "enc00001" })]);
    await until(() => kickedOn(a.fake, "enc00001"));
    held.released = true;
    expect(await answer).not.toEqual(ALLOW);
    expect(a.fake.calls.filter((c) => c.method === "DELETE")).toHaveLength(1);
    expect(kickedOn(b.fake, "enc00002")).toBe(false);
    // SRS sends the kicked publisher's on_unpublish.
    expect(await hook(unpublish("live", s, { ...a.edge, client: "enc00001" }))).toEqual(ALLOW);
    await until(async () => (await serverListed(a.edge)).sessions === 0 && (await serverListed(b.edge)).sessions === 0);
  });
});

describe("adversarial: an operator's end of sessions during a takeover", () => {
  for (const phase of ["kick", "untilGone"] as Phase[]) {
    it(`holds: all of the stream's sessions ended while the takeover is in ${phase}: the old one ends, kicked; the new one (not yet a session) may be admitted, alone and indexed`, async () => {
      const { a, b, s, held, answer } = await heldTakeover(phase);
      const end = await admin("DELETE", `/streams/live/${s}/sessions`);
      expect(end.body.ended).toEqual([expect.objectContaining({ role: "publisher", clientId: "enc00001" })]);
      held.released = true;
      const r = await answer;
      const st = await streamState(s);
      if (r.body.code === 0) {
        expect(st.publisher).toMatchObject({ clientId: "enc00002", state: "live" });
        await until(async () => (await serverListed(b.edge)).sessions === 1);
      } else {
        expect(st.live).toBe(false);
        await until(async () => (await serverListed(b.edge)).sessions === 0);
      }
      expect(st.conflicts).toEqual([]);
      await until(async () => (await serverListed(a.edge)).sessions === 0);
      expect(kickedOn(b.fake, "enc00002")).toBe(false);
    });

    it(`${phase === "kick" ? "must not happen (fixed)" : "holds"}: the new publisher's server's sessions ended while the takeover is in ${phase}: it is not admitted, not indexed${phase === "kick" ? ", and the old publisher is not kicked for it" : ""}`, async () => {
      const { a, b, s, held, answer } = await heldTakeover(phase);
      const end = await admin("DELETE", `/servers/${b.edge.server}/sessions`);
      expect(end.status).toBe(200);
      held.released = true;
      const r = await answer;
      const st = await streamState(s);
      expect(r).not.toEqual(ALLOW);
      if (phase === "kick") {
        // Refused before its kick: the old publisher keeps the stream.
        expect(kickedOn(a.fake, "enc00001")).toBe(false);
        expect(st.publisher).toMatchObject({ clientId: "enc00001", state: "live" });
      } else {
        expect(st.live).toBe(false);
      }
      await until(async () => (await serverListed(b.edge)).sessions === 0);
    });
  }
});

describe("adversarial: onDuplicatePublish back to deny during a takeover", () => {
  it("must not happen (fixed): switched to deny before the kick is sent: the live publisher is still kicked, and the new one admitted", async () => {
    const { a, s, held, answer } = await heldTakeover("kick");
    expect((await admin("PUT", `/streams/live/${s}`, { onDuplicatePublish: "deny" })).body.onDuplicatePublish).toBe("deny");
    held.released = true;
    const r = await answer;
    expect(r).not.toEqual(ALLOW);
    expect(kickedOn(a.fake, "enc00001")).toBe(false);
    const st = await streamState(s);
    expect(st.publisher).toMatchObject({ clientId: "enc00001", state: "live" });
    expect(st.conflicts).toEqual([]);
  });

  it("holds: switched to deny after the kick was sent: the old one is gone, the new one admitted alone", async () => {
    const { a, b, s, held, answer } = await heldTakeover("untilGone");
    await admin("PUT", `/streams/live/${s}`, { onDuplicatePublish: "deny" });
    held.released = true;
    expect(await answer).toEqual(ALLOW);
    const st = await streamState(s);
    expect(st.publisher).toMatchObject({ clientId: "enc00002", state: "live" });
    expect(st.conflicts).toEqual([]);
    await until(async () => (await serverListed(a.edge)).sessions === 0 && (await serverListed(b.edge)).sessions === 1);
  });
});

describe("adversarial: the old edge's API URL overridden during a takeover", () => {
  it("holds: overridden before the kick is sent: nobody unrelated is kicked, and never two publishers", async () => {
    const { a, b, s, held, answer } = await heldTakeover("kick");
    // The old URL now answers for another server that has a client of the same id.
    const other = fakeAt("other.srs.test:1985", a.edge, ["enc00001"]);
    expect((await admin("PUT", `/servers/${a.edge.server}`, { api: "https://other.srs.test:1985" })).status).toBe(200);
    held.released = true;
    const r = await answer;
    const st = await streamState(s);
    expect(kickedOn(b.fake, "enc00002")).toBe(false);
    if (r.body.code === 0) {
      expect(st.publisher).toMatchObject({ clientId: "enc00002" });
      expect(a.fake.clients.has("enc00001") && other.clients.has("enc00001")).toBe(false);
    } else {
      expect(st.publisher).toMatchObject({ clientId: "enc00001", state: "live" });
    }
    expect(st.conflicts).toEqual([]);
  });
});
