/**
 * A webhook receiver for the events tests: it stands in for EVENTS_WEBHOOK_URL (a fetch spy in the
 * Worker's isolate), checks every delivery's Standard Webhooks signature on its own (HMAC-SHA256
 * recomputed with crypto.subtle from the secret, per standardwebhooks.com, not with the Worker's
 * code), and keeps what it accepted, each webhook-id once, as a receiver that dedupes would.
 */
import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { beforeEach, vi } from "vitest";
import { admin } from "./srs";
import type { Env } from "../src/env";
import worker from "../src/index";
import { newEvent, type WebhookEvent } from "../src/events/event";
import { env as workerEnv } from "cloudflare:workers";

export const RECEIVER_URL = "https://receiver.test/streamgate-events";
/** "whsec_" + base64 of a 32-byte key, as `npm run secrets` makes them. */
export const WEBHOOK_SECRET = `whsec_${btoa("0123456789abcdef0123456789abcdef")}`;

export interface Delivery {
  id: string;
  timestamp: string;
  body: { type: string; timestamp: string; data: Record<string, any> };
  signatureValid: boolean;
}

export class Receiver {
  /** Every attempt, in order, with its verdict. */
  attempts: Delivery[] = [];
  /** Answer 500 to this many attempts first. */
  failFirst = 0;
  /** The failures' answer (default: 500 "down"). */
  failure: () => Response = () => new Response("down", { status: 500 });

  constructor(private secret = WEBHOOK_SECRET) {}

  /** Routes the Worker's fetches of RECEIVER_URL here (other URLs are not expected). */
  install(): this {
    vi.spyOn(globalThis, "fetch").mockImplementation(async (input: RequestInfo | URL, init?: RequestInit) => {
      const req = new Request(input, init);
      if (!req.url.startsWith(RECEIVER_URL)) throw new TypeError(`unexpected fetch ${req.url}`);
      return this.receive(req);
    });
    return this;
  }

  async receive(req: Request): Promise<Response> {
    const text = await req.text();
    const id = req.headers.get("webhook-id") ?? "";
    const timestamp = req.headers.get("webhook-timestamp") ?? "";
    const signatures = (req.headers.get("webhook-signature") ?? "").split(" ");
    const expected = await expectedSignature(this.secret, id, timestamp, text);
    this.attempts.push({ id, timestamp, body: JSON.parse(text), signatureValid: signatures.includes(expected) });
    if (this.attempts.length <= this.failFirst) return this.failure();
    return new Response(null, { status: 204 });
  }

  /** Accepted deliveries (2xx answered), each id once. */
  get events(): Delivery[] {
    const seen = new Map<string, Delivery>();
    this.attempts.forEach((a, i) => {
      if (i >= this.failFirst && !seen.has(a.id)) seen.set(a.id, a);
    });
    return [...seen.values()];
  }

  /** Accepted events about one stream (tests share the queue: each looks at its own streams). */
  of(stream: string): Delivery[] {
    return this.events.filter((d) => d.body.data.stream === stream);
  }

  /** Waits until `n` events about the stream are accepted; returns them oldest first (by the body's timestamp). */
  async received(stream: string, n: number): Promise<Delivery[]> {
    await vi.waitFor(() => {
      if (this.of(stream).length < n) throw new Error(`${this.of(stream).length} of ${n} events about ${stream} received`);
    }, { timeout: 20_000, interval: 50 });
    return this.of(stream).sort((a, b) => a.body.timestamp.localeCompare(b.body.timestamp));
  }
}

/** The spec's signature, computed here independently: v1,base64(HMAC-SHA256(key, id.timestamp.body)). */
async function expectedSignature(secret: string, id: string, timestamp: string, body: string): Promise<string> {
  const key = secret.startsWith("whsec_") ? Uint8Array.from(atob(secret.slice(6)), (c) => c.charCodeAt(0)) : new TextEncoder().encode(secret);
  const hmac = await crypto.subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", hmac, new TextEncoder().encode(`${id}.${timestamp}.${body}`)));
  return `v1,${btoa(String.fromCharCode(...mac))}`;
}

/**
 * Runs the queue consumer as the queue would: a batch of messages, then again for every message it
 * asked to retry (attempts + 1), until none is left or `rounds` is reached. Returns the delays it asked for.
 */
export async function consume(env: Env, events: WebhookEvent[], rounds = 10): Promise<number[]> {
  let pending = events.map((body, i) => ({ id: `m${i}`, timestamp: Date.now(), attempts: 1, body }));
  const delays: number[] = [];
  for (let round = 0; round < rounds && pending.length > 0; round++) {
    const batch = createMessageBatch<WebhookEvent>("streamgate-events", pending);
    // The delay each retry asks for (getQueueResult reports which messages, not their delays).
    const asked = batch.messages.map((m) => vi.spyOn(m, "retry"));
    const ctx = createExecutionContext();
    await worker.queue(batch, env);
    const result = await getQueueResult(batch, ctx);
    const retried = new Set(result.retryMessages.map((r) => r.msgId));
    for (const spy of asked) for (const [options] of spy.mock.calls) delays.push(options?.delaySeconds ?? 0);
    pending = pending.filter((m) => retried.has(m.id)).map((m) => ({ ...m, attempts: m.attempts + 1 }));
  }
  return delays;
}

// --- dead letters (src/events/dead-letters.ts) -------------------------------------------------

/** Each test starts with no dead letters (they live in one object, shared by the tests of a file), errors not printed. */
export function noDeadLettersBeforeEach(): void {
  beforeEach(async () => {
    vi.spyOn(console, "error").mockImplementation(() => {});
    const res = await admin("DELETE", "/events/dead-letters");
    if (res.status !== 200) throw new Error(`dead letters not cleared: ${res.status}`);
  });
}

/** A stream.ended event of `stream`, as the dead-letter tests keep and replay. */
export const endedEvent = (stream: string) => newEvent("stream.ended", { vhost: "__defaultVhost__", app: "live", stream, duration: 12, peakViewers: 3 });

/**
 * A queue delivers a batch of `bodies` to the Worker as the platform does (the dead-letter queue unless `queue`
 * says otherwise); returns what was acked and retried, and the delays the retries asked for (getQueueResult does not say).
 */
export async function deadLettered(bodies: unknown[], { queue = "streamgate-events-dlq", overrides = {}, attempts = 1 }: { queue?: string; overrides?: Partial<Env>; attempts?: number } = {}) {
  const batch = createMessageBatch<WebhookEvent>(queue, bodies.map((body, i) => ({ id: `d${i}`, timestamp: Date.now(), attempts, body: body as WebhookEvent })));
  const delays: (number | undefined)[] = [];
  for (const m of batch.messages) {
    const retry = m.retry.bind(m);
    Object.defineProperty(m, "retry", { value: (options?: QueueRetryOptions) => (delays.push(options?.delaySeconds), retry(options)) });
  }
  const ctx = createExecutionContext();
  await worker.queue(batch, { ...(workerEnv as Env), ...overrides });
  return { ...(await getQueueResult(batch, ctx)), delays };
}

/** An events queue that records what it takes; `refuseFrom`: the sendBatch call (0-based) from which it refuses; `hold`: each call waits for it. */
export function recordingQueue(opts: { refuseFrom?: number; hold?: Promise<void> } = {}) {
  const sent: WebhookEvent[] = [];
  let calls = 0;
  const queue = {
    send: async () => {},
    sendBatch: async (messages: Iterable<MessageSendRequest<WebhookEvent>>) => {
      const call = calls++;
      if (opts.hold) await opts.hold;
      if (opts.refuseFrom !== undefined && call >= opts.refuseFrom) throw new Error("queue unavailable (test)");
      for (const m of messages) sent.push(m.body);
    },
  } as unknown as Queue;
  return { sent, queue };
}
