/**
 * WebRTC hooks as SRS 7 sends them (bodies captured in e2e run 48), and two WebRTC sessions with one
 * client id (src/viewers/admission.ts webrtcTwin). SRS names a WHEP player by its HTTP connection's id and answers with "Connection: Close"; a client that ignores that and posts a second
 * offer on the same connection gets a second session with the same client id. e2e run 48 (real SRS 7.0.18,
 * Chromium players on one TCP connection): both sessions connected on a stream capped at 1, and the gate,
 * taking the second on_play for a repeat of the first, counted one viewer. Such a session cannot be counted
 * apart (its on_stop carries the same id), so it is refused.
 */
import { env } from "cloudflare:workers";
import { evictDurableObject } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import { ShardLeases } from "../src/viewers/shard-leases";
import { ALLOW, captured, createStream, hook, newEdge, play, stopPlay, streamState, uniqueStream, whepPlay } from "./srs";
import { events } from "./fleet";
import { LIMIT, limited, tokenOf } from "./identity";

const TWIN = { status: 403, body: { code: 4007, reason: "client id already live: a second WebRTC session on the same HTTP connection cannot be counted apart" } };

describe("a second WebRTC session on the same HTTP connection (the same client id) is refused", () => {
  it("at a stream capped at 1: the second offer is refused (4007), one viewer counted, and the decision log says why", async () => {
    const edge = newEdge();
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    expect(await hook(whepPlay(s, { ...edge, client: "conn0001" }))).toEqual(ALLOW);
    expect(await hook(whepPlay(s, { ...edge, client: "conn0001" }))).toEqual(TWIN);
    expect(await streamState(s)).toMatchObject({ viewers: 1 });
    expect((await events(s)).some((e: any) => e.client === "conn0001" && e.decision === "deny" && /same HTTP connection/.test(e.reason))).toBe(true);
  });

  it("on an unlimited stream too (uncounted sessions), and with a token naming a viewer limited to one screen", async () => {
    const edge = newEdge();
    const open = uniqueStream();
    await createStream(open, {});
    expect(await hook(whepPlay(open, { ...edge, client: "conn0002" }))).toEqual(ALLOW);
    expect(await hook(whepPlay(open, { ...edge, client: "conn0002" }))).toEqual(TWIN);
    expect(await streamState(open)).toMatchObject({ viewers: 1 });
    const s = await limited();
    const token = await tokenOf(s, "alice");
    expect(await hook(whepPlay(s, { ...edge, client: "conn0003" }, `token=${token}`))).toEqual(ALLOW);
    expect(await hook(whepPlay(s, { ...edge, client: "conn0003" }, `token=${token}`))).toEqual(TWIN);
    // A second screen on its own connection is the session limit's business, as before.
    expect(await hook(whepPlay(s, { ...edge, client: "conn0004" }, `token=${token}`))).toEqual(LIMIT);
  });

  it("a twin that waited for slots while the first offer took the last one is refused (4007), not answered 'already live' for its cap refusal", async () => {
    const edge = newEdge();
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    // The twin's ask for slots waits until the first offer of its client id took the stream's only slot.
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const real = ShardLeases.prototype.askForSlots;
    let calls = 0;
    const spy = vi.spyOn(ShardLeases.prototype, "askForSlots").mockImplementation(async function (this: ShardLeases, ...args: Parameters<ShardLeases["askForSlots"]>) {
      if (calls++ === 0) await held;
      return real.apply(this, args);
    });
    try {
      // The stream is full (another viewer), so the twin asks for slots; that viewer leaves; the first offer takes its slot.
      expect(await hook(play("live", s, { ...edge, client: "rtmp0010" }))).toEqual(ALLOW);
      const twin = hook(whepPlay(s, { ...edge, client: "conn0010" }));
      while (calls === 0) await new Promise((r) => setTimeout(r, 5));
      expect(await hook(stopPlay("live", s, { ...edge, client: "rtmp0010" }))).toEqual(ALLOW);
      expect(await hook(whepPlay(s, { ...edge, client: "conn0010" }))).toEqual(ALLOW);
      release();
      expect(await twin).toEqual(TWIN);
      expect(await streamState(s)).toMatchObject({ viewers: 1 });
    } finally {
      spy.mockRestore();
    }
  });

  it("five offers with one client id at once (hooks deciding side by side), at a stream capped at 1 and at an unlimited one: one session, the others refused (4007)", async () => {
    for (const policy of [{ maxViewers: 1 }, {}]) {
      for (let round = 0; round < 5; round++) {
        const edge = newEdge();
        const s = uniqueStream();
        await createStream(s, policy);
        const answers = await Promise.all(Array.from({ length: 5 }, () => hook(whepPlay(s, { ...edge, client: "conn0009" }))));
        expect(answers.filter((a) => a.status === 200)).toEqual([ALLOW]);
        expect(answers.filter((a) => a.status !== 200)).toEqual(Array(4).fill(TWIN));
        expect(await streamState(s)).toMatchObject({ viewers: 1 });
      }
    }
  });

  it("after the first session's on_stop, the same client id plays again (a client that stopped, then posted again)", async () => {
    const edge = newEdge();
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    expect(await hook(whepPlay(s, { ...edge, client: "conn0005" }))).toEqual(ALLOW);
    expect(await hook(stopPlay("live", s, { ...edge, client: "conn0005" }))).toEqual(ALLOW);
    expect(await hook(whepPlay(s, { ...edge, client: "conn0005" }))).toEqual(ALLOW);
    expect(await streamState(s)).toMatchObject({ viewers: 1 });
  });

  it("another attempt of the same on_play (the Worker's retry, the same hook id) is still the same session, and an RTMP repeat still 'already live'", async () => {
    const edge = newEdge();
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    expect(await hook(play("live", s, { ...edge, client: "rtmp0006" }))).toEqual(ALLOW);
    expect(await hook(play("live", s, { ...edge, client: "rtmp0006" }))).toEqual(ALLOW);
    const shard = env.VIEWERS.get(env.VIEWERS.idFromName(edge.server));
    const other = uniqueStream();
    await createStream(other, { maxViewers: 1 });
    const attempt = () =>
      shard.play({
        streamKey: `__defaultVhost__/live/${other}`,
        session: { serverId: edge.server, serviceId: edge.service, clientId: "conn0007" },
        ip: "127.0.0.1",
        token: { ok: true },
        guessLimit: 10,
        hookId: "one-hook",
        place: { colo: "FRA", country: "DE" },
        webrtc: true,
      });
    expect(await attempt()).toEqual({ allow: true, admit: true });
    expect(await attempt()).toEqual({ allow: true, admit: false });
    expect(await streamState(other)).toMatchObject({ viewers: 1 });
  });
});

describe("a twin on another stream, and a twin's undo", () => {
  it("an offer for another stream on the same connection is refused too (4007): SRS's API names a client by id alone, so when either session ends, the other passes for a ghost", async () => {
    const edge = newEdge();
    const a = uniqueStream();
    const b = uniqueStream();
    await createStream(a, {});
    await createStream(b, { maxViewers: 1 });
    expect(await hook(whepPlay(a, { ...edge, client: "conn0010" }))).toEqual(ALLOW);
    expect(await hook(whepPlay(b, { ...edge, client: "conn0010" }))).toEqual(TWIN);
    expect(await streamState(b)).toMatchObject({ viewers: 0 });
    // Once the first session's on_stop came, the id is free again.
    expect(await hook(stopPlay("live", a, { ...edge, client: "conn0010" }))).toEqual(ALLOW);
    expect(await hook(whepPlay(b, { ...edge, client: "conn0010" }))).toEqual(ALLOW);
  });

  it("five offers with one client id for five streams at once: one session, the others refused (4007)", async () => {
    for (let round = 0; round < 3; round++) {
      const edge = newEdge();
      const streams = Array.from({ length: 5 }, () => uniqueStream());
      for (const s of streams) await createStream(s, { maxViewers: 1 });
      const answers = await Promise.all(streams.map((s) => hook(whepPlay(s, { ...edge, client: "conn0011" }))));
      expect(answers.filter((x) => x.status === 200)).toEqual([ALLOW]);
      expect(answers.filter((x) => x.status !== 200)).toEqual(Array(4).fill(TWIN));
    }
  });

  it("the Worker's undo of a twin's hook (its call failed) leaves the session another hook admitted, also after the shard was evicted", async () => {
    const edge = newEdge();
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    const shard = env.VIEWERS.get(env.VIEWERS.idFromName(edge.server));
    const streamKey = `__defaultVhost__/live/${s}`;
    const session = { serverId: edge.server, serviceId: edge.service, clientId: "conn0012" };
    const req = (hookId: string) => ({ streamKey, session, ip: "127.0.0.1", token: { ok: true } as const, guessLimit: 10, hookId, place: { colo: "FRA", country: "DE" }, webrtc: true });
    expect(await shard.play(req("first-hook"))).toEqual({ allow: true, admit: true });
    await evictDurableObject(env.VIEWERS.get(env.VIEWERS.idFromName(edge.server)));
    const again = env.VIEWERS.get(env.VIEWERS.idFromName(edge.server));
    await again.stop(streamKey, session, { action: "on_play", ip: "127.0.0.1", reason: "admission undone: the decision's answer was lost", voidHook: "twin-hook" });
    expect(await streamState(s)).toMatchObject({ viewers: 1 });
  });
});

describe("WebRTC hooks as SRS 7 sent them in e2e run 48", () => {
  it("a WHIP publisher with its key in the raw query is admitted; the on_unpublish SRS sends 30 s after a WHIP publish whose on_publish failed ends nothing", async () => {
    const edge = newEdge();
    const s = uniqueStream();
    const key = await createStream(s, { maxViewers: 1 });
    const whip = (action: string, note: string, client: string) => ({
      ...captured(action, note), server_id: edge.server, service_id: edge.service, client_id: client, stream: s, stream_url: `/live/${s}`, param: `app=live&stream=${s}&key=${key}`,
    });
    expect(await hook(whip("on_publish", "WHIP publisher (Chromium)", "whip0001"))).toEqual(ALLOW);
    expect(await hook(whip("on_unpublish", "whose on_publish failed", "whip0000"))).toEqual(ALLOW);
    expect(await streamState(s)).toMatchObject({ live: true, publisher: { clientId: "whip0001" } });
    expect(await hook(whepPlay(s, { ...edge, client: "whep0001" }))).toEqual(ALLOW);
    expect(await hook({ ...captured("on_stop", "WHEP player"), server_id: edge.server, service_id: edge.service, client_id: "whep0001", stream: s, stream_url: `/live/${s}` })).toEqual(ALLOW);
    expect(await streamState(s)).toMatchObject({ viewers: 0 });
  });
});
