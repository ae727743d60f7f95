/**
 * Delivery of events to EVENTS_WEBHOOK_URL by the queue consumer (src/events/deliver.ts): signed
 * per Standard Webhooks, retried with backoff while the receiver fails, the same webhook-id and
 * body on every attempt, nothing when events are off.
 */
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Env } from "../src/env";
import { newEvent } from "../src/events/event";
import { consume, RECEIVER_URL, Receiver, WEBHOOK_SECRET } from "./receiver";
import { admin, createStream, hook, newEdge, play, publish, uniqueStream, unpublish } from "./srs";
import { streamStub } from "./fleet";
import { signDelivery, signingKey } from "../src/events/sign";
import { DELIVERY_TIMEOUT_MS } from "../src/events/deliver";
import { readmeText } from "./token-vectors";

const on = (extra: Partial<Env> = {}): Env => ({ ...(env as Env), EVENTS_WEBHOOK_URL: RECEIVER_URL, EVENTS_WEBHOOK_SECRET: WEBHOOK_SECRET, ...extra });
const started = (stream: string) => newEvent("stream.started", { vhost: "__defaultVhost__", app: "live", stream, server_id: "vid-a", client_id: "c1" });

afterEach(() => vi.restoreAllMocks());

describe("webhook delivery", () => {
  it("a receiver that answers 500 to its first 3 deliveries still gets every event, each with its own id on every attempt", async () => {
    const receiver = new Receiver().install();
    receiver.failFirst = 3;
    const events = [started("a"), newEvent("stream.ended", { vhost: "__defaultVhost__", app: "live", stream: "a", duration: 5, peakViewers: 2 })];
    const delays = await consume(on(), events);
    expect(receiver.events.map((d) => d.id).sort()).toEqual(events.map((e) => e.id).sort());
    // Every attempt of an event carried its id and the same body, signed (verified here independently).
    for (const e of events) {
      const attempts = receiver.attempts.filter((a) => a.id === e.id);
      expect(attempts.length).toBeGreaterThan(0);
      for (const a of attempts) expect(a.body).toEqual({ type: e.type, timestamp: e.timestamp, data: e.data });
    }
    expect(receiver.attempts.every((a) => a.signatureValid)).toBe(true);
    expect(receiver.attempts).toHaveLength(5);
    // Backoff: the first retry after 30 s, the next one later.
    expect(delays[0]).toBe(30);
    expect(Math.max(...delays)).toBeGreaterThan(30);
  });

  it("a receiver that answers 429 or 503 with Retry-After is tried again no sooner than it asked (seconds or an HTTP date), never sooner than the backoff, and at most an hour later: 20 retries stay within a queue's shortest retention (24 h), so a receiver asking for days gets its events dead-lettered, not dropped", async () => {
    const receiver = new Receiver().install();
    vi.spyOn(console, "error").mockImplementation(() => {});
    const asks: [number, string][] = [
      [429, "120"], [503, new Date(Date.now() + 3_000_000).toUTCString()], [503, "5"], [429, "43200"], [503, "soon"], [500, "600"],
      // Not a delay nor an HTTP date (a loose date parser read the first as a date in 3000); the same delay sent twice.
      [503, "soon 3000"], [503, "-5"], [429, "240, 240"],
    ];
    const delays: number[] = [];
    for (const [status, after] of asks) {
      receiver.failFirst = receiver.attempts.length + 1;
      receiver.failure = () => new Response("slow down", { status, headers: { "retry-after": after } });
      delays.push(...(await consume(on(), [started("ra")], 1)));
    }
    // An HTTP date is read to the second: the 50 minutes asked for, give or take the test's own seconds.
    expect(delays[1]).toBeGreaterThanOrEqual(2_990);
    expect(delays[1]).toBeLessThanOrEqual(3_000);
    expect([delays[0], ...delays.slice(2)]).toEqual([120, 30, 3_600, 30, 30, 30, 30, 240]);
  });

  it("a message that cannot be read (no body) is retried on its own, with its delay: the others of its batch are delivered (the batch failed as a whole)", async () => {
    const receiver = new Receiver().install();
    vi.spyOn(console, "error").mockImplementation(() => {});
    const good = started("m");
    const delays = await consume(on(), [good, null as unknown as ReturnType<typeof started>], 1);
    expect(receiver.events.map((d) => d.id)).toEqual([good.id]);
    expect(delays).toEqual([30]);
  });

  it("the body is {type, timestamp, data}; webhook-timestamp is the attempt's time in seconds", async () => {
    const receiver = new Receiver().install();
    const event = started("b");
    await consume(on(), [event]);
    const [d] = receiver.events;
    expect(d.body).toEqual({ type: "stream.started", timestamp: event.timestamp, data: event.data });
    expect(d.id).toMatch(/^msg_[0-9a-f]{32}$/);
    expect(Math.abs(Number(d.timestamp) - Date.now() / 1000)).toBeLessThan(60);
  });

  it("during a rotation (EVENTS_WEBHOOK_SECRET_PREVIOUS set) each delivery carries two signatures: a receiver with either secret verifies it", async () => {
    const next = "whsec_" + btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))));
    const rotating = on({ EVENTS_WEBHOOK_SECRET: next, EVENTS_WEBHOOK_SECRET_PREVIOUS: WEBHOOK_SECRET });
    for (const secret of [WEBHOOK_SECRET, next]) {
      vi.restoreAllMocks();
      const receiver = new Receiver(secret).install();
      await consume(rotating, [started("r")]);
      expect(receiver.events).toHaveLength(1);
      expect(receiver.events[0].signatureValid, secret === next ? "the new secret" : "the old secret").toBe(true);
    }
    // Without the previous one, a receiver that still has the old secret no longer verifies.
    vi.restoreAllMocks();
    const old = new Receiver(WEBHOOK_SECRET).install();
    await consume(on({ EVENTS_WEBHOOK_SECRET: next }), [started("s")]);
    expect(old.attempts[0].signatureValid).toBe(false);
  });

  it("a secret without the whsec_ prefix is the key itself (its UTF-8 bytes)", async () => {
    const raw = "a-raw-secret-of-at-least-32-characters";
    const receiver = new Receiver(raw).install();
    await consume(on({ EVENTS_WEBHOOK_SECRET: raw }), [started("c")]);
    expect(receiver.events).toHaveLength(1);
    expect(receiver.events[0].signatureValid).toBe(true);
  });

  it("without a usable secret nothing is sent unsigned: the event waits in the queue (retried)", async () => {
    const receiver = new Receiver().install();
    const delays = await consume(on({ EVENTS_WEBHOOK_SECRET: "" }), [started("d")], 2);
    expect(receiver.attempts).toHaveLength(0);
    expect(delays).toHaveLength(2);
    const short = await consume(on({ EVENTS_WEBHOOK_SECRET: "whsec_c2hvcnQ=" }), [started("d")], 1);
    expect(short).toHaveLength(1);
    expect(receiver.attempts).toHaveLength(0);
  });

  it("a whsec_ key of 23 bytes is refused (the specification's minimum is 24): nothing is sent with it; one of 24 bytes signs", async () => {
    vi.spyOn(console, "error").mockImplementation(() => {});
    const whsec = (bytes: number) => `whsec_${btoa("k".repeat(bytes))}`;
    const refused = new Receiver(whsec(23)).install();
    expect(await consume(on({ EVENTS_WEBHOOK_SECRET: whsec(23) }), [started("k23")], 1)).toEqual([30]);
    expect(refused.attempts).toHaveLength(0);
    vi.restoreAllMocks();
    const receiver = new Receiver(whsec(24)).install();
    expect(await consume(on({ EVENTS_WEBHOOK_SECRET: whsec(24) }), [started("k24")], 1)).toEqual([]);
    expect(receiver.events).toHaveLength(1);
    expect(receiver.events[0].signatureValid).toBe(true);
  });

  it("a receiver has 15 s to answer, the least the specification recommends (15 to 30 s)", () => {
    expect(DELIVERY_TIMEOUT_MS).toBe(15_000);
  });

  it("a receiver that never answers in time counts as a failure (retried)", async () => {
    vi.spyOn(globalThis, "fetch").mockImplementation(async () => {
      throw new DOMException("timed out", "TimeoutError");
    });
    expect(await consume(on(), [started("e")], 1)).toEqual([30]);
  });

  it("events switched off (EVENTS_WEBHOOK_URL unset) are dropped, never fetched", async () => {
    const receiver = new Receiver().install();
    const delays = await consume(on({ EVENTS_WEBHOOK_URL: undefined }), [started("f")]);
    expect(delays).toEqual([]);
    expect(receiver.attempts).toHaveLength(0);
  });
});

describe("signatures: known vectors (not only the algorithm test/receiver.ts re-implements)", () => {
  const SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

  it("signDelivery gives the Standard Webhooks test vector", async () => {
    const signature = await signDelivery(signingKey(SPEC_SECRET), "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, '{"test": 2432232314}');
    expect(signature).toBe("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
  });

  it("the README's example delivery is signed with the secret it names", async () => {
    const readme = readmeText();
    const secret = /signed with the secret `(whsec_[A-Za-z0-9+/=]+)`/.exec(readme)![1];
    const block = /```http\nPOST [^\n]*\n([\s\S]*?)\n\n(\{[^\n]*\})\n```/.exec(readme)!;
    const headers = Object.fromEntries(block[1].split("\n").map((line) => line.split(": ") as [string, string]));
    const body = block[2];
    expect(secret).toBe(SPEC_SECRET);
    const signature = await signDelivery(signingKey(secret), headers["webhook-id"], Number(headers["webhook-timestamp"]), body);
    expect(headers["webhook-signature"]).toBe(signature);
    // The README's spec vector, as written there.
    expect(readme).toContain("`msg_p5jXN8AQM9LWM0D4loKWxJek`, timestamp\n`1614265330` and body `{\"test\": 2432232314}` give `v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=`");
  });
});

describe("with EVENTS_WEBHOOK_URL unset (this project)", () => {
  it("hooks produce no event: nothing queued, nothing stored, nothing fetched", async () => {
    const receiver = new Receiver().install();
    const send = vi.spyOn(env.EVENTS, "sendBatch");
    const edge = newEdge();
    const stream = uniqueStream();
    const key = await createStream(stream, { maxViewers: 0 });
    expect((await hook(publish("live", stream, key, { ...edge, client: "pub1" }))).status).toBe(200);
    expect((await hook(play("live", stream, { ...edge, client: "v1" }))).status).toBe(403);
    expect((await hook(unpublish("live", stream, { ...edge, client: "pub1" }))).status).toBe(200);
    expect((await admin("DELETE", `/streams/live/${stream}/sessions`)).status).toBe(200);
    expect(send).not.toHaveBeenCalled();
    expect(receiver.attempts).toHaveLength(0);
    const outbox = await runInDurableObject(streamStub(stream), (_o, state) => state.storage.sql.exec("SELECT name FROM sqlite_master WHERE name = 'event_outbox'").toArray());
    expect(outbox).toEqual([]);
  });

  it("POST /admin/events/test says that events are not configured", async () => {
    const res = await admin("POST", "/events/test");
    expect(res.status).toBe(409);
    expect(res.body).toMatchObject({ configured: false });
  });
});
