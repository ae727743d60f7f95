/**
 * Adversarial review of the stream's alarm sweeping for ghost publishers (935cf20), in the
 * "srs-api-events" project (SRS_API_URL and EVENTS_WEBHOOK_URL set): how stream.ended says a
 * publisher ended when the sweep's question to its edge's API is on its way while something else
 * ends it. The object's input gate is open during that fetch: admin calls and hooks interleave.
 */
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { admin, heartbeat, hook, publish, streamState, unpublish } from "../srs";
import { at, holdMatching, serverListed, serverStub, streamStub, until } from "../fleet";
import { GhostCheck } from "../../src/srs/ghosts";
import { ALLOW, deviceOf, FakeSrs, hosts, installFakeSrs, kickedOn, publishingOnEdgeWithApi, takeoverReady } from "../fake-srs";
import { Receiver } from "../receiver";

installFakeSrs();

let receiver: Receiver;
beforeEach(() => {
  receiver = new Receiver();
  hosts.set("receiver.test", { calls: [], handle: (req: Request) => receiver.receive(req) } as unknown as FakeSrs);
});

/** The kicks of `client` in the outbox of `edge`'s registry shard. */
const kicksQueued = (edge: { server: string; service: string }, client: string) =>
  runInDurableObject(serverStub(edge), (_: unknown, state: DurableObjectState) => state.storage.sql.exec("SELECT 1 FROM kicks WHERE client_id = ?", client).toArray().length);

/** The first GET of `client` reaches the fake and is then held (answered only once released, from what the fake has then). */
function holdFirstQuestion(fake: FakeSrs, client: string) {
  const state = { reached: false, released: false };
  fake.override = async (req) => {
    const question = req.method === "GET" && new URL(req.url).pathname === `/api/v1/clients/${client}`;
    if (question && !state.reached) {
      state.reached = true;
      while (!state.released) await scheduler.wait(5);
    }
    const own = fake.override;
    fake.override = null;
    try {
      return await fake.handle(req);
    } finally {
      fake.override = own;
    }
  };
  return state;
}

describe("the ghost sweep and an operator's kick of the publisher", () => {
  for (const action of ["a key rotation", "a stream deletion"] as const) {
    it(`must not happen (fixed): ${action} kicks the publisher while the alarm's question about it is on its way; SRS answers "not found" after the kick and the kicked client's on_unpublish comes a moment later: stream.ended said reason "ghost", not "operator"`, async () => {
      const { edge, fake, s } = await publishingOnEdgeWithApi();
      const held = holdFirstQuestion(fake, "enc00001");
      const alarm = runDurableObjectAlarm(streamStub(s));
      await until(() => held.reached);

      const call = action === "a key rotation" ? await admin("PUT", `/streams/live/${s}`, { rotateKey: true }) : await admin("DELETE", `/streams/live/${s}`);
      expect(call.body.kicking).toEqual([expect.objectContaining({ clientId: "enc00001" })]);
      await until(() => kickedOn(fake, "enc00001") && !fake.clients.has("enc00001"));
      held.released = true; // the sweep's question is answered now: "not found"
      await alarm;
      // SRS's on_unpublish of the kicked client, a moment later (a slow hook).
      expect(await hook(unpublish("live", s, { ...edge, client: "enc00001" }))).toEqual(ALLOW);

      const ends = () => receiver.of(s).filter((e) => e.body.type === "stream.ended");
      await until(() => ends().length > 0);
      await scheduler.wait(300); // a second stream.ended, were the session ended twice
      const ended = ends();
      expect(ended).toHaveLength(1);
      expect(ended[0].body.data).toMatchObject({ client_id: "enc00001", reason: "operator" });
    });
  }
});

describe("the ghost sweep and a takeover's kick of the publisher", () => {
  it(`must not happen (fixed): a takeover's kick waits for its turn past the 3 s its ghost check's "present" is kept; the alarm's question, asked meanwhile, is answered after the kick's DELETE: stream.ended said reason "ghost", not "takeover"`, async () => {
    const { a, b, s, key } = await takeoverReady();
    // The takeover's ghost check asks (enc00001 present), then its kick is held (no place for its call, say).
    const kick = holdMatching(GhostCheck.prototype, "kick", () => true);
    const taking = hook(publish("live", s, key, { ...b.edge, client: "enc00002" }));
    await until(() => kick.reached);
    await scheduler.wait(3_100); // the check's answer is no longer kept: the alarm asks again

    const sweep = holdFirstQuestion(a.fake, "enc00001");
    const alarm = runDurableObjectAlarm(streamStub(s));
    await until(() => sweep.reached);
    // The kick goes: its own question, then its DELETE; the alarm's question is answered once the client is gone.
    a.fake.onKick = async () => {
      sweep.released = true;
      await scheduler.wait(300);
    };
    kick.released = true;
    expect(await taking).toEqual(ALLOW);
    await alarm;
    expect(kickedOn(a.fake, "enc00001")).toBe(true);

    const events = await receiver.received(s, 3);
    expect(events.map((e) => [e.body.type, e.body.data.client_id, e.body.data.reason])).toEqual([
      ["stream.started", "enc00001", undefined],
      ["stream.ended", "enc00001", "takeover"],
      ["stream.started", "enc00002", undefined],
    ]);
  });
});

describe("the ghost sweep and an operator's kick whose stop events were lost", () => {
  it(`must not happen (fixed): a key rotation's kick let the publisher go (its edge said so) and its on_unpublish and on_close were both lost: the sweep ended it a minute or two later with stream.ended reason "ghost", not "operator"`, async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    at(0);
    try {
      const { edge, fake, s } = await publishingOnEdgeWithApi();
      expect((await admin("PUT", `/streams/live/${s}`, { rotateKey: true })).body.kicking).toEqual([expect.objectContaining({ clientId: "enc00001" })]);
      // The kick has been carried out: SRS let the client go, and the registry's outbox holds it no more.
      await until(async () => kickedOn(fake, "enc00001") && !fake.clients.has("enc00001") && (await kicksQueued(edge, "enc00001")) === 0);
      expect(fake.clients.has("enc00001")).toBe(false); // kicked; both of its stop events lost (a deploy)

      // The edge heartbeats on; the stream's alarm runs a minute apart.
      const beatAt = async (ms: number) => (at(ms), expect(await hook({ ...heartbeat(edge), device_id: deviceOf(edge) }, undefined, "/heartbeat")).toEqual(ALLOW));
      await beatAt(20_000);
      at(30_000);
      await runDurableObjectAlarm(streamStub(s));
      for (const ms of [50_000, 70_000, 85_000]) await beatAt(ms);
      at(90_000);
      await runDurableObjectAlarm(streamStub(s));
      expect((await streamState(s)).live).toBe(false);

      const ends = () => receiver.of(s).filter((e) => e.body.type === "stream.ended");
      await until(() => ends().length > 0);
      expect(ends().map((e) => e.body.data.reason)).toEqual(["operator"]);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe("the ghost sweep on a deleted stream", () => {
  it(`must not happen (fixed): a stream deleted with its publisher live, whose kick let it go and whose on_unpublish and on_close were both lost: the sweep skipped deleted streams, so the session stayed for good (no stream.ended, its publish-seconds counting, its index entry on the server, the object's alarm waking every minute)`, async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    at(0);
    try {
      const { edge, fake, s } = await publishingOnEdgeWithApi();
      expect((await admin("DELETE", `/streams/live/${s}`)).body.kicking).toEqual([expect.objectContaining({ clientId: "enc00001" })]);
      await until(() => kickedOn(fake, "enc00001") && !fake.clients.has("enc00001")); // both stop events lost

      const beatAt = async (ms: number) => (at(ms), expect(await hook({ ...heartbeat(edge), device_id: deviceOf(edge) }, undefined, "/heartbeat")).toEqual(ALLOW));
      for (const ms of [20_000, 40_000]) await beatAt(ms);
      at(50_000); // the stream's next alarm (every 60 s while it holds sessions)
      await runDurableObjectAlarm(streamStub(s));

      const ends = () => receiver.of(s).filter((e) => e.body.type === "stream.ended");
      await until(() => ends().length > 0);
      expect(ends().map((e) => e.body.data.reason)).toEqual(["operator"]);
      await until(async () => (await serverListed(edge)).sessions === 0);
    } finally {
      vi.useRealTimers();
    }
  });
});
