/**
 * An operator's bulk end of a stream's sessions and its session.ended_by_operator events (src/events/operator.ts,
 * KEEP_EVENTS_CHUNK). A call to the stream's object carries at most 32 MiB: all of a stream's events in one
 * keepEvents call (about 280 bytes each) failed from about 120,000 sessions on, and were then queued without an
 * outbox, lost for good if the queue refused part-way. Local workerd takes larger calls: the calls are counted
 * with a spy. Project "webhooks" (EVENTS_WEBHOOK_URL set); the queue is a spy too, nothing is delivered.
 */
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { KEEP_EVENTS_CHUNK } from "../../src/events/operator";
import { QUEUE_BATCH, type WebhookEvent } from "../../src/events/event";
import { StreamObject } from "../../src/stream/object";
import { ALLOW, admin, createStream, hook, newEdge, play, uniqueStream } from "../srs";

const VIEWERS = KEEP_EVENTS_CHUNK + 200;

afterEach(() => void vi.restoreAllMocks());

/** A stream with VIEWERS viewers over three edges. */
async function crowdedStream(): Promise<string> {
  const s = uniqueStream();
  await createStream(s);
  const edges = [newEdge(), newEdge(), newEdge()];
  for (let i = 0; i < VIEWERS; i += 50) {
    const answers = await Promise.all(
      Array.from({ length: Math.min(50, VIEWERS - i) }, (_, j) => hook(play("live", s, { ...edges[(i + j) % 3], client: `v${i + j}` }))),
    );
    for (const a of answers) expect(a).toEqual(ALLOW);
  }
  return s;
}

/** The sizes of the keepEvents calls; from the `failFrom`th on (0-based) they throw, as an object not reached would. */
function keepEventsCalls(failFrom = Infinity): number[] {
  const real = StreamObject.prototype.keepEvents;
  const calls: number[] = [];
  vi.spyOn(StreamObject.prototype, "keepEvents").mockImplementation(function (this: StreamObject, events: WebhookEvent[]) {
    calls.push(events.length);
    if (calls.length > failFrom) throw new Error("stream object unreachable (test)");
    return real.call(this, events);
  });
  return calls;
}

/** What is sent to the events queue (by the stream's outbox, or by the Worker itself), the stream's operator events. */
function queuedOf(s: string): () => WebhookEvent[] {
  const queued: WebhookEvent[] = [];
  vi.spyOn(env.EVENTS, "sendBatch").mockImplementation(async (messages) => {
    for (const m of messages) queued.push(m.body as WebhookEvent);
    return {} as QueueSendBatchResponse;
  });
  return () => queued.filter((e) => e.type === "session.ended_by_operator" && e.data.stream === s);
}

/** Every session's event queued, each once (the webhook-ids too). */
async function everyOneQueued(queued: () => WebhookEvent[]): Promise<void> {
  await vi.waitFor(() => expect(queued().length).toBeGreaterThanOrEqual(VIEWERS), { timeout: 20_000, interval: 50 });
  expect(queued()).toHaveLength(VIEWERS);
  expect(new Set(queued().map((e) => e.data.client_id)).size).toBe(VIEWERS);
  expect(new Set(queued().map((e) => e.id)).size).toBe(VIEWERS);
}

describe("an operator ending more of a stream's sessions than one keepEvents call takes", () => {
  it("keeps their events in the stream's outbox in calls of at most KEEP_EVENTS_CHUNK each, and every one is queued", async () => {
    const s = await crowdedStream();
    const calls = keepEventsCalls();
    const queued = queuedOf(s);
    const res = await admin("DELETE", `/streams/live/${s}/sessions`);
    expect(res.status).toBe(200);
    expect(res.body.ended).toHaveLength(VIEWERS);
    expect(res.body.eventsNotQueued).toBeUndefined();
    expect(calls).toEqual([KEEP_EVENTS_CHUNK, VIEWERS - KEEP_EVENTS_CHUNK]);
    await everyOneQueued(queued);
  });

  it("queues from the Worker only the events not kept yet when the stream's object fails part-way: none lost, none twice", async () => {
    vi.spyOn(console, "error").mockImplementation(() => {});
    const s = await crowdedStream();
    const calls = keepEventsCalls(1);
    const queued = queuedOf(s);
    const res = await admin("DELETE", `/streams/live/${s}/sessions`);
    expect(res.status).toBe(200);
    expect(res.body.eventsNotQueued).toBeUndefined();
    expect(calls).toEqual([KEEP_EVENTS_CHUNK, VIEWERS - KEEP_EVENTS_CHUNK]);
    await everyOneQueued(queued);
  });
});

describe("an operator's bulk end whose events neither the stream's object nor the queue takes whole", () => {
  it("names as not queued exactly the events the queue refused (it took the first batches), not every one", async () => {
    vi.spyOn(console, "error").mockImplementation(() => {});
    const s = await crowdedStream();
    keepEventsCalls(0);
    // The queue takes this stream's first two batches of events from the Worker, then refuses.
    const queued: WebhookEvent[] = [];
    let batches = 0;
    vi.spyOn(env.EVENTS, "sendBatch").mockImplementation(async (messages) => {
      const ours = [...messages].map((m) => m.body as WebhookEvent).filter((e) => e.type === "session.ended_by_operator" && e.data.stream === s);
      if (ours.length > 0 && ++batches > 2) throw new Error("queue unavailable (test)");
      queued.push(...ours);
      return {} as QueueSendBatchResponse;
    });
    const res = await admin("DELETE", `/streams/live/${s}/sessions`);
    expect(res.status).toBe(200);
    expect(res.body.ended).toHaveLength(VIEWERS);
    expect(queued).toHaveLength(2 * QUEUE_BATCH);
    const notQueued: string[] = res.body.eventsNotQueued;
    expect(notQueued).toHaveLength(VIEWERS - 2 * QUEUE_BATCH);
    // Every event is either queued or named, never both.
    const ids = new Set(queued.map((e) => e.id));
    expect(notQueued.filter((id) => ids.has(id))).toEqual([]);
    expect(new Set([...ids, ...notQueued]).size).toBe(VIEWERS);
  });
});
