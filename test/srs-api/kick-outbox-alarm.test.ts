/**
 * Adversarial review of the kick outbox as 5988569 left it (kicks start at once when queued,
 * overlapping runs skip each other's kicks, the alarm runs notices and kicks side by side),
 * reviewed with 03bbb3e..1ca5fdb. Runs in the "srs-api" project (SRS_API_URL =
 * https://{device_id}.srs.test:1985). Each test states what should hold; both failed on 1ca5fdb, fixed by b0d80f0.
 */
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import { ViewerShard } from "../../src/viewers/shard";
import { admin, createStream, hook, play, publish, uniqueStream } from "../srs";
import { ALLOW, edgeWithApi, installFakeSrs, kickedOn } from "../fake-srs";
import { at, serverStub, until } from "../fleet";

installFakeSrs();
afterEach(() => void vi.useRealTimers());

const kicksWaiting = (stub: ReturnType<typeof serverStub>) =>
  runInDurableObject(stub, (_r, state) => state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM kicks").one().n);

describe("the registry's alarm while a kick started by queueing is still being tried", () => {
  it("is not re-armed for right now (else it fires again and again, doing nothing, until that try ends)", async () => {
    vi.useFakeTimers({ toFake: ["Date"] }); // alarms run only when the test runs them
    at(0);
    const { edge, fake } = await edgeWithApi(["enc00001"]);
    const s = uniqueStream();
    const key = await createStream(s);
    expect(await hook(publish("live", s, key, { ...edge, client: "enc00001" }))).toEqual(ALLOW);
    fake.hang = true; // the edge's API answers only when the call times out (2 s)
    const put = await admin("PUT", `/streams/live/${s}`, { rotateKey: true });
    expect(put.body.kicking).toEqual([{ role: "publisher", serverId: edge.server, clientId: "enc00001" }]);
    // Queueing armed the alarm for now and started a run, which is trying the kick.
    await until(() => fake.inFlight > 0);
    // The alarm fires (at once, in production): its run leaves the kick to the other run ...
    expect(await runDurableObjectAlarm(serverStub(edge))).toBe(true);
    expect(fake.inFlight, "the queueing run's try is still on its way").toBeGreaterThan(0);
    // ... and arms itself again for the same kick, due "now": it fires again at once, for as long as the try lasts.
    const alarm = await runInDurableObject(serverStub(edge), (_r, state) => state.storage.getAlarm());
    expect(alarm, "alarm re-armed for now while the only due kick is being tried by another run").toBeGreaterThan(Date.now());
  });
});

describe("a kick queued again while an earlier kick of the same client is being tried", () => {
  it("an operator's kick that replaces a refused client's kick in flight is sent, not deleted with it", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    at(0);
    const { edge, fake } = await edgeWithApi(["view0001"]);
    const s = uniqueStream();
    await createStream(s);
    const streamKey = `__defaultVhost__/live/${s}`;
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    // The outbox asks the viewer shard whether the refused client was admitted since: it was (SRS forgot the
    // refused session, the player came back with its id). The answer is on its way back to the registry.
    const gate = { reached: false, released: false };
    const real = ViewerShard.prototype.holdsClient;
    vi.spyOn(ViewerShard.prototype, "holdsClient").mockImplementation(async function (this: ViewerShard, ...args: Parameters<ViewerShard["holdsClient"]>) {
      const answer = real.apply(this, args);
      gate.reached = true;
      while (!gate.released) await scheduler.wait(5);
      return answer;
    } as unknown as ViewerShard["holdsClient"]);
    await serverStub(edge).queueKicks([
      { streamKey, role: "viewer", serverId: edge.server, serviceId: edge.service, clientId: "view0001", why: "refused (test), and SRS serves a refused HLS session", unlessAdmitted: true },
    ]);
    await until(() => gate.reached);
    // Meanwhile the operator ends the session: its kick replaces the refused client's (same client, stream and role).
    const ended = await admin("DELETE", `/streams/live/${s}/sessions`);
    expect(ended.body.kicking).toEqual([{ role: "viewer", serverId: edge.server, clientId: "view0001" }]);
    gate.released = true;
    await until(async () => (await kicksWaiting(serverStub(edge))) === 0 || kickedOn(fake, "view0001"));
    for (let i = 0; i < 3; i++) await runDurableObjectAlarm(serverStub(edge));
    // The operator's kick must go out: the client is still connected on the edge.
    expect(kickedOn(fake, "view0001"), "the operator's kick was sent").toBe(true);
  });
});
