/**
 * Adversarial probes of the per-viewer session limit (issue 14) implemented with viewer seats
 * (src/viewers/seats.ts, src/viewers/shard.ts, src/viewers/lease.ts), under the failures an SRS
 * fleet produces: a seat contested while a server's silence or return has not reached its shard yet, and
 * the admin API with a shard it cannot ask, a limit lowered while a seat is being taken. Each failed before its fix (an adversarial pass).
 */
import { evictDurableObject, runDurableObjectAlarm } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import { ViewerSeats } from "../src/viewers/seats";
import { ViewerShard } from "../src/viewers/shard";
import { aliceReplacingOn, aliceOnASilentEdge, ALLOW, LIMIT, limited, livePerSub, playWith, seatsOf, tokenOf, screensOnTheFakeClock, a, b, c, seatsBecome, settle } from "./identity";
import { admin, createStream, hook, play, streamState, uniqueStream } from "./srs";
import { at, beat, events, holdMatching, overloaded, shardStub, until, withDeadline } from "./fleet";

const TIMEOUT_MS = 30_000;

screensOnTheFakeClock();

describe("a silent edge the registry knows of, before its notice reached the edge's viewer shard", () => {
  // README, One ticket, one screen: "a viewer whose edge dropped off the network can play through another edge as
  // soon as that edge counts as silent (SERVER_TIMEOUT_S, 30 s ...)"; Fleet state: "Nothing waits for an alarm: a
  // refusal that rests on other sessions asks the registry first."
  it("control: under a viewer cap, the refusal asks the registry: the viewer is admitted on another edge without any notice delivered", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    await beat(a);
    await beat(b);
    expect(await hook(play("live", s, { ...a, client: "tv000001" }))).toEqual(ALLOW);
    at(TIMEOUT_MS + 1000);
    await beat(b);
    expect(await hook(play("live", s, { ...b, client: "phone001" }))).toEqual(ALLOW);
  });

  it("with maxSessionsPerViewer 1 the contested seat's shard asks the registry: the viewer plays on another edge once its edge is silent (it was refused, 4016, until the registry's notice landed)", async () => {
    const { s, token } = await aliceOnASilentEdge(a, b);
    // Edge a has been silent for SERVER_TIMEOUT_S: the registry counts it as silent when asked. Its notice is not
    // delivered yet (the registry's alarm runs later, or the delivery is being retried: 5 s, 10 s, ... up to a minute).
    expect(await hook(playWith(s, b, "phone001", token))).toEqual(ALLOW);
    expect(await livePerSub(s)).toEqual({ alice: 1 });
  });
});

describe("a silent edge back, before its return's notice reached the edge's viewer shard", () => {
  // README: deny: "the first screen keeps playing, the new one is refused"; a session is live again "when the same
  // process ... sends any hook or heartbeat again ... at once".
  it("the contested seat's shard asks the registry: the TV live again keeps its seat and the phone is refused in deny mode (the stale 'suspended' ended the TV)", async () => {
    const { s, token } = await aliceOnASilentEdge(a, b, { told: true });
    // Edge a is back (its heartbeat recorded); the notice to its shard is still in the registry's outbox.
    at(TIMEOUT_MS + 2000);
    expect((await beat(a)).status).toBe(200);
    await beat(b);
    expect(await hook(playWith(s, b, "phone001", token))).toEqual(LIMIT);
    expect((await livePerSub(s)).alice).toBe(1);
    expect((await admin("GET", `/streams/live/${s}/viewers`)).body.viewers[0].sessions.map((x: any) => x.clientId)).toEqual(["tv000001"]);
  });
});

describe("the admin API when a viewer shard cannot be reached", () => {
  it("GET …/viewers and the stream's state name a viewer shard they could not ask (its viewers were silently left out)", async () => {
    const s = await limited({ maxViewers: 10 });
    expect(await hook(playWith(s, a, "tv000001", await tokenOf(s, "alice")))).toEqual(ALLOW);
    expect(await hook(playWith(s, b, "tv000002", await tokenOf(s, "bob")))).toEqual(ALLOW);
    const sessions = ViewerShard.prototype.viewerSessions;
    vi.spyOn(ViewerShard.prototype, "viewerSessions").mockImplementation(function (this: ViewerShard, ...args: Parameters<ViewerShard["viewerSessions"]>) {
      if ((this as any).serverId === a.server) throw overloaded();
      return sessions.apply(this, args);
    } as any);
    const audience = ViewerShard.prototype.audience;
    vi.spyOn(ViewerShard.prototype, "audience").mockImplementation(function (this: ViewerShard, ...args: Parameters<ViewerShard["audience"]>) {
      if ((this as any).serverId === a.server) throw overloaded();
      return audience.apply(this, args);
    } as any);
    const state = await streamState(s);
    const listed = (await admin("GET", `/streams/live/${s}/viewers`)).body;
    vi.restoreAllMocks();
    // Two viewers, alice and bob, are live: the answers say which shard they could not ask.
    expect(state.unreachable).toEqual([a.server]);
    expect(listed.unreachable).toEqual([a.server]);
    expect(listed.viewers.map((v: { sub: string }) => v.sub)).toEqual(["bob"]);
    expect((await streamState(s)).unreachable).toBeUndefined();
  });

  it("GET …/events names a viewer shard it could not ask (its lines were silently left out)", async () => {
    const s = await limited({ maxViewers: 10 });
    expect(await hook(playWith(s, a, "tv000001", await tokenOf(s, "alice")))).toEqual(ALLOW);
    expect(await hook(playWith(s, b, "tv000002", await tokenOf(s, "bob")))).toEqual(ALLOW);
    const events = ViewerShard.prototype.events;
    vi.spyOn(ViewerShard.prototype, "events").mockImplementation(function (this: ViewerShard, ...args: Parameters<ViewerShard["events"]>) {
      if ((this as any).serverId === a.server) throw overloaded();
      return events.apply(this, args);
    } as any);
    vi.spyOn(console, "error").mockImplementation(() => {});
    const listed = (await admin("GET", `/streams/live/${s}/events`)).body;
    vi.restoreAllMocks();
    expect(listed.unreachable).toEqual([a.server]);
    expect(listed.events.filter((e: any) => e.action === "on_play").map((e: any) => e.client)).toEqual(["tv000002"]);
    expect((await admin("GET", `/streams/live/${s}/events`)).body.unreachable).toBeUndefined();
  });
});

describe("the limit lowered while an on_play waits for its seat", () => {
  // README: PUT pushes the new policy "so a lower cap ... holds for the very next viewer on every edge; a viewer being
  // decided while the push arrives is checked again against it before it is admitted"; "Changing the limit applies to
  // new sessions: lowering it ends nobody, and the viewer's next on_play is refused until it is under."
  it("a seat taken under the old limit (2) while the PUT lowering it to 1 answered is taken again under the new one: the second screen is refused (it was admitted)", async () => {
    const s = await limited({ maxSessionsPerViewer: 2 });
    const token = await tokenOf(s, "family");
    expect(await hook(playWith(s, a, "tv000001", token))).toEqual(ALLOW);
    // The phone's seat request is on its way to the seat object (a seat object on another continent, or busy).
    const held = holdMatching(ViewerSeats.prototype, "take", (_self, args) => args[0].session.clientId === "phone001");
    const phone = hook(playWith(s, b, "phone001", token));
    await until(() => held.reached);
    expect((await admin("PUT", `/streams/live/${s}`, { maxSessionsPerViewer: 1 })).status).toBe(200);
    held.released = true;
    expect(await phone).toEqual(LIMIT);
    expect(await livePerSub(s)).toEqual({ family: 1 });
  });
});

/**
 * alice watches on edge `a` a token stream without a session limit; the limit (1) is set while the seat objects are
 * overloaded, so her session's seat cannot be taken then. The seat objects are fine again when this returns.
 */
async function limitSetWhileSeatsFail(): Promise<{ s: string; token: string }> {
  const s = uniqueStream();
  await createStream(s, { playAuth: "token" });
  const token = await tokenOf(s, "alice");
  expect(await hook(playWith(s, a, "tv000001", token))).toEqual(ALLOW);
  const real = ViewerSeats.prototype.take;
  let refused = 0;
  vi.spyOn(ViewerSeats.prototype, "take").mockImplementation(async function (this: ViewerSeats, ...args: Parameters<ViewerSeats["take"]>) {
    // The seats taken for sessions admitted before the limit ask with no limit.
    if (args[0].limit === Number.MAX_SAFE_INTEGER) {
      refused++;
      throw overloaded();
    }
    return real.apply(this, args);
  });
  vi.spyOn(console, "error").mockImplementation(() => {});
  expect((await admin("PUT", `/streams/live/${s}`, { maxSessionsPerViewer: 1 })).status).toBe(200);
  // The shard's background take of the TV's seat has been refused (an overloaded error is not retried); then a while
  // for that failure to reach the shard (its log muted).
  await until(() => refused > 0);
  await settle();
  vi.restoreAllMocks();
  return { s, token };
}

describe("a limit set while a viewer watches: its session's seat could not be taken then", () => {
  it("a seat that could not be taken then (the seat object overloaded) is taken by the shard's alarm 5 s later: the second screen is refused (nothing retried it)", async () => {
    const { s, token } = await limitSetWhileSeatsFail();
    // The seat object is fine again; the shard's alarm tries again.
    at(10_000);
    await runDurableObjectAlarm(shardStub(a));
    // The alarm's take runs in the background.
    await seatsBecome(s, "alice", ["tv000001"]);
    expect(await hook(playWith(s, b, "phone001", token))).toEqual(LIMIT);
    expect(await livePerSub(s)).toEqual({ alice: 1 });
  });
});

describe("a limit set while a viewer watches: its seat's retry outlives a restart of the shard", () => {
  it("the seat that could not be taken is taken by the shard's alarm after the shard restarted: the second screen is refused (the retry lived in memory and was lost)", async () => {
    const { s, token } = await limitSetWhileSeatsFail();
    // The shard restarts (a deploy, an eviction): nothing in memory survives; its stored alarm does.
    await evictDurableObject(shardStub(a));
    at(10_000);
    await runDurableObjectAlarm(shardStub(a));
    await until(async () => (await seatsOf(s, "alice")).length === 1);
    expect(await hook(playWith(s, b, "phone001", token))).toEqual(LIMIT);
    expect(await livePerSub(s)).toEqual({ alice: 1 });
  });
});

describe("replace: a repeat of the old session's on_play while its end is confirmed", () => {
  // README: "A late repeat of a replaced session's on_play (within 60 s ...) is refused instead of replacing the newer
  // session"; "A repeated on_play of a live session is not a second session."
  it("a repeat of the old session's on_play, arriving while its end is being confirmed, is refused: the newer phone stays, every live session holds a seat, and a third screen replaces the phone (the repeat replaced the phone and played without a seat, and a third screen was admitted beside it)", async () => {
    const { s, token } = await aliceReplacingOn(a);
    // Edge a's shard ends the TV for the phone; its confirmation is slow on the way back to the seat object.
    const real = ViewerShard.prototype.endSeat;
    const gate = { reached: false, released: false };
    vi.spyOn(ViewerShard.prototype, "endSeat").mockImplementation(async function (this: ViewerShard, ...args: Parameters<ViewerShard["endSeat"]>) {
      const ended = real.apply(this, args);
      if (args[1].clientId !== "tv000001" || gate.reached) return ended;
      gate.reached = true;
      while (!gate.released) await scheduler.wait(5);
      return ended;
    } as any);
    const phone = hook(playWith(s, b, "phone001", token));
    await until(() => gate.reached);
    // SRS (or the Worker retrying) sends the TV's on_play again meanwhile.
    const repeat = await hook(playWith(s, a, "tv000001", token));
    gate.released = true;
    const newer = await phone;
    await settle();
    expect(newer).toEqual(ALLOW);
    expect(repeat).toEqual({ status: 403, body: { code: 4016, reason: "viewer session limit: this session was ended for a newer one" } });
    // Every live session holds a seat: the seat object's count is the limit's only guard.
    const live = (await admin("GET", `/streams/live/${s}/viewers`)).body.viewers.flatMap((v: any) => v.sessions.map((x: any) => x.clientId)).sort();
    expect(await seatsOf(s, "alice")).toEqual(live);
    // A third screen: replace leaves exactly one session live.
    expect(await hook(playWith(s, c, "tablet01", token))).toEqual(ALLOW);
    await settle();
    expect(await livePerSub(s)).toEqual({ alice: 1 });
  });
});

describe("replace: an on_play whose hook the Worker undid while the seat object was deciding", () => {
  // README, Platform errors: "the late attempt is refused when it reaches the object (4008, ...) ... or while it
  // waits for slots, a seat or a takeover's kick (it then takes no seat, kicks nobody and ends no other session)".
  it("the seat object, still checking the old session's shard when the hook was undone, ends nobody: the viewer keeps its live session (it was left with none)", async () => {
    const { s, token } = await aliceReplacingOn(a);
    // The seat object asks edge a's shard where the TV's session stands; that answer is slow.
    const held = holdMatching(ViewerShard.prototype, "seatState", (self) => self.serverId === a.server);
    const phone = await withDeadline(100, () => hook(playWith(s, b, "phone001", token)));
    expect(phone.status).toBe(503);
    expect(held.reached).toBe(true);
    held.released = true;
    await until(async () => (await events(s)).some((e: any) => e.client === "phone001" && /admission undone/.test(e.reason)));
    await settle();
    // SRS refused the phone (its hook failed): the TV it was to replace must still play.
    expect(await livePerSub(s)).toEqual({ alice: 1 });
    expect(await seatsOf(s, "alice")).toEqual(["tv000001"]);
  });
});
