/**
 * Adversarial pass on the dead letters (src/events/dead-letters.ts): a flaky platform (the object the
 * dead-letter queue's consumer writes to failing for a while; a replay whose queue sends partly
 * succeed), an operator's misuse (two replays at once; a DELETE that names one event).
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { Env } from "../src/env";
import { admin, adminWith } from "./srs";
import { useFakeClock } from "./fleet";
import { deadLettered, endedEvent, noDeadLettersBeforeEach, RECEIVER_URL, recordingQueue, WEBHOOK_SECRET } from "./receiver";

const RECEIVER = { EVENTS_WEBHOOK_URL: RECEIVER_URL, EVENTS_WEBHOOK_SECRET: WEBHOOK_SECRET };
const ended = endedEvent;
useFakeClock();
noDeadLettersBeforeEach();

describe("dead letters, adversarial", () => {
  it("the object failing: the dead-letter batch is retried with a backoff that spans the queue's retention, not 100 minutes (max_retries 100 × retry_delay 60 s), after which the events were lost", async () => {
    const failing = {
      idFromName: (name: string) => env.DEAD_LETTERS.idFromName(name),
      get: () => ({ keep: async () => Promise.reject(new Error("object unavailable (test)")) }),
    } as unknown as Env["DEAD_LETTERS"];
    const events = [ended("x"), ended("y")];
    let waited = 0;
    for (let attempts = 1; attempts <= 100; attempts++) {
      const result = await deadLettered(events, { overrides: { DEAD_LETTERS: failing }, attempts });
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

  it("a second replay while the first is still sending its 500 sends the next ones (not nothing): two replays at once clear 600", async () => {
    const events = Array.from({ length: 600 }, (_, i) => ended(`n${i}`));
    for (let i = 0; i < events.length; i += 100) await deadLettered(events.slice(i, i + 100));
    let open!: () => void;
    const hold = new Promise<void>((resolve) => (open = resolve));
    let entered!: () => void;
    const sending = new Promise<void>((resolve) => (entered = resolve));
    const held: string[] = [];
    const slow = {
      sendBatch: async (messages: Iterable<MessageSendRequest<{ id: string }>>) => {
        entered();
        await hold;
        for (const m of messages) held.push(m.body.id);
      },
    } as unknown as Queue;
    const first = adminWith({ ...RECEIVER, EVENTS: slow }, "POST", "/events/dead-letters/replay");
    await sending;
    const other = recordingQueue();
    const second = await adminWith({ ...RECEIVER, EVENTS: other.queue }, "POST", "/events/dead-letters/replay");
    expect(second.status).toBe(200);
    expect(second.body.replayed).toBe(100);
    open();
    expect((await first).body).toMatchObject({ replayed: 500, remaining: 0 });
    const all = [...held, ...other.sent.map((e) => e.id)];
    expect(new Set(all).size).toBe(600);
    expect(all.length).toBe(600);
  });

  it("a DELETE that names one event (?id=…) is refused, not taken for 'drop every dead letter'", async () => {
    const events = [ended("k1"), ended("k2")];
    await deadLettered(events);
    const answer = await admin("DELETE", `/events/dead-letters?id=${events[0].id}`);
    expect(answer.status).toBe(400);
    expect((await admin("GET", "/events/dead-letters")).body.count).toBe(2);
  });
});
