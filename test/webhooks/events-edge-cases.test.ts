/**
 * Adversarial review of issue 15 (events out, usage in): what a careless operator, a flaky
 * platform and a restarting SRS fleet do to webhook deliveries and usage numbers. Project
 * "webhooks" (EVENTS_WEBHOOK_URL set): hooks and admin calls as SRS and an operator make them,
 * deliveries as a receiver gets them (test/receiver.ts), usage as the admin API answers it.
 */
import { env } from "cloudflare:workers";
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import fc from "fast-check";
import { beforeEach, describe, expect, it, vi } from "vitest";
import type { Env } from "../../src/env";
import { newEvent } from "../../src/events/event";
import { ALLOW, admin, adminWith, close, createStream, hook, newEdge, play, publish, stopPlay, uniqueStream, unpublish } from "../srs";
import { at, beat, deliverNotices, restarted, streamStub, iso, T0, usage, useFakeClock } from "../fleet";
import { consume, RECEIVER_URL, Receiver, WEBHOOK_SECRET } from "../receiver";

const HOUR = 3_600_000;
useFakeClock();

let receiver: Receiver;
beforeEach(() => {
  receiver = new Receiver().install();
});


describe("a restart the stream learns of by asking the registry (before the registry's notice reaches it)", () => {
  it("the old publisher still ends at its server's last heartbeat: stream.ended's duration and publishSeconds", async () => {
    const edge = newEdge();
    const stream = uniqueStream();
    const key = await createStream(stream);
    await beat(edge);
    expect(await hook(publish("live", stream, key, { ...edge, client: "pub1" }))).toEqual(ALLOW);
    expect(await hook(play("live", stream, { ...edge, client: "v1" }))).toEqual(ALLOW);
    at(10_000);
    await beat(edge);
    // The process dies; SRS restarts 10 minutes later and the encoder reconnects at once, its
    // on_publish reaching the stream before the registry's notice of the restart does.
    at(600_000);
    const next = restarted(edge);
    await beat(next);
    expect(await hook(publish("live", stream, key, { ...next, client: "pub2" }))).toEqual(ALLOW);
    expect(await hook(play("live", stream, { ...next, client: "v2" }))).toEqual(ALLOW);
    await deliverNotices(edge);
    const events = await receiver.received(stream, 3);
    const ended = events.find((d) => d.body.type === "stream.ended")!;
    expect(ended.body.data).toMatchObject({ client_id: "pub1", reason: "restart", duration: 10 });
    at(600_000 + 5_000);
    const hour = (await usage(stream, `?from=${iso(0)}&to=${iso(HOUR)}`)).buckets[0];
    // pub1 and v1: 10 s (to their server's last heartbeat); pub2 and v2: 5 s so far.
    expect(hour).toMatchObject({ publishSeconds: 15, viewerSeconds: 15 });
  });
});

const on = (extra: Partial<Env> = {}): Env => ({ ...(env as Env), EVENTS_WEBHOOK_URL: RECEIVER_URL, EVENTS_WEBHOOK_SECRET: WEBHOOK_SECRET, ...extra });

describe("a receiver that answers with a redirect", () => {
  it("has not received the event: it is retried, never acked on what the redirect's target answers", async () => {
    const posts: string[] = [];
    // As fetch does by default ("follow"): a 302 to a POST is followed with a GET, without the body.
    const spy = vi.spyOn(globalThis, "fetch").mockImplementation(async (input: RequestInfo | URL, init?: RequestInit) => {
      const req = new Request(input, init);
      if (req.url === RECEIVER_URL) {
        if ((init?.redirect ?? "follow") !== "follow") return new Response(null, { status: 302, headers: { location: "https://receiver.test/login" } });
        return fetch("https://receiver.test/login", { method: "GET", headers: init?.headers });
      }
      if (req.method === "POST") posts.push(await req.text());
      return new Response("<html>sign in</html>", { status: 200 });
    });
    const event = newEvent("stream.started", { vhost: "__defaultVhost__", app: "live", stream: "moved", server_id: "vid-a", client_id: "c1" });
    const delays = await consume(on(), [event], 1);
    expect(spy).toHaveBeenCalled();
    expect(posts).toEqual([]);
    expect(delays).toEqual([30]);
  });
});

describe("POST /admin/events/test with a setting that cannot work (the console's Send test event)", () => {
  it("says so instead of answering 202 for an event that will never be delivered", async () => {
    const send = vi.spyOn(env.EVENTS, "sendBatch");
    for (const overrides of [
      { EVENTS_WEBHOOK_SECRET: "" },
      { EVENTS_WEBHOOK_SECRET: "too-short" },
      { EVENTS_WEBHOOK_SECRET: "whsec_c2hvcnQ=" },
      { EVENTS_WEBHOOK_SECRET: "whsec_not*base64!" },
      { EVENTS_WEBHOOK_URL: "receiver.example.com/streamgate-events" },
      { EVENTS_WEBHOOK_URL: "ftp://receiver.example.com/streamgate-events" },
    ]) {
      const res = await adminWith(overrides, "POST", "/events/test");
      expect(res.status, JSON.stringify(overrides)).toBe(409);
      expect(res.body, JSON.stringify(overrides)).toMatchObject({ configured: false, error: expect.stringMatching(/EVENTS_WEBHOOK_(SECRET|URL)/) });
      // The secret's value never appears in the answer.
      if (overrides.EVENTS_WEBHOOK_SECRET) expect(JSON.stringify(res.body)).not.toContain(overrides.EVENTS_WEBHOOK_SECRET);
    }
    // Unset is named as unset, not as a secret too short.
    const unset = await adminWith({ EVENTS_WEBHOOK_SECRET: undefined }, "POST", "/events/test");
    expect(unset.body.error).toMatch(/EVENTS_WEBHOOK_SECRET is not set/);
    expect(send).not.toHaveBeenCalled();
  });
});

describe("usage ranges an operator may type", () => {
  it("a date that does not exist (February 31) is refused, not read as March 3", async () => {
    const stream = uniqueStream();
    await createStream(stream);
    for (const bad of ["2031-02-31T00:00:00Z", "2031-02-29", "2031-04-31T12:00Z"]) {
      const res = await admin("GET", `/streams/live/${stream}/usage?from=${bad}&to=2031-03-20T00:00:00Z`);
      expect(res.status, bad).toBe(400);
    }
  });
});

describe("peakViewers adds up (test/usage-model.test.ts checks seconds only: no peak could make it fail)", () => {
  type Op = { t: "play" | "stop" | "close"; server: number; client: number } | { t: "wait"; ms: number };
  const server = fc.integer({ min: 0, max: 1 });
  const client = fc.integer({ min: 0, max: 2 });
  const op: fc.Arbitrary<Op> = fc.oneof(
    { arbitrary: fc.record({ t: fc.constant("play" as const), server, client }), weight: 4 },
    { arbitrary: fc.record({ t: fc.constant("stop" as const), server, client }), weight: 2 },
    { arbitrary: fc.record({ t: fc.constant("close" as const), server, client }), weight: 1 },
    { arbitrary: fc.record({ t: fc.constant("wait" as const), ms: fc.oneof(fc.integer({ min: 1, max: 90_000 }), fc.integer({ min: HOUR / 2, max: 3 * HOUR })) }), weight: 3 },
  );

  async function run(ops: Op[]) {
    at(0);
    const stream = uniqueStream("peak");
    await createStream(stream);
    const edges = [newEdge(), newEdge()];
    const who = (s: number, c: number) => ({ ...edges[s], client: `c${s}${c}` });
    // Per server: its viewers, the count held since `since`, and each hour's peak (max of the counts held in it).
    const servers = edges.map(() => ({ viewers: new Set<number>(), since: 0, peaks: new Map<number, number>() }));
    const hourOf = (ms: number) => Math.floor(ms / HOUR) * HOUR;
    const hold = (s: (typeof servers)[number], until: number) => {
      for (let h = hourOf(s.since); h <= hourOf(until); h += HOUR) s.peaks.set(h, Math.max(s.peaks.get(h) ?? 0, s.viewers.size));
      s.since = until;
    };
    let now = 0;
    for (const o of ops) {
      if (o.t === "wait") {
        at((now += o.ms));
        continue;
      }
      const s = servers[o.server];
      hold(s, now);
      if (o.t === "play") {
        expect((await hook(play("live", stream, who(o.server, o.client)))).status).toBe(200);
        s.viewers.add(o.client);
      } else {
        await hook(o.t === "stop" ? stopPlay("live", stream, who(o.server, o.client)) : close(who(o.server, o.client)));
        s.viewers.delete(o.client);
      }
      hold(s, now);
    }
    for (const s of servers) hold(s, now);
    const res = await admin("GET", `/streams/live/${stream}/usage?from=${iso(0)}&to=${iso(now + 1)}`);
    expect(res.status).toBe(200);
    for (const b of res.body.buckets) {
      const hour = Date.parse(b.start) - T0;
      const want = servers.reduce((sum, s) => sum + (s.peaks.get(hour) ?? 0), 0);
      expect(b.peakViewers, `peak viewers of ${b.start}`).toBe(want);
    }
  }

  it("each hour's peakViewers is the sum over the servers of the most viewers each held at once in it", async () => {
    await fc.assert(fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 30 }), run), { numRuns: 40 });
  });
});

describe("a queue send that never settles (the platform's queue hangs instead of failing)", () => {
  it("holds up neither the hook nor the stream's later events nor its alarm", async () => {
    const edge = newEdge();
    const stream = uniqueStream();
    const key = await createStream(stream);
    const send = vi.spyOn(env.EVENTS, "sendBatch").mockImplementationOnce(() => new Promise(() => {}));
    expect(await hook(publish("live", stream, key, { ...edge, client: "pub1" }))).toEqual(ALLOW);
    send.mockRestore();
    at(5_000);
    expect(await hook(unpublish("live", stream, { ...edge, client: "pub1" }))).toEqual(ALLOW);
    // The alarm (which also sweeps the stream's sessions) finishes, and both events go out.
    const alarm = runDurableObjectAlarm(streamStub(stream)).then(() => "done");
    expect(await Promise.race([alarm, new Promise((resolve) => setTimeout(() => resolve("hung"), 20_000))])).toBe("done");
    const events = await receiver.received(stream, 2);
    expect(events.map((d) => d.body.type)).toEqual(["stream.started", "stream.ended"]);
  });
});

describe("events switched off (EVENTS_WEBHOOK_URL unset) while some wait in a stream's outbox", () => {
  it("they are dropped, as the consumer drops queued ones: the stream's alarm stops instead of firing every minute forever", async () => {
    const edge = newEdge();
    const stream = uniqueStream();
    const key = await createStream(stream);
    const send = vi.spyOn(env.EVENTS, "sendBatch").mockRejectedValue(new Error("queue unavailable"));
    expect(await hook(publish("live", stream, key, { ...edge, client: "pub1" }))).toEqual(ALLOW);
    expect(await hook(unpublish("live", stream, { ...edge, client: "pub1" }))).toEqual(ALLOW);
    send.mockRestore();
    // A deploy without EVENTS_WEBHOOK_URL: the object's own env (each object has its copy).
    await runInDurableObject(streamStub(stream), (o: unknown) => {
      (o as { env: Env }).env.EVENTS_WEBHOOK_URL = "";
    });
    await runDurableObjectAlarm(streamStub(stream));
    const left = await runInDurableObject(streamStub(stream), async (_o: unknown, state: DurableObjectState) => ({
      alarm: await state.storage.getAlarm(),
      outbox: state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM event_outbox").one().n,
    }));
    expect(left).toEqual({ alarm: null, outbox: 0 });
  });
});
