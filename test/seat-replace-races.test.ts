/**
 * Races of on_play on a "replace" stream with maxSessionsPerViewer 1 (src/viewers/seats.ts take): a newer screen's
 * seat is inserted at once while the seat object ends the older session; a second on_play interleaving at the
 * awaits of that take (the same session's repeat, another screen) must neither be admitted beside the old
 * session nor be refused because of a half-finished take. Each "must not happen" test failed before its fix.
 */
import { env } from "cloudflare:workers";
import { evictDurableObject } from "cloudflare:test";
import { viewerSeats } from "../src/object-access";
import { describe, expect, it, vi } from "vitest";
import { aliceOnASilentEdge, aliceReplacingOn, ALLOW, keyOf, LIMIT, livePerSub, playWith, seatsOf, screensOnTheFakeClock, a, b, c, settle } from "./identity";
import { ViewerShard } from "../src/viewers/shard";
import { ViewerSeats } from "../src/viewers/seats";
import { admin, hook } from "./srs";
import { countCalls, events, gate, holdMatching, until, withDeadline } from "./fleet";

screensOnTheFakeClock();

/**
 * Edge a's shard is asked to end alice's TV: the call reaches it (`reached`), then waits for `outcome` to say
 * whether it fails (a platform failure: the shard cannot be reached) or runs.
 */
function tvEndHeld() {
  const reached = gate();
  const outcome = { fail: false };
  const go = gate();
  /** The calls to end the TV so far, and the ends of other sessions that have run (by client). */
  const seen = { tv: 0, ended: new Map<string, number>() };
  const real = ViewerShard.prototype.endSeat;
  vi.spyOn(ViewerShard.prototype, "endSeat").mockImplementation(async function (this: ViewerShard, ...args: Parameters<ViewerShard["endSeat"]>) {
    const client = args[1].clientId;
    if (client !== "tv000001") {
      try {
        return await real.apply(this, args);
      } finally {
        seen.ended.set(client, (seen.ended.get(client) ?? 0) + 1);
      }
    }
    seen.tv++;
    reached.open();
    await go.wait;
    if (outcome.fail) throw new Error("viewer shard failed");
    return real.apply(this, args);
  } as any);
  return {
    reached: reached.wait,
    fail: () => ((outcome.fail = true), go.open()),
    run: () => go.open(),
    tvCalls: () => seen.tv,
    endedOf: (client: string) => seen.ended.get(client) ?? 0,
  };
}

/** Counts the seat object's takes for `client` from now on (a take waiting behind another runs to its await at once). */
const takesOf = (client: string) => countCalls(ViewerSeats.prototype, "take", (_self, [req]) => req.session.clientId === client);

/** The phone (overtaken) is refused and the laptop (the last to arrive) plays alone, with the only seat. */
async function onlyTheLaptopPlays(s: string, phone: ReturnType<typeof hook>, laptop: ReturnType<typeof hook>): Promise<void> {
  const answers = [await phone, await laptop];
  await settle();
  vi.restoreAllMocks();
  expect(answers.map((x) => x.body.code)).toEqual([4016, 0]);
  expect(await livePerSub(s)).toEqual({ alice: 1 });
  expect(await seatsOf(s, "alice")).toEqual(["laptop01"]);
}

describe("replace: the newer screen's on_play repeated while the seat object is still ending the old screen", () => {
  // README: "if that shard cannot be reached ..., the new session is refused (4016 viewer session limit) rather than
  // admitted beside it"; "A repeated on_play of a live session is not a second session."
  it("must not happen: the repeat found the phone's seat (not yet granted) and was admitted at once; the TV's end then failed, and the TV and the phone both played on limit 1", async () => {
    const { s, token } = await aliceReplacingOn(a);
    vi.spyOn(console, "error").mockImplementation(() => {});
    const tv = tvEndHeld();
    const takes = takesOf("phone001");
    const phone = hook(playWith(s, b, "phone001", token));
    await tv.reached;
    // SRS (or the Worker retrying a lost answer) sends the phone's on_play again while the TV's end is on its way:
    // its take has reached the seat object (and found the phone's seat) before the TV's end fails.
    const repeat = hook(playWith(s, b, "phone001", token));
    await until(() => takes.n === 2);
    tv.fail();
    const answers = [await phone, await repeat];
    await settle();
    vi.restoreAllMocks();
    // The TV could not be ended: the phone is refused, whichever of its on_play SRS listens to.
    expect(answers).toEqual([LIMIT, LIMIT]);
    expect(await livePerSub(s)).toEqual({ alice: 1 });
    expect(await seatsOf(s, "alice")).toEqual(["tv000001"]);
  });

  it("holds: when the TV's end succeeds, both on_play of the phone are admitted and only the phone plays", async () => {
    const { s, token } = await aliceReplacingOn(a);
    const tv = tvEndHeld();
    const takes = takesOf("phone001");
    const phone = hook(playWith(s, b, "phone001", token));
    await tv.reached;
    const repeat = hook(playWith(s, b, "phone001", token));
    // The repeat's take has reached the seat object before the TV's end runs.
    await until(() => takes.n === 2);
    tv.run();
    expect([await phone, await repeat]).toEqual([ALLOW, ALLOW]);
    await settle();
    vi.restoreAllMocks();
    expect(await livePerSub(s)).toEqual({ alice: 1 });
    expect(await seatsOf(s, "alice")).toEqual(["phone001"]);
    // A third screen still replaces the phone (nothing is left marked leaving).
    expect(await hook(playWith(s, c, "laptop01", token))).toEqual(ALLOW);
    await settle();
    expect(await seatsOf(s, "alice")).toEqual(["laptop01"]);
    expect(await livePerSub(s)).toEqual({ alice: 1 });
  });
});

describe("replace: the old screen's own seat asked for while the seat object is about to end it", () => {
  it("holds: a take for the TV's session while its seat is marked leaving for the phone (before its end is under way) is refused, and no second grant of it outlives the TV's end", async () => {
    const { s, token } = await aliceReplacingOn(a);
    // The phone's take has marked the TV leaving and asks edge b's shard whether the phone's on_play is still wanted.
    const held = holdMatching(ViewerShard.prototype, "hookLive", (self) => self.serverId === b.server);
    const phone = hook(playWith(s, b, "phone001", token));
    await until(() => held.reached);
    // A shard asks for the TV's seat meanwhile (its on_play again, once the shard no longer holds it live).
    const tv = { serverId: a.server, serviceId: a.service, clientId: "tv000001" };
    const answer = await viewerSeats(env, keyOf(s), "alice").take({ streamKey: keyOf(s), sub: "alice", session: tv, limit: 1, mode: "replace" });
    expect(answer.ok).toBe(false);
    expect(answer.ok ? "" : answer.denial.reason).toMatch(/ended for a newer one/);
    held.released = true;
    expect(await phone).toEqual(ALLOW);
    await settle();
    expect(await livePerSub(s)).toEqual({ alice: 1 });
    expect(await seatsOf(s, "alice")).toEqual(["phone001"]);
  });
});

describe("replace: the newer screen's first on_play undone while the seat object asks whether it is still wanted", () => {
  // README, Platform errors: an attempt the Worker undid "takes no seat, kicks nobody and ends no other session";
  // "with replace the new session is admitted and the viewer's oldest session ends".
  it("must not happen: SRS's next on_play of the phone found the undone take's seat and was admitted at once; the undone take then ended nobody, and the TV and the phone both played on limit 1", async () => {
    const { s, token } = await aliceReplacingOn(a);
    // The seat object asks edge b's shard whether the phone's first on_play is still wanted: that answer is slow,
    // the Worker gives up on the hook (503) and undoes it.
    const held = holdMatching(ViewerShard.prototype, "hookLive", (self) => self.serverId === b.server);
    const first = await withDeadline(100, () => hook(playWith(s, b, "phone001", token)));
    expect(first.status).toBe(503);
    expect(held.reached).toBe(true);
    // The phone's on_play again (SRS re-sending it, or the player retrying at once with the same client id): its take
    // has reached the seat object (and found the undone take's seat) before the seat object hears the first is undone.
    const takes = takesOf("phone001");
    const again = hook(playWith(s, b, "phone001", token));
    await until(() => takes.n === 1);
    held.released = true;
    expect(await again).toEqual(ALLOW);
    await settle();
    expect(await livePerSub(s)).toEqual({ alice: 1 });
    expect((await events(s)).some((e: any) => e.client === "tv000001" && e.decision === "end" && /replaced by a newer session/.test(e.reason))).toBe(true);
    expect(await seatsOf(s, "alice")).toEqual(["phone001"]);
    const listed = (await admin("GET", `/streams/live/${s}/viewers`)).body.viewers;
    expect(listed.map((v: any) => v.sessions.map((x: any) => x.clientId))).toEqual([["phone001"]]);
  });
});

describe("replace: the seat object fails (a code update resets it) while it ends the old screen for the newer one", () => {
  it("must not happen: the phone's next on_play found the seat its interrupted take had inserted, was admitted beside the TV (never ended), and both played on limit 1", async () => {
    const { s, token } = await aliceReplacingOn(a);
    vi.spyOn(console, "error").mockImplementation(() => {});
    // The seat object is reset mid-take, after it stored the phone's seat and marked the TV leaving, before it ended the TV.
    vi.spyOn(ViewerSeats.prototype as any, "endSeats").mockImplementation(async () => {
      throw new Error("Durable Object reset because its code was updated.");
    });
    // The hook fails (SRS refuses that attempt).
    expect((await hook(playWith(s, b, "phone001", token))).status).toBeGreaterThanOrEqual(500);
    vi.restoreAllMocks();
    await evictDurableObject(viewerSeats(env, keyOf(s), "alice"));
    vi.spyOn(console, "error").mockImplementation(() => {});
    // The phone's on_play again: it replaces the TV like any newer screen.
    expect(await hook(playWith(s, b, "phone001", token))).toEqual(ALLOW);
    await settle();
    expect(await livePerSub(s)).toEqual({ alice: 1 });
    expect(await seatsOf(s, "alice")).toEqual(["phone001"]);
  });
});

describe("replace: the phone and the laptop race on two edges while the TV plays", () => {
  it("holds: the last to reach the seat object stays, one session is live, the seats match it", async () => {
    const { s, token } = await aliceReplacingOn(a);
    const tv = tvEndHeld();
    const phone = hook(playWith(s, b, "phone001", token));
    await tv.reached;
    const laptop = hook(playWith(s, c, "laptop01", token));
    // The laptop has reached the seat object (its take marked the TV and the phone leaving and asks to end both) and
    // edge b's shard has run its end of the phone (still being admitted) before the phone's end of the TV runs.
    await until(() => tv.tvCalls() === 2 && tv.endedOf("phone001") === 1);
    tv.run();
    await onlyTheLaptopPlays(s, phone, laptop);
  });
});

describe("replace: the phone and the laptop race while the network to the TV's edge fails after the TV ended", () => {
  // README: "Of several screens racing, the last to arrive stays"; the refusal when a shard cannot be reached is for a
  // session that could not be ended, "rather than admitted beside it".
  it("must not happen: the laptop's own call to end the TV (already ended for the phone) failed, so the laptop was refused after it had ended the phone: the viewer was left with no screen", async () => {
    const { s, token } = await aliceReplacingOn(a);
    vi.spyOn(console, "error").mockImplementation(() => {});
    const phoneEnds = gate();
    const phoneEndedTv = gate();
    const real = ViewerShard.prototype.endSeat;
    let n = 0;
    vi.spyOn(ViewerShard.prototype, "endSeat").mockImplementation(async function (this: ViewerShard, ...args: Parameters<ViewerShard["endSeat"]>) {
      if (args[1].clientId !== "tv000001") return real.apply(this, args);
      if (++n === 1) {
        // The phone's end of the TV: slow, then done.
        await phoneEnds.wait;
        const ended = real.apply(this, args);
        phoneEndedTv.open();
        return ended;
      }
      // The laptop's end of the TV: edge a's shard cannot be reached any more.
      await phoneEndedTv.wait;
      throw new Error("viewer shard failed");
    } as any);
    const phone = hook(playWith(s, b, "phone001", token));
    await until(() => n === 1);
    const laptop = hook(playWith(s, c, "laptop01", token));
    await until(() => n === 2);
    phoneEnds.open();
    await onlyTheLaptopPlays(s, phone, laptop);
  });
});

describe("deny: two screens race while the viewer's TV is on a silent edge", () => {
  it("holds: exactly one is admitted, the TV's session ends, the seats match the live session", async () => {
    const { s, token } = await aliceOnASilentEdge(a, b, { told: true });
    const answers = await Promise.all([hook(playWith(s, b, "phone001", token)), hook(playWith(s, c, "laptop01", token))]);
    await settle();
    expect(answers.map((x) => x.body.code).sort()).toEqual([0, 4016]);
    const admitted = answers[0].body.code === 0 ? "phone001" : "laptop01";
    expect(await seatsOf(s, "alice")).toEqual([admitted]);
    expect(await livePerSub(s)).toEqual({ alice: 1 });
  });
});
