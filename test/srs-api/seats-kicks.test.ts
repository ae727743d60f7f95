/**
 * The per-viewer session limit (issue 14) with SRS's HTTP API (SRS_API_URL set: this file runs in the "srs-api"
 * project) when a viewer's first edge is cut off longer than a kick is usually retried. See also
 * test/seats-under-failures.test.ts. (Found by an adversarial pass: the test failed before its fix.)
 */
import { runDurableObjectAlarm } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import { heartbeat, hook, type Edge } from "../srs";
import { ALLOW, deviceOf, edgeWithApi, type FakeSrs, installFakeSrs, kickedOn } from "../fake-srs";
import { at, countCalls, deliverNotices, events, serverStub, until } from "../fleet";
import { aliceTvAndAnotherEdge, limited, livePerSub, playWith, tokenOf } from "../identity";
import { ViewerShard } from "../../src/viewers/shard";
import { ServerRegistry } from "../../src/server/registry";
import { retryable } from "../fleet";

installFakeSrs();
afterEach(() => void vi.useRealTimers());

const beatApi = (edge: Edge) => hook({ ...heartbeat(edge), device_id: deviceOf(edge) }, undefined, "/heartbeat");

describe("a viewer moves to another edge while its first edge is cut off for longer than a kick is retried (5 min)", () => {
  // README, One ticket, one screen: "The silent server's session then ends (log: `viewer alice plays again on server …
  // while this session's server is silent`; kicked when the API is reachable), so the limit still holds when that
  // server comes back." A partition may last up to SESSION_GRACE_S (a day); a kick is dropped after KICK_RETRY_MS.
  const cutOff: [string, (fake: FakeSrs) => void, (fake: FakeSrs) => void][] = [
    ["unreachable", (fake) => void (fake.reachable = false), (fake) => void (fake.reachable = true)],
    // A tunnel or load balancer in front of the cut-off edge answers for it.
    ["behind a proxy that answers 502", (fake) => void (fake.override = () => new Response("bad gateway", { status: 502 })), (fake) => void (fake.override = null)],
  ];
  for (const [how, cut, heal] of cutOff) it(`the cut-off edge (${how}) comes back after 10 minutes with the TV still playing there: the TV is kicked at once (its kick was given up after 5 minutes, and two screens played on limit 1)`, async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    at(0);
    const a = await edgeWithApi(["tv000001"]);
    const b = await edgeWithApi(["phone001"]);
    const s = await limited();
    const token = await tokenOf(s, "alice");
    expect(await hook(playWith(s, a.edge, "tv000001", token))).toEqual(ALLOW);
    // Edge a drops off the network (hooks, heartbeats and its API alike).
    cut(a.fake);
    at(31_000);
    await beatApi(b.edge);
    await runDurableObjectAlarm(serverStub(a.edge));
    await deliverNotices(a.edge);
    const queued = countCalls(ServerRegistry.prototype, "queueKicks", (_self, [kicks]) => kicks.some((k: any) => k.clientId === "tv000001"));
    expect(await hook(playWith(s, b.edge, "phone001", token))).toEqual(ALLOW);
    // The kick of the TV is queued at edge a's registry (in the background) before the clock moves on.
    await until(() => queued.done > 0);
    // The kick of the TV keeps being tried past the usual 5 minutes (as long as the edge's sessions may come back).
    for (let t = 40_000; t <= 31_000 + 6 * 60_000; t += 30_000) {
      at(t);
      await beatApi(b.edge);
      await runDurableObjectAlarm(serverStub(a.edge));
    }
    expect((await events(s)).some((e: any) => e.action === "kick" && e.client === "tv000001")).toBe(false);
    // Edge a is back, the TV still connected to it.
    at(10 * 60_000);
    heal(a.fake);
    expect((await beatApi(a.edge)).status).toBe(200);
    await beatApi(b.edge);
    await deliverNotices(a.edge);
    await runDurableObjectAlarm(serverStub(a.edge));
    // The kick's attempt (in the background) has reached edge a's SRS, which drops the TV.
    await until(() => !a.fake.clients.has("tv000001"));
    const twoScreens = a.fake.clients.has("tv000001") && b.fake.clients.has("phone001");
    expect(kickedOn(a.fake, "tv000001")).toBe(true);
    expect(twoScreens).toBe(false);
    expect((await livePerSub(s)).alice).toBe(1);
  });
});

describe("replace: the shard's answer to the end of the old session is lost", () => {
  it("the old screen is still kicked (the retry found the session gone, answered that nothing ended, and nothing was kicked: two screens played on limit 1)", async () => {
    const { a, b, s, token } = await aliceTvAndAnotherEdge(["phone001"]);
    const real = ViewerShard.prototype.endSeat;
    let calls = 0;
    const spy = vi.spyOn(ViewerShard.prototype, "endSeat").mockImplementation(function (this: ViewerShard, ...args: Parameters<ViewerShard["endSeat"]>) {
      const ended = real.apply(this, args);
      if (calls++ === 0) throw retryable(); // it ended the TV's session; its answer is lost on the way back
      return ended;
    });
    expect(await hook(playWith(s, b.edge, "phone001", token))).toEqual(ALLOW);
    spy.mockRestore(); // only this one: the fake SRS answers the Worker's fetch through another spy
    // The kick runs in the background (queued at edge a's registry, then sent to its API).
    await until(() => kickedOn(a.fake, "tv000001"));
    expect(calls).toBe(2);
    expect(kickedOn(a.fake, "tv000001")).toBe(true);
    expect((await livePerSub(s)).alice).toBe(1);
  });
});
