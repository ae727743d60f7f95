/**
 * Adversarial review (second pass) of the publisher takeover: the stream's own index write before the
 * first kick (9aa1bfd), the identity check of a DELETE's "not found" (2ca2a5c), and the split into
 * src/stream/publisher-api.ts (958844b). Runs in the "srs-api" project, against test/fake-srs.ts.
 */
import { describe, expect, it } from "vitest";
import { admin, heartbeat, hook, newEdge, publish, streamState, unpublish } from "../srs";
import { ALLOW, deviceOf, installFakeSrs, kickedOn, takeoverReady } from "../fake-srs";
import { ServerRegistry } from "../../src/server/registry";
import { deliverNotices, expectNoTakeover, holdMatching, serverListed, tracksOf, until, withDeadline } from "../fleet";

installFakeSrs();

/** The registry fails the first `n` tracks of `serverId` as overloaded (the Worker's, sent beside the decision, comes first). */
const firstTracksFail = (serverId: string, n = 1) => tracksOf(serverId, (i) => (i <= n ? "fail" : "run"));

describe("adversarial: takeover, index entries and lost writes", () => {
  it("must not happen (fixed): the Worker's index write fails (overloaded) while the stream's own write before the kick succeeds: the old publisher is kicked and the new one undone (503)", async () => {
    const { a, b, s, key } = await takeoverReady();
    firstTracksFail(b.edge.server);
    const r = await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }));
    const kicked = kickedOn(a.fake, "enc00001");
    if (kicked) {
      // The old publisher was kicked: the new one must be admitted.
      expect(r).toEqual(ALLOW);
      expect((await streamState(s)).publisher).toMatchObject({ clientId: "enc00002", state: "live" });
      expect((await serverListed(b.edge)).sessions).toBe(1);
    } else {
      expect(r.status).not.toBe(200);
    }
  });

  it("must not happen (fixed): the Worker's index write fails, the stream's own succeeds, then the takeover is refused (old edge unreachable): the refused publisher's index entry stays", async () => {
    const { a, b, s, key } = await takeoverReady();
    a.fake.reachable = false;
    firstTracksFail(b.edge.server);
    const r = await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }));
    expect(r.status).not.toBe(200);
    expect((await streamState(s)).publisher).toMatchObject({ clientId: "enc00001" });
    // Nothing of enc00002 is held: nothing of it is indexed on b.
    await until(async () => (await serverListed(b.edge)).sessions === 0);
  });

  it("holds: the Worker's index write succeeds, the stream's own fails: refused 4009 without a kick, and no entry stays", async () => {
    const { a, b, s, key } = await takeoverReady();
    tracksOf(b.edge.server, (n) => (n >= 2 ? "fail" : "run"));
    const r = await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }));
    expect(r.body.code).toBe(4009);
    expect(kickedOn(a.fake, "enc00001")).toBe(false);
    expect((await serverListed(b.edge)).sessions).toBe(0);
  });

  it("must not happen (fixed): the hook's time runs out while the stream writes the new publisher's index entry before its kick: the Worker undoes the hook, and that entry (and the Worker's own) stays for a publisher nobody holds", async () => {
    const { a, b, s, key } = await takeoverReady();
    // The stream's own track (the second of b's) is held past the hook's deadline.
    let tracks = 0;
    const held = holdMatching(ServerRegistry.prototype, "track", (_self, args) => args[0] === b.edge.server && ++tracks === 2);
    const r = await withDeadline(2_000, () => hook(publish("live", s, key, { ...b.edge, client: "enc00002" })));
    expect(r.status).not.toBe(200);
    held.released = true;
    await until(() => held.done);
    await scheduler.wait(200);
    // The late attempt kicked nobody and admitted nobody...
    expect(kickedOn(a.fake, "enc00001")).toBe(false);
    expect((await streamState(s)).publisher).toMatchObject({ clientId: "enc00001" });
    // ...and nothing of enc00002 is indexed on b.
    expect((await serverListed(b.edge)).sessions).toBe(0);
  });

  it("must not happen (fixed): the kicked publisher's on_unpublish never arrives (lost): its index entry stays on the old edge, GET /admin/servers counts a session nobody holds", async () => {
    const { a, b, s, key } = await takeoverReady();
    expect((await serverListed(a.edge)).sessions).toBe(1);
    expect(await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }))).toEqual(ALLOW);
    expect(kickedOn(a.fake, "enc00001")).toBe(true);
    expect((await serverListed(b.edge)).sessions).toBe(1);
    // No on_unpublish of enc00001: the stream ended its session at the takeover, so its entry goes too.
    await until(async () => (await serverListed(a.edge)).sessions === 0);
  });

  it("holds: the new publisher's own server restarts while its takeover waits on the old edge: whatever the hook answers, once the registry's notices are delivered no session of the replaced process holds the stream, and nothing of it stays indexed", async () => {
    const { a, b, s, key } = await takeoverReady();
    a.fake.delayMs = 400;
    const pending = hook(publish("live", s, key, { ...b.edge, client: "enc00002" }));
    await until(() => a.fake.calls.length > 0);
    // b restarts: a heartbeat with a new service_id.
    const b2 = { server: b.edge.server, service: newEdge().service };
    expect(await hook({ ...heartbeat(b2), device_id: deviceOf(b.edge) }, undefined, "/heartbeat")).toEqual(ALLOW);
    await pending;
    await until(() => a.fake.inFlight === 0);
    await deliverNotices(b.edge);
    const state = await streamState(s);
    expect(state.publisher?.clientId).not.toBe("enc00002");
    expect(state.conflicts.map((c: any) => c.clientId)).not.toContain("enc00002");
    expect((await serverListed(b.edge)).sessions).toBe(0);
  });

  // Not something SRS does for the hook it waits on (on_unpublish comes only after an allowed on_publish), but what a
  // late attempt of the hook meets: the platform retried the stream's call, the retry was answered (allowed), the
  // client published and left, and the first attempt, still in its takeover, then admitted the session again.
  it("must not happen (fixed): the new publisher's on_unpublish arrives while its takeover is still under way: the takeover kicks the old publisher anyway and admits a session whose stop came and went (held, unindexed, until a ghost check)", async () => {
    const { a, b, s, key } = await takeoverReady();
    a.fake.delayMs = 400;
    const pending = hook(publish("live", s, key, { ...b.edge, client: "enc00002" }));
    // The ghost check's question to the old edge is on its way: the takeover has not kicked yet.
    await until(() => a.fake.calls.length > 0);
    expect(await hook(unpublish("live", s, { ...b.edge, client: "enc00002" }))).toEqual(ALLOW);
    await pending;
    await expectNoTakeover({ a, b, s, key });
  });

  it("holds: a takeover refused 4009 (old edge unreachable), the Worker's write through or not: no entry stays, the operator's 'end all' of the new edge ends nothing, and its next on_publish (the old edge back) is admitted and indexed once", async () => {
    const { a, b, s, key } = await takeoverReady();
    a.fake.reachable = false;
    firstTracksFail(b.edge.server);
    expect((await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }))).status).not.toBe(200);
    expect((await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }))).body.code).toBe(4009);
    expect((await serverListed(b.edge)).sessions).toBe(0);
    const ended = await admin("DELETE", `/servers/${b.edge.server}/sessions`);
    expect(ended.status).toBe(200);
    expect(ended.body.ended ?? []).toHaveLength(0);
    // The old edge's API answers again: the client's next attempt takes over.
    a.fake.reachable = true;
    expect(await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }))).toEqual(ALLOW);
    expect(kickedOn(a.fake, "enc00001")).toBe(true);
    expect((await serverListed(b.edge)).sessions).toBe(1);
    await until(async () => (await serverListed(a.edge)).sessions === 0);
  });
});
