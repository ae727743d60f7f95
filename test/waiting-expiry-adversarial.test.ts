/**
 * Adversarial tests of 6ffe1ee: a refused shard counts as waiting at the stream only for
 * WAITING_KEPT_MS after its last refusal, while the shard holds its viewers' questions for
 * WAIT_HOLD_MS from when the refusal reached it. A shard must never hold while the stream no
 * longer counts it as waiting and a slot is free, for longer than the README bound (about 8 s).
 */
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import { StreamObject } from "../src/stream/object";
import { ViewerShard } from "../src/viewers/shard";
import { WAITING_KEPT_MS } from "../src/stream/leases";
import { admittedAt, askForSlotsHeld, at, fireDue, waitingOf, recallsFailOn, streamAtZero, streamStub, viewer, viewerStop } from "./fleet";
import { ALLOW, admin, newEdge, streamState } from "./srs";

afterEach(() => {
  vi.restoreAllMocks();
  vi.useRealTimers();
});

async function waitingRows(s: string): Promise<{ server_id: string; since: number; until: number }[]> {
  return runInDurableObject(streamStub(s), async (_o: StreamObject, state: DurableObjectState) =>
    state.storage.sql.exec<{ server_id: string; since: number; until: number }>("SELECT server_id, since, until FROM lease_waiting ORDER BY since").toArray(),
  );
}

describe("a refusal's answer that reaches the shard late", () => {
  it("must not happen: the stream's refusal reaches the shard 25 s after the stream decided it (the shard's call to the stream has no timeout; the hook deadline bounds only the Worker's wait): the shard holds 30 s from arrival, the stream stops counting it 40 s after deciding, and a slot freed at 41 s stays unused until 55 s", async () => {
    const s = await streamAtZero({ maxViewers: 1 });
    const [a, c] = [newEdge(), newEdge()];
    expect(await viewer(s, a, "a0000001")).toEqual(ALLOW);
    // c's first viewer: its policy read is refused (c waits), then its ask for slots, refused at 10 and slow to come back.
    at(10);
    const { decided, back } = askForSlotsHeld(c);
    const first = viewer(s, c, "c0000001");
    await decided;
    expect(await waitingOf(s)).toEqual([c.server]);
    // The answer arrives at 25 s (its hook gave up long before; the shard's call to the stream went on).
    at(25_000);
    back.open();
    await first.catch(() => {});
    vi.mocked(StreamObject.prototype.viewerLease).mockRestore();
    // The stream stops counting c at 40 010 (40 s after its decision); a's viewer leaves at 41 s: no one to tell.
    at(41_000);
    expect(await viewerStop(s, a, "a0000001")).toEqual(ALLOW);
    await vi.waitFor(async () => expect((await streamState(s)).leasedUnused + (await streamState(s)).viewers).toBe(0));
    // c's viewers keep coming: c holds until 55 s (30 s from the answer's arrival).
    const t = await admittedAt(s, c, 41_500, 60_000, "c1");
    expect(t, "c refused for 19 s while the slot was free").not.toBeNull();
    expect(t!, `c admitted at ${t}, the slot free since 41 000`).toBeLessThanOrEqual(41_000 + 8_000);
  }, 30_000);
});

describe("a hold set from an answer that was no refusal of the cap", () => {
  it("must not happen: the cap is removed while a shard's push is pending, the shard asks for slots on its stale capped policy and the stream answers 'unlimited' (no waiting row): the shard keeps a 30 s hold, and when a cap is set again 1 s later its viewers are refused locally while 9 slots are free", async () => {
    const s = await streamAtZero({ maxViewers: 1 });
    const [a, c] = [newEdge(), newEdge()];
    expect(await viewer(s, a, "a0000001")).toEqual(ALLOW);
    at(10);
    expect((await viewer(s, c, "c0000001")).body.code).toBe(4005);
    // Long after: c's hold and its waiting row are both over; c still has the capped policy (POLICY_TTL_MS).
    at(60_000);
    // The cap goes; the push cannot reach c for now (retried every 5 s from the alarm).
    const down = recallsFailOn(c);
    expect((await admin("PUT", `/streams/live/${s}`, { maxViewers: null })).status).toBe(200);
    // c's next viewer asks for slots on its stale policy: the stream answers "unlimited", c admits it, and keeps a hold.
    at(60_100);
    expect(await viewer(s, c, "c0000002")).toEqual(ALLOW);
    down.down = false;
    // A cap of 10 again: the push reaches c (capped, no slot); the stream counts no one as waiting.
    at(61_000);
    expect((await admin("PUT", `/streams/live/${s}`, { maxViewers: 10 })).status).toBe(200);
    const t = await admittedAt(s, c, 61_500, 95_000, "c2");
    expect(t, "c refused for 34 s with 8 slots free").not.toBeNull();
    expect(t!, `c admitted at ${t}`).toBeLessThanOrEqual(61_500 + 8_000);
  }, 60_000);
});

describe("holds: waiting rows of an older version, and restarts", () => {
  it("holds: a row of the older version (until = 0) is given until = now + WAITING_KEPT_MS at the next construction only, not at every one; rows the new code writes never have until = 0", async () => {
    const s = await streamAtZero({ maxViewers: 1 });
    const [a, c] = [newEdge(), newEdge()];
    expect(await viewer(s, a, "a0000001")).toEqual(ALLOW);
    at(10);
    expect((await viewer(s, c, "c0000001")).body.code).toBe(4005);
    const rows = await waitingRows(s);
    expect(rows.map((r) => r.until)).toEqual([at0(10 + WAITING_KEPT_MS)]);
    // As an older version left it: no until.
    await runInDurableObject(streamStub(s), async (_o: StreamObject, state: DurableObjectState) => {
      state.storage.sql.exec("UPDATE lease_waiting SET until = 0");
    });
    at(5_000);
    await evictDurableObject(streamStub(s));
    expect((await waitingRows(s)).map((r) => r.until)).toEqual([at0(5_000 + WAITING_KEPT_MS)]);
    // Restarted again and again: never refreshed; the row stops counting 40 s after the first restart.
    for (const t of [20_000, 44_000, 46_000]) {
      at(t);
      await evictDurableObject(streamStub(s));
      expect((await waitingRows(s)).map((r) => r.until)).toEqual([at0(5_000 + WAITING_KEPT_MS)]);
    }
    expect(await waitingOf(s)).toEqual([]);
  }, 30_000);

  it("holds: an older table without the until column gets it (addColumns) and its rows count for WAITING_KEPT_MS from the restart; the stream tells the shard of a slot freed meanwhile", async () => {
    const s = await streamAtZero({ maxViewers: 1 });
    const [a, c] = [newEdge(), newEdge()];
    expect(await viewer(s, a, "a0000001")).toEqual(ALLOW);
    at(10);
    expect((await viewer(s, c, "c0000001")).body.code).toBe(4005);
    await runInDurableObject(streamStub(s), async (_o: StreamObject, state: DurableObjectState) => {
      const sql = state.storage.sql;
      sql.exec("CREATE TABLE lease_waiting_old (server_id TEXT PRIMARY KEY, since INTEGER NOT NULL) WITHOUT ROWID");
      sql.exec("INSERT INTO lease_waiting_old SELECT server_id, since FROM lease_waiting");
      sql.exec("DROP TABLE lease_waiting");
      sql.exec("ALTER TABLE lease_waiting_old RENAME TO lease_waiting");
    });
    at(2_000);
    await evictDurableObject(streamStub(s));
    expect((await waitingRows(s)).map((r) => [r.server_id, r.until])).toEqual([[c.server, at0(2_000 + WAITING_KEPT_MS)]]);
    at(3_000);
    expect(await viewerStop(s, a, "a0000001")).toEqual(ALLOW);
    const t = await admittedAt(s, c, 3_500, 20_000, "c1");
    expect(t).not.toBeNull();
    expect(t!).toBeLessThanOrEqual(3_500 + 1_000);
  }, 30_000);
});

describe("holds: the word lost, and the rows' expiry", () => {
  it("holds: woken, then a slotsFree that fails for good: the shard is waiting again for WAITING_KEPT_MS from the failure (since: the last), and the next round tells it", async () => {
    const s = await streamAtZero({ maxViewers: 1 });
    const [a, c] = [newEdge(), newEdge()];
    expect(await viewer(s, a, "a0000001")).toEqual(ALLOW);
    at(10);
    expect((await viewer(s, c, "c0000001")).body.code).toBe(4005);
    const real = ViewerShard.prototype.slotsFree;
    let failed = 0;
    vi.spyOn(ViewerShard.prototype, "slotsFree").mockImplementation(function (this: ViewerShard, streamKey: string) {
      if (failed++ === 0) throw new Error("connection reset");
      return real.call(this, streamKey);
    });
    // a leaves at 29 s, 1 s before c's hold ends: the word to c is lost.
    at(29_000);
    expect(await viewerStop(s, a, "a0000001")).toEqual(ALLOW);
    await vi.waitFor(() => expect(failed).toBeGreaterThan(0));
    await vi.waitFor(async () => expect((await waitingRows(s)).map((r) => r.server_id)).toEqual([c.server]));
    const [row] = await waitingRows(s);
    expect(row.until).toBeGreaterThanOrEqual(at0(29_000 + WAITING_KEPT_MS));
    const t = await admittedAt(s, c, 29_200, 40_000, "c1");
    expect(t).not.toBeNull();
    expect(t!).toBeLessThanOrEqual(29_000 + 8_000);
  }, 30_000);

  it("holds: a shard refused again and again stays waiting (until refreshed, since kept), and a slot freed 39 s after its last refusal (its hold over 9 s before) reaches its next viewer at once", async () => {
    const s = await streamAtZero({ maxViewers: 1 });
    const [a, c] = [newEdge(), newEdge()];
    expect(await viewer(s, a, "a0000001")).toEqual(ALLOW);
    at(10);
    expect((await viewer(s, c, "c0000001")).body.code).toBe(4005);
    // c's hold ends at 30 010; its next viewer at 31 s asks again and is refused (row refreshed, since kept).
    at(31_000);
    expect((await viewer(s, c, "c0000002")).body.code).toBe(4005);
    const [row] = await waitingRows(s);
    expect([row.since, row.until]).toEqual([at0(10), at0(31_000 + WAITING_KEPT_MS)]);
    for (let t = 31_250; t <= 70_000; t += 250) {
      at(t);
      await fireDue(streamStub(s));
    }
    at(70_000);
    expect(await waitingOf(s)).toEqual([c.server]);
    expect(await viewerStop(s, a, "a0000001")).toEqual(ALLOW);
    expect(await viewer(s, c, "c0000003")).toEqual(ALLOW);
  }, 60_000);
});

function at0(ms: number): number {
  return new Date("2031-03-01T12:00:00Z").getTime() + ms;
}
