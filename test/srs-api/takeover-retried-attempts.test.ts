/**
 * Adversarial review (third pass) of on_publish's index entry and takeover: 1941fc4 (`indexed`
 * admissions), eb1aa3a (the forget after an undo of a lost answer), a1d117c (the kicked holder's
 * entry), 5d17b1a (stop events marking decisions under way). A flaky platform (attempts that run
 * twice, answers lost after running, calls that land late) and an SRS fleet that sends a client's
 * on_publish again. Runs in the "srs-api" project, against test/fake-srs.ts.
 */
import { describe, expect, it, vi } from "vitest";
import { heartbeat, hook, newEdge, publish, streamState, unpublish } from "../srs";
import { ALLOW, deviceOf, installFakeSrs, kickedOn, takeoverReady } from "../fake-srs";
import { ServerRegistry } from "../../src/server/registry";
import { StreamObject } from "../../src/stream/object";
import { GhostCheck } from "../../src/srs/ghosts";
import { deliverNotices, expectNoTakeover, holdMatching, retryable, serverListed, streamStub, tracksOf, until, withDeadline } from "../fleet";

installFakeSrs();

type PublishArgs = Parameters<StreamObject["publish"]>;

/**
 * The stream's first publish call runs (in the background, not awaited) and its answer is lost (retryable) once
 * `reached` says that attempt got where the test needs it: the Worker retries while that attempt goes on. Later
 * calls run as usual.
 */
function firstAttemptLostWhileRunning(reached: () => boolean) {
  const real = StreamObject.prototype.publish;
  const state = { first: null as PublishArgs | null, calls: 0 };
  vi.spyOn(StreamObject.prototype, "publish").mockImplementation(async function (this: StreamObject, ...args: PublishArgs) {
    if (state.calls++ === 0) {
      state.first = args;
      real.apply(this, args).catch(() => {});
      // A flag, polled (a promise of the test's cannot be awaited inside the object); at most 10 s.
      for (let i = 0; i < 2_000 && !reached(); i++) await scheduler.wait(5);
      throw retryable();
    }
    return real.apply(this, args);
  });
  return state;
}


describe("adversarial: takeover attempts that run twice", () => {
  it("must not happen (fixed): the retried attempt is refused 4009 (its own index write failed) while the first goes on: SRS is told 4009, and the first then kicks the old publisher and admits the refused client", async () => {
    const { a, b, s, key } = await takeoverReady();
    // b's tracks: 1 the Worker's (through), 2 the first attempt's before its kick (held), 3 the retry's (overloaded).
    const tracks = tracksOf(b.edge.server, (n) => (n === 2 ? "hold" : n === 3 ? "fail" : "run"));
    // The first attempt's answer is lost once its write is held (b's second track), so the retry's is the third.
    const attempts = firstAttemptLostWhileRunning(() => tracks.held);
    const r = await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }));
    expect(attempts.calls).toBe(2);
    expect(r.body.code).toBe(4009);
    // SRS refused enc00002. The first attempt's write lands now.
    tracks.released = true;
    await until(() => tracks.done);
    await scheduler.wait(300);
    await expectNoTakeover({ a, b, s, key });
  });

  it("must not happen (fixed): the retried attempt is refused 4009 while the first is in its kick: the refused client is admitted after SRS was told 4009, and its index entry is gone (held, unindexed)", async () => {
    const { a, b, s, key } = await takeoverReady();
    tracksOf(b.edge.server, (n) => (n === 3 ? "fail" : "run"));
    const kick = holdMatching(GhostCheck.prototype, "kick", () => true);
    // The first attempt's answer is lost once it is in its kick (its write, b's second track, done), so the retry's is the third.
    firstAttemptLostWhileRunning(() => kick.reached);
    const r = await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }));
    expect(r.body.code).toBe(4009);
    expect(kick.reached).toBe(true);
    kick.released = true;
    await until(() => kick.done);
    await scheduler.wait(300);
    await until(() => a.fake.inFlight === 0);
    const state = await streamState(s);
    // Whoever holds the stream is indexed: enc00002 (refused by SRS) must not hold it at all.
    expect(state.publisher?.clientId).not.toBe("enc00002");
    // A restart of b must not leave anything of enc00002 live.
    const b2 = { server: b.edge.server, service: newEdge().service };
    expect(await hook({ ...heartbeat(b2), device_id: deviceOf(b.edge) }, undefined, "/heartbeat")).toEqual(ALLOW);
    await deliverNotices(b.edge);
    expect((await streamState(s)).publisher?.clientId).not.toBe("enc00002");
  });

  it("must not happen (fixed): the first attempt takes over (entry written, old publisher kicked) and its answer is lost; the retry says 'already publishing' without `indexed`, the Worker's own write fails, and the admission is undone: the old publisher kicked for nobody", async () => {
    const { a, b, s, key } = await takeoverReady();
    // The Worker's track (b's first) fails; the stream's before its kick goes through.
    tracksOf(b.edge.server, (n) => (n === 1 ? "fail" : "run"));
    const real = StreamObject.prototype.publish;
    let calls = 0;
    vi.spyOn(StreamObject.prototype, "publish").mockImplementation(async function (this: StreamObject, ...args: PublishArgs) {
      const d = await real.apply(this, args);
      if (calls++ === 0) throw retryable(); // ran to the end, answer lost
      return d;
    });
    const r = await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }));
    expect(calls).toBe(2);
    if (kickedOn(a.fake, "enc00001")) {
      expect(r).toEqual(ALLOW);
      expect((await streamState(s)).publisher).toMatchObject({ clientId: "enc00002", state: "live" });
      expect((await serverListed(b.edge)).sessions).toBe(1);
    } else {
      expect(r.status).not.toBe(200);
    }
  });
});

describe("adversarial: stop events and undos around a decision", () => {
  it("must not happen (fixed): a late attempt of an on_publish lands after the retried attempt was allowed and the client unpublished: it admits the session again, held with no index entry", async () => {
    const { a, b, s, key } = await takeoverReady();
    // enc00001 leaves: the stream is free for enc00002 on b.
    expect(await hook(unpublish("live", s, { ...a.edge, client: "enc00001" }))).toEqual(ALLOW);
    const real = StreamObject.prototype.publish;
    let first: PublishArgs | null = null;
    vi.spyOn(StreamObject.prototype, "publish").mockImplementation(async function (this: StreamObject, ...args: PublishArgs) {
      if (first === null) {
        first = args; // on its way: it lands later
        throw retryable();
      }
      return real.apply(this, args);
    });
    expect(await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }))).toEqual(ALLOW);
    expect(await hook(unpublish("live", s, { ...b.edge, client: "enc00002" }))).toEqual(ALLOW);
    expect((await serverListed(b.edge)).sessions).toBe(0);
    // The first attempt lands now.
    const late = await streamStub(s).publish(...first!);
    expect(late.allow).toBe(false);
    expect((await streamState(s)).live).toBe(false);
  });

  it("must not happen (fixed): the undo of an older on_publish of the client (its answer lost, the undo slow) lands while SRS's next on_publish of the same client is decided: that legitimate attempt is refused 4008", async () => {
    const { a, b, s, key } = await takeoverReady();
    const real = StreamObject.prototype.publish;
    let calls = 0;
    vi.spyOn(StreamObject.prototype, "publish").mockImplementation(async function (this: StreamObject, ...args: PublishArgs) {
      if (calls++ === 0) throw new Error("the object failed"); // may have run: the Worker undoes
      return real.apply(this, args);
    });
    // The undo (the stream's end with the hook to void) is slow: the Worker answers without it.
    const undo = holdMatching(StreamObject.prototype, "end", (_self, args) => args[1]?.voidHook !== undefined);
    const r1 = await withDeadline(300, () => hook(publish("live", s, key, { ...b.edge, client: "enc00002" })));
    expect(r1.status).not.toBe(200);
    expect(undo.reached).toBe(true);
    // SRS sends the client's on_publish again; its takeover asks the old edge (slow), and the undo lands meanwhile.
    a.fake.delayMs = 400;
    const pending = hook(publish("live", s, key, { ...b.edge, client: "enc00002" }));
    await until(() => a.fake.calls.length > 0);
    undo.released = true;
    await until(() => undo.done);
    const r2 = await pending;
    expect(r2).toEqual(ALLOW);
    expect((await streamState(s)).publisher).toMatchObject({ clientId: "enc00002", state: "live" });
    expect((await serverListed(b.edge)).sessions).toBe(1);
  });

  it("must not happen (fixed): the forget after an undo of a lost answer lands late (registry slow), after SRS's next on_publish of the same client was admitted: it drops the live session's index entry", async () => {
    const { a, b, s, key } = await takeoverReady();
    void a;
    const real = StreamObject.prototype.publish;
    let calls = 0;
    vi.spyOn(StreamObject.prototype, "publish").mockImplementation(async function (this: StreamObject, ...args: PublishArgs) {
      if (calls++ === 0) throw new Error("the object failed");
      return real.apply(this, args);
    });
    const forget = holdMatching(ServerRegistry.prototype, "forget", (_self, args) => args[4] !== undefined);
    const r1 = await withDeadline(300, () => hook(publish("live", s, key, { ...b.edge, client: "enc00002" })));
    expect(r1.status).not.toBe(200);
    expect(forget.reached).toBe(true);
    expect(await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }))).toEqual(ALLOW);
    expect((await serverListed(b.edge)).sessions).toBe(1);
    forget.released = true;
    await until(() => forget.done);
    // enc00002 is held: its entry must stay, and a restart of b must end it.
    expect((await streamState(s)).publisher).toMatchObject({ clientId: "enc00002", state: "live" });
    expect((await serverListed(b.edge)).sessions).toBe(1);
    const b2 = { server: b.edge.server, service: newEdge().service };
    expect(await hook({ ...heartbeat(b2), device_id: deviceOf(b.edge) }, undefined, "/heartbeat")).toEqual(ALLOW);
    await deliverNotices(b.edge);
    expect((await streamState(s)).live).toBe(false);
  });
});
