/**
 * Adversarial pass on the dead letters (src/events/dead-letters.ts): a flaky platform (the object the
 * dead-letter queue's consumer writes to failing for a while; a replay whose queue sends partly
 * succeed), an operator's misuse (two replays at once; a DELETE that names one event).
 */
import { env } from "cloudflare:workers";
import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { beforeEach, describe, expect, it, vi } from "vitest";
import type { Env } from "../src/env";
import worker from "../src/index";
import { newEvent, type WebhookEvent } from "../src/events/event";
import { admin, adminWith } from "./srs";
import { useFakeClock } from "./fleet";

const RECEIVER = { EVENTS_WEBHOOK_URL: "https://receiver.test/streamgate-events" };
const ended = (stream: string) => newEvent("stream.ended", { vhost: "__defaultVhost__", app: "live", stream, duration: 12, peakViewers: 3 });

/** The dead-letter queue delivers a batch; returns what was acked and retried, and the delays asked for (getQueueResult does not say). */
async function deadLettered(bodies: unknown[], overrides: Partial<Env> = {}, attempts = 1) {
  const batch = createMessageBatch<WebhookEvent>("streamgate-events-dlq", bodies.map((body, i) => ({ id: `d${i}`, timestamp: Date.now(), attempts, body: body as WebhookEvent })));
  const delays: (number | undefined)[] = [];
  for (const m of batch.messages) {
    const retry = m.retry.bind(m);
    Object.defineProperty(m, "retry", { value: (options?: QueueRetryOptions) => (delays.push(options?.delaySeconds), retry(options)) });
  }
  const ctx = createExecutionContext();
  await worker.queue(batch, { ...(env as Env), ...overrides });
  return { ...(await getQueueResult(batch, ctx)), delays };
}

/** An events queue that records what it takes; `refuseFrom`: the sendBatch call (0-based) from which it refuses; `hold`: each call waits for it. */
function recordingQueue(opts: { refuseFrom?: number; hold?: Promise<void> } = {}) {
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

useFakeClock();
beforeEach(async () => {
  vi.spyOn(console, "error").mockImplementation(() => {});
  expect((await admin("DELETE", "/events/dead-letters")).status).toBe(200);
});

describe("dead letters, adversarial", () => {
  it("the object failing: the dead-letter batch is retried with a backoff that spans the queue's retention, not 100 minutes (max_retries 100 × retry_delay 60 s), after which the events were lost", async () => {
    const failing = {
      idFromName: (name: string) => env.DEAD_LETTERS.idFromName(name),
      get: () => ({ keep: async () => Promise.reject(new Error("object unavailable (test)")) }),
    } as unknown as Env["DEAD_LETTERS"];
    const events = [ended("x"), ended("y")];
    let waited = 0;
    for (let attempts = 1; attempts <= 100; attempts++) {
      const result = await deadLettered(events, { DEAD_LETTERS: failing }, attempts);
      expect(result.ackAll).toBe(false);
      expect(result.explicitAcks).toEqual([]);
      expect(result.retryMessages.length).toBe(2);
      const delays = result.delays.map((d) => d ?? 60); // none asked for: the consumer's retry_delay (wrangler.toml: 60)
      expect(delays.length).toBe(2);
      if (attempts === 1) expect(delays[0]).toBeLessThanOrEqual(60); // an object restarting is soon tried again
      waited += delays[0];
    }
    // The 100 retries the consumer allows outlast the shortest retention of the dead-letter queue (24 h, Free plan).
    expect(waited).toBeGreaterThanOrEqual(86_400);
    expect((await admin("GET", "/events/dead-letters")).body.count).toBe(0);
  });

  it("a replay whose queue took the first batches before refusing one forgets those it took: the next replay does not send them twice", async () => {
    const events = Array.from({ length: 250 }, (_, i) => ended(`p${i}`));
    for (let i = 0; i < events.length; i += 100) await deadLettered(events.slice(i, i + 100));
    const flaky = recordingQueue({ refuseFrom: 1 });
    const refused = await adminWith({ ...RECEIVER, EVENTS: flaky.queue }, "POST", "/events/dead-letters/replay");
    expect(refused.status).toBe(503);
    expect(flaky.sent.length).toBe(100);
    expect(refused.body).toMatchObject({ replayed: 100, remaining: 150 });
    const ok = recordingQueue();
    const again = await adminWith({ ...RECEIVER, EVENTS: ok.queue }, "POST", "/events/dead-letters/replay");
    expect(again.body).toMatchObject({ replayed: 150, remaining: 0 });
    const all = [...flaky.sent, ...ok.sent].map((e) => e.id);
    expect(all.length).toBe(250);
    expect(new Set(all).size).toBe(250);
  });

  it("two replays at once (a double click, two operators) do not send the same events twice", async () => {
    const events = Array.from({ length: 30 }, (_, i) => ended(`c${i}`));
    await deadLettered(events);
    let open!: () => void;
    const hold = new Promise<void>((resolve) => (open = resolve));
    const q = recordingQueue({ hold });
    const first = adminWith({ ...RECEIVER, EVENTS: q.queue }, "POST", "/events/dead-letters/replay");
    const second = adminWith({ ...RECEIVER, EVENTS: q.queue }, "POST", "/events/dead-letters/replay");
    await new Promise((r) => setTimeout(r, 50));
    open();
    const answers = await Promise.all([first, second]);
    expect(answers.map((a) => a.status)).toEqual([200, 200]);
    expect(answers[0].body.replayed + answers[1].body.replayed).toBe(30);
    expect(q.sent.length).toBe(30);
    expect(new Set(q.sent.map((e) => e.id)).size).toBe(30);
    expect((await admin("GET", "/events/dead-letters")).body.count).toBe(0);
  });

  it("a DELETE that names one event (?id=…) is refused, not taken for 'drop every dead letter'", async () => {
    const events = [ended("k1"), ended("k2")];
    await deadLettered(events);
    const answer = await admin("DELETE", `/events/dead-letters?id=${events[0].id}`);
    expect(answer.status).toBe(400);
    expect((await admin("GET", "/events/dead-letters")).body.count).toBe(2);
  });
});
