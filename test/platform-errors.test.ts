/**
 * Platform errors of object calls (src/platform/retry.ts, README "Platform
 * errors"): an error the platform marks retryable (and not overloaded) is
 * retried on a fresh stub, a bounded number of times; an overloaded one, or
 * any other, is not, and the hook fails closed with a reason naming the
 * object. Errors are thrown inside the objects' methods, as the platform's
 * are shaped: an Error with `retryable` or `overloaded` set to true, or a
 * plain one. Assertions count attempts, never milliseconds.
 */
import { env } from "cloudflare:workers";
import { runDurableObjectAlarm } from "cloudflare:test";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { withRetry } from "../src/platform/retry";
import { ServerRegistry } from "../src/server/registry";
import { serverRegistry } from "../src/object-access";
import { StreamObject } from "../src/stream/object";
import { ViewerShard } from "../src/viewers/shard";
import {
  ALLOW,
  close,
  createStream,
  type Edge,
  hook,
  HOOK_SECRET,
  hookWith,
  newEdge,
  play,
  publish,
  stopPlay,
  streamState,
  uniqueStream,
  unpublish,
} from "./srs";
import { beat, overloaded, retryable, serverListed, futureClock } from "./fleet";

const plain = () => new Error("something broke in the object");


let edge: Edge;
beforeEach(() => {
  edge = newEdge();
});
afterEach(() => {
  vi.restoreAllMocks();
});

describe("an error the platform marks retryable", () => {
  it("once on the stream's decision: the hook is still allowed, and the publisher admitted once", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    const publishSpy = vi.spyOn(StreamObject.prototype, "publish").mockImplementationOnce(async () => {
      throw retryable();
    });
    expect(await hook(publish("live", s, key, { ...edge, client: "enc00001" }))).toEqual(ALLOW);
    expect(publishSpy).toHaveBeenCalledTimes(2);
    expect((await streamState(s)).publisher).toMatchObject({ serverId: edge.server, clientId: "enc00001" });
    expect(await serverListed(edge)).toMatchObject({ sessions: 1 });
  });

  it("once on the index write: the viewer is admitted and indexed", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 5 });
    const trackSpy = vi.spyOn(ServerRegistry.prototype, "track").mockImplementationOnce(async () => {
      throw retryable();
    });
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    expect(trackSpy).toHaveBeenCalledTimes(2);
    expect((await streamState(s)).viewers).toBe(1);
    expect(await serverListed(edge)).toMatchObject({ sessions: 1 });
    // The index entry is real: on_close finds and ends the session.
    expect(await hook(close({ ...edge, client: "view0001" }))).toEqual(ALLOW);
    expect((await streamState(s)).viewers).toBe(0);
  });

  it("after the decision was made but its answer lost: the retry is a repeat, admitted once", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    const real = ViewerShard.prototype.play;
    const playSpy = vi.spyOn(ViewerShard.prototype, "play").mockImplementationOnce(async function (this: ViewerShard, ...args: Parameters<ViewerShard["play"]>) {
      await real.apply(this, args);
      throw retryable();
    });
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    expect(playSpy).toHaveBeenCalledTimes(2);
    expect((await streamState(s)).viewers).toBe(1);
    // The cap of one is held by that viewer alone.
    expect((await hook(play("live", s, { ...edge, client: "view0002" }))).status).toBe(403);
  });

  // The Worker writes an index entry per session only for publishers now (viewers: once per process, by their shard).
  it("an admission whose answer was lost is undone when the index cannot be written", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    const real = StreamObject.prototype.publish;
    const publishSpy = vi.spyOn(StreamObject.prototype, "publish").mockImplementationOnce(async function (this: StreamObject, ...args: Parameters<StreamObject["publish"]>) {
      await real.apply(this, args);
      throw retryable();
    });
    vi.spyOn(ServerRegistry.prototype, "track").mockImplementation(async () => {
      throw overloaded();
    });
    const r = await hook(publish("live", s, key, { ...edge, client: "enc00001" }));
    expect(publishSpy).toHaveBeenCalledTimes(2);
    expect(r.status).toBe(503);
    expect(r.body.reason).toBe("registry unavailable (overloaded): refused");
    vi.restoreAllMocks();
    // The retried decision said "already publishing" (admit: false), yet the first attempt's admission is undone: no ghost without an index entry.
    expect((await streamState(s)).live).toBe(false);
    expect(await hook(publish("live", s, key, { ...newEdge(), client: "enc00002" }))).toEqual(ALLOW);
  });

  it("a viewer admission whose answer was lost is undone when the retry fails too", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    const real = ViewerShard.prototype.play;
    let attempts = 0;
    vi.spyOn(ViewerShard.prototype, "play").mockImplementation(async function (this: ViewerShard, ...args: Parameters<ViewerShard["play"]>) {
      if (attempts++ > 0) throw overloaded();
      await real.apply(this, args);
      throw retryable();
    });
    const r = await hook(play("live", s, { ...edge, client: "view0001" }));
    expect(attempts).toBe(2);
    expect(r.status).toBe(503);
    expect(r.body.reason).toBe("viewer shard unavailable (overloaded): refused");
    vi.restoreAllMocks();
    // SRS refused the viewer: the first attempt's admission holds no slot.
    expect((await streamState(s)).viewers).toBe(0);
    expect(await hook(play("live", s, { ...newEdge(), client: "view0002" }))).toEqual(ALLOW);
  });

  it("every time: at most three attempts, then the hook fails closed", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    const publishSpy = vi.spyOn(StreamObject.prototype, "publish").mockImplementation(async () => {
      throw retryable();
    });
    const r = await hook(publish("live", s, key, { ...edge, client: "enc00001" }));
    expect(publishSpy).toHaveBeenCalledTimes(3);
    expect(r.status).toBe(503);
    expect(r.body).toEqual({ code: 503, reason: "stream object unavailable (still failing after retries): refused" });
    vi.restoreAllMocks();
    expect((await streamState(s)).live).toBe(false);
  });

  it("once on a stop: the session ends", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    expect(await hook(publish("live", s, key, { ...edge, client: "enc00001" }))).toEqual(ALLOW);
    const endSpy = vi.spyOn(StreamObject.prototype, "end").mockImplementationOnce(() => {
      throw retryable();
    });
    expect(await hook(unpublish("live", s, { ...edge, client: "enc00001" }))).toEqual(ALLOW);
    expect(endSpy).toHaveBeenCalledTimes(2);
    expect((await streamState(s)).live).toBe(false);
    expect(await serverListed(edge)).toMatchObject({ sessions: 0 });
  });

  // on_close looks up only publishers in the index (a viewer's close goes to its shard): a publisher's session it is.
  it("once on on_close's index lookup: the session ends", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    expect(await hook(publish("live", s, key, { ...edge, client: "enc00001" }))).toEqual(ALLOW);
    const heldSpy = vi.spyOn(ServerRegistry.prototype, "held").mockImplementationOnce(async () => {
      throw retryable();
    });
    expect(await hook(close({ ...edge, client: "enc00001" }))).toEqual(ALLOW);
    expect(heldSpy).toHaveBeenCalledTimes(2);
    expect((await streamState(s)).live).toBe(false);
    expect(await serverListed(edge)).toMatchObject({ sessions: 0 });
  });

  it("once on a heartbeat: it is recorded", async () => {
    const beatSpy = vi.spyOn(ServerRegistry.prototype, "heartbeat").mockImplementationOnce(async () => {
      throw retryable();
    });
    expect(await beat(edge)).toEqual(ALLOW);
    expect(beatSpy).toHaveBeenCalledTimes(2);
    expect(await serverListed(edge)).toMatchObject({ serviceId: edge.service, alive: true });
  });

  // Streams are told about their publishers; a viewer's process is news for its server's viewer shard (next test).
  it("once on a notice to a stream: delivered in the same alarm run", async () => {
    futureClock(); // the registry's alarm runs only when the test runs it
    await beat(edge);
    const s = uniqueStream();
    const key = await createStream(s);
    expect(await hook(publish("live", s, key, { ...edge, client: "enc00001" }))).toEqual(ALLOW);
    const real = StreamObject.prototype.applyStatus;
    let tries = 0;
    // The shard may hold other tests' servers: only notices about this edge fail, once.
    vi.spyOn(StreamObject.prototype, "applyStatus").mockImplementation(function (this: StreamObject, news) {
      if (news.serverId === edge.server && tries++ === 0) throw retryable();
      return real.call(this, news);
    });
    expect(await beat({ server: edge.server, service: newEdge().service })).toEqual(ALLOW); // a restart: the publisher's process is gone
    expect(tries).toBe(0); // the stream's notice waits for the alarm
    await runDurableObjectAlarm(serverRegistry(env, edge.server));
    expect(tries).toBe(2);
    expect((await streamState(s)).live).toBe(false);
    expect(await serverListed(edge)).toMatchObject({ pendingNotices: 0, sessions: 0 });
  });

  it("once on a notice to a viewer shard: delivered before the restart's heartbeat is answered", async () => {
    futureClock(); // else the registry's own alarm, armed for the notice, may deliver it a third time meanwhile
    await beat(edge);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 5 });
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    const real = ViewerShard.prototype.applyStatus;
    let tries = 0;
    vi.spyOn(ViewerShard.prototype, "applyStatus").mockImplementation(function (this: ViewerShard, news) {
      if (news.serverId === edge.server && tries++ === 0) throw retryable();
      return real.call(this, news);
    });
    expect(await beat({ server: edge.server, service: newEdge().service })).toEqual(ALLOW); // a restart: the viewer's process is gone
    expect(tries).toBe(2);
    expect((await streamState(s)).viewers).toBe(0);
    expect(await serverListed(edge)).toMatchObject({ pendingNotices: 0, sessions: 0 });
  });
});

describe("an overloaded object is not asked again", () => {
  it("on the stream's decision: one attempt, 503 naming the object, nothing admitted, one log line with the error's class", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    const publishSpy = vi.spyOn(StreamObject.prototype, "publish").mockImplementation(async () => {
      throw overloaded();
    });
    const errors = vi.spyOn(console, "error");
    const r = await hook(publish("live", s, key, { ...edge, client: "enc00001" }));
    expect(publishSpy).toHaveBeenCalledTimes(1);
    expect(r.status).toBe(503);
    expect(r.body).toEqual({ code: 503, reason: "stream object unavailable (overloaded): refused" });
    const lines = errors.mock.calls.map((c) => String(c[0])).filter((l) => l.includes('"decision":"error"'));
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0])).toMatchObject({
      action: "on_publish",
      stream: `__defaultVhost__/live/${s}`,
      server: edge.server,
      client: "enc00001",
      decision: "error",
      reason: "stream object unavailable (overloaded): refused",
      error: "overloaded",
      url: "/hooks/srs/***",
    });
    expect(lines[0]).not.toContain(HOOK_SECRET);
    expect(lines[0]).not.toContain(key);
    vi.restoreAllMocks();
    expect((await streamState(s)).live).toBe(false);
    // Whatever the failed hook left in the index blocks nobody.
    expect(await hook(publish("live", s, key, { ...edge, client: "enc00002" }))).toEqual(ALLOW);
  });

  // The Worker's own index write is a publisher's (on_publish tracks alongside the decision).
  it("on the index write: one attempt, the admission is undone, 503 naming the registry", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    const trackSpy = vi.spyOn(ServerRegistry.prototype, "track").mockImplementation(async () => {
      throw overloaded();
    });
    const r = await hook(publish("live", s, key, { ...edge, client: "enc00001" }));
    expect(trackSpy).toHaveBeenCalledTimes(1);
    expect(r.body).toEqual({ code: 503, reason: "registry unavailable (overloaded): refused" });
    vi.restoreAllMocks();
    expect((await streamState(s)).live).toBe(false);
    expect(await hook(publish("live", s, key, { ...edge, client: "enc00002" }))).toEqual(ALLOW);
  });

  it("on the viewer shard's once-per-process index write: one attempt, nothing admitted, 503", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    const trackSpy = vi.spyOn(ServerRegistry.prototype, "track").mockImplementation(async () => {
      throw overloaded();
    });
    const r = await hook(play("live", s, { ...edge, client: "view0001" }));
    expect(trackSpy).toHaveBeenCalledTimes(1);
    // The shard could not reach the registry: SRS's reason names the registry, not the shard the Worker called.
    expect(r.body).toEqual({ code: 503, reason: "registry unavailable (overloaded): refused" });
    vi.restoreAllMocks();
    expect((await streamState(s)).viewers).toBe(0);
    expect(await hook(play("live", s, { ...edge, client: "view0002" }))).toEqual(ALLOW);
  });

  it("on a heartbeat: one attempt, 503 naming the registry", async () => {
    const beatSpy = vi.spyOn(ServerRegistry.prototype, "heartbeat").mockImplementation(async () => {
      throw overloaded();
    });
    const r = await beat(edge);
    expect(beatSpy).toHaveBeenCalledTimes(1);
    expect(r.body).toEqual({ code: 503, reason: "registry unavailable (overloaded): heartbeat not recorded" });
    vi.restoreAllMocks();
    expect(await serverListed(edge)).toBeUndefined();
  });

  it("on a stop: one attempt, the index entry stays for on_close", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    expect(await hook(publish("live", s, key, { ...edge, client: "enc00001" }))).toEqual(ALLOW);
    const endSpy = vi.spyOn(StreamObject.prototype, "end").mockImplementationOnce(() => {
      throw overloaded();
    });
    const r = await hook(unpublish("live", s, { ...edge, client: "enc00001" }));
    expect(endSpy).toHaveBeenCalledTimes(1);
    expect(r.body).toEqual({ code: 503, reason: "stream object unavailable (overloaded): stop not recorded" });
    expect(await serverListed(edge)).toMatchObject({ sessions: 1 });
    expect(await hook(close({ ...edge, client: "enc00001" }))).toEqual(ALLOW);
    expect((await streamState(s)).live).toBe(false);
    expect(await serverListed(edge)).toMatchObject({ sessions: 0 });
  });

  it("on a viewer's stop: one attempt, the shard keeps the session for on_close", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 5 });
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    const stopSpy = vi.spyOn(ViewerShard.prototype, "stop").mockImplementationOnce(() => {
      throw overloaded();
    });
    const r = await hook(stopPlay("live", s, { ...edge, client: "view0001" }));
    expect(stopSpy).toHaveBeenCalledTimes(1);
    expect(r.body).toEqual({ code: 503, reason: "viewer shard unavailable (overloaded): stop not recorded" });
    expect((await streamState(s)).viewers).toBe(1);
    expect(await serverListed(edge)).toMatchObject({ sessions: 1 });
    expect(await hook(close({ ...edge, client: "view0001" }))).toEqual(ALLOW);
    expect((await streamState(s)).viewers).toBe(0);
    expect(await serverListed(edge)).toMatchObject({ sessions: 0 });
  });
});

describe("any other error is not retried either", () => {
  it("an error thrown by the object's own code: one attempt, 500 naming the object, nothing admitted", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 5 });
    const playSpy = vi.spyOn(ViewerShard.prototype, "play").mockImplementation(async () => {
      throw plain();
    });
    const r = await hook(play("live", s, { ...edge, client: "view0001" }));
    expect(playSpy).toHaveBeenCalledTimes(1);
    expect(r.status).toBe(500);
    expect(r.body).toEqual({ code: 500, reason: "viewer shard failed: refused" });
    vi.restoreAllMocks();
    expect((await streamState(s)).viewers).toBe(0);
  });

  it("a setting the Worker cannot read is still its own 500 naming it, with no object asked", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    const publishSpy = vi.spyOn(StreamObject.prototype, "publish");
    const r = await hookWith({ AUTH_FAILURES_PER_MINUTE: "ten" }, publish("live", s, key, { ...edge, client: "enc00001" }));
    expect(r.status).toBe(500);
    expect(r.body.reason).toMatch(/AUTH_FAILURES_PER_MINUTE must be a positive integer/);
    expect(publishSpy).not.toHaveBeenCalled();
  });
});

describe("withRetry's bounds", () => {
  it("asks for a fresh stub each attempt, and stops at the attempt limit", async () => {
    let stubs = 0;
    let calls = 0;
    const err = await withRetry(
      () => ++stubs,
      async () => {
        calls++;
        throw retryable();
      },
      { attempts: 3, baseMs: 1, capMs: 1, budgetMs: 60_000 },
    ).catch((e) => e);
    expect(err.retryable).toBe(true);
    expect({ stubs, calls }).toEqual({ stubs: 3, calls: 3 });
  });

  it("starts no retry once the budget is spent", async () => {
    let calls = 0;
    await expect(
      withRetry(
        () => null,
        async () => {
          calls++;
          throw retryable();
        },
        { attempts: 10, baseMs: 1, capMs: 1, budgetMs: -1 },
      ),
    ).rejects.toThrow("Network connection lost.");
    expect(calls).toBe(1);
  });

  it("never retries an error marked both retryable and overloaded", async () => {
    let calls = 0;
    await expect(
      withRetry(
        () => null,
        async () => {
          calls++;
          throw Object.assign(new Error("overloaded"), { retryable: true, overloaded: true });
        },
      ),
    ).rejects.toThrow("overloaded");
    expect(calls).toBe(1);
  });
});
