/**
 * Adversarial probes of the dead-letter replay (8953ff1/1e1cb59/dc8909b): a replay naming some events.
 */
import { describe, expect, it } from "vitest";
import { admin, adminWith } from "./srs";
import { useFakeClock } from "./fleet";
import { deadLettered, endedEvent, noDeadLettersBeforeEach, RECEIVER_URL, recordingQueue, WEBHOOK_SECRET } from "./receiver";

const RECEIVER = { EVENTS_WEBHOOK_URL: RECEIVER_URL, EVENTS_WEBHOOK_SECRET: WEBHOOK_SECRET };
useFakeClock();
noDeadLettersBeforeEach();

describe("POST /admin/events/dead-letters/replay with a query", () => {
  it("?id=… (an operator naming one event, as DELETE ?id= is refused for) is refused, 400: it sent the oldest 500 and forgot them", async () => {
    const events = Array.from({ length: 3 }, (_, i) => endedEvent(`q${i}`));
    await deadLettered(events);
    const q = recordingQueue();
    for (const query of [`id=${events[2].id}`, "limit=1"]) {
      const res = await adminWith({ ...RECEIVER, EVENTS: q.queue }, "POST", `/events/dead-letters/replay?${query}`);
      expect(res.status, query).toBe(400);
      expect(res.body.error).toMatch(/nothing was replayed/);
    }
    expect(q.sent).toEqual([]);
    expect((await admin("GET", "/events/dead-letters")).body.count).toBe(3);
    expect((await adminWith({ ...RECEIVER, EVENTS: q.queue }, "POST", "/events/dead-letters/replay")).body).toMatchObject({ replayed: 3, remaining: 0 });
  });
});
