/**
 * Events the queue gave up on (max_retries failed deliveries) reach the dead-letter queue, which this
 * Worker consumes into the DeadLetters object (src/events/dead-letters.ts): an operator lists them and
 * sends them again once the receiver is back. Before, they waited in a queue nobody read and were
 * lost after its retention (`wrangler` cannot read a queue).
 */
import { describe, expect, it } from "vitest";
import { DEAD_LETTER_KEPT_DAYS, REPLAY_PER_CALL } from "../src/events/dead-letters";
import { admin, adminWith } from "./srs";
import { at, useFakeClock } from "./fleet";
import { deadLettered, endedEvent, noDeadLettersBeforeEach, RECEIVER_URL, recordingQueue, WEBHOOK_SECRET } from "./receiver";

const RECEIVER = { EVENTS_WEBHOOK_URL: RECEIVER_URL, EVENTS_WEBHOOK_SECRET: WEBHOOK_SECRET };
const ended = endedEvent;
useFakeClock();
noDeadLettersBeforeEach();

describe("dead letters", () => {
  it("are kept when the dead-letter queue delivers them, listed, and sent again by a replay with their own ids and bodies; then they are gone", async () => {
    const events = [ended("a"), ended("b")];
    const result = await deadLettered([...events, events[0]]); // the queue delivers at least once
    expect(result).toMatchObject({ ackAll: true, retryMessages: [] });
    const listed = (await admin("GET", "/events/dead-letters")).body;
    expect(listed.count).toBe(2);
    expect(listed.events.map((e: any) => e.id).sort()).toEqual(events.map((e) => e.id).sort());
    expect(listed.events[0]).toMatchObject({ type: "stream.ended", timestamp: events[0].timestamp, deadAt: expect.any(String) });

    const { sent, queue } = recordingQueue();
    const replay = await adminWith({ ...RECEIVER, EVENTS: queue }, "POST", "/events/dead-letters/replay");
    expect(replay.status).toBe(200);
    expect(replay.body).toMatchObject({ replayed: 2, remaining: 0 });
    expect(sent.sort((x, y) => x.id.localeCompare(y.id))).toEqual([...events].sort((x, y) => x.id.localeCompare(y.id)));
    expect((await admin("GET", "/events/dead-letters")).body).toMatchObject({ count: 0, events: [] });
  });

  it("a replay the queue refuses keeps them (503); one with events switched off is refused (409) and keeps them", async () => {
    await deadLettered([ended("c")]);
    const refused = await adminWith({ ...RECEIVER, EVENTS: recordingQueue({ refuseFrom: 0 }).queue }, "POST", "/events/dead-letters/replay");
    expect(refused.status).toBe(503);
    expect((await admin("POST", "/events/dead-letters/replay")).status).toBe(409); // EVENTS_WEBHOOK_URL unset here
    // Settings with which no delivery can work: refused too (the events went round four more hours of retries back here).
    for (const broken of [{ EVENTS_WEBHOOK_SECRET: "" }, { EVENTS_WEBHOOK_SECRET: "whsec_c2hvcnQ=" }, { EVENTS_WEBHOOK_URL: "ftp://receiver.test/" }]) {
      const { sent, queue } = recordingQueue();
      const r = await adminWith({ ...RECEIVER, ...broken, EVENTS: queue }, "POST", "/events/dead-letters/replay");
      expect([r.status, sent.length], JSON.stringify(broken)).toEqual([409, 0]);
      expect(r.body.error).toMatch(/nothing was replayed$/);
    }
    expect((await admin("GET", "/events/dead-letters")).body.count).toBe(1);
  });

  it(`a replay sends the oldest ${REPLAY_PER_CALL} per call and says how many remain`, async () => {
    const many = Array.from({ length: REPLAY_PER_CALL + 20 }, (_, i) => ended(`m${i}`));
    await deadLettered(many.slice(0, 100));
    at(1_000);
    for (let i = 100; i < many.length; i += 100) await deadLettered(many.slice(i, i + 100));
    const { sent, queue } = recordingQueue();
    const first = await adminWith({ ...RECEIVER, EVENTS: queue }, "POST", "/events/dead-letters/replay");
    expect(first.body).toMatchObject({ replayed: REPLAY_PER_CALL, remaining: 20 });
    // The oldest first: the first batch dead-lettered is all in this call.
    expect(many.slice(0, 100).every((e) => sent.some((s) => s.id === e.id))).toBe(true);
    const second = await adminWith({ ...RECEIVER, EVENTS: queue }, "POST", "/events/dead-letters/replay");
    expect(second.body).toMatchObject({ replayed: 20, remaining: 0 });
    expect(new Set(sent.map((e) => e.id)).size).toBe(many.length);
  });

  it(`are dropped after ${DEAD_LETTER_KEPT_DAYS} days; messages that are not events are not kept; DELETE drops them all`, async () => {
    at(0);
    await deadLettered([ended("old"), { not: "an event" }, null]);
    at(DEAD_LETTER_KEPT_DAYS * 86_400_000 - 1_000);
    await deadLettered([ended("new")]);
    expect((await admin("GET", "/events/dead-letters")).body.count).toBe(2);
    at(DEAD_LETTER_KEPT_DAYS * 86_400_000 + 1_000);
    const listed = (await admin("GET", "/events/dead-letters")).body;
    expect(listed.events.map((e: any) => e.type)).toEqual(["stream.ended"]);
    expect(listed.count).toBe(1);
    expect((await admin("DELETE", "/events/dead-letters")).body).toEqual({ deleted: 1 });
  });

  it("the events queue's own batches are delivered, not kept as dead letters", async () => {
    await deadLettered([ended("main")], { queue: "streamgate-events" }); // events are off in this project: acked, not delivered
    expect((await admin("GET", "/events/dead-letters")).body.count).toBe(0);
  });
});
