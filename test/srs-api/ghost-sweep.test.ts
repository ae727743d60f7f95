/**
 * Ghosts of lost stop hooks on streams no refusal reaches. HTTP-FLV and HLS viewers have no on_close,
 * and SRS never retries an on_stop: one lost to a deploy left the viewer counted (the audience, the
 * usage's viewer-seconds) until its edge restarted, on an unlimited stream or one below its cap, since
 * only a refusal asked the SRS API. The viewer shard's alarm now asks its server's API about one
 * stream's viewers each run (README, "SRS's HTTP API"). Runs in the "srs-api" project (test/fake-srs.ts).
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { admin, createStream, heartbeat, hook, play, streamState, uniqueStream, type Edge } from "../srs";
import { ALLOW, deviceOf, edgeWithApi, installFakeSrs, publishingOnEdgeWithApi, type FakeSrs } from "../fake-srs";
import { evictDurableObject, runDurableObjectAlarm } from "cloudflare:test";
import { at, shardStub, streamStub } from "../fleet";

installFakeSrs();
afterEach(() => void vi.useRealTimers());

/**
 * At `ms` on the fake clock (from 0 at the test's start: the sweep leaves out viewers admitted within the last
 * 12 s) the edge heartbeats (it stays alive), then its shard's alarm runs, after the shard hibernated (`evict`).
 */
async function alarmAt(ms: number, edge: Edge, evict = false): Promise<void> {
  at(ms);
  expect(await hook({ ...heartbeat(edge), device_id: deviceOf(edge) }, undefined, "/heartbeat")).toEqual(ALLOW);
  if (evict) await evictDurableObject(shardStub(edge));
  await runDurableObjectAlarm(shardStub(edge));
}

/** The fake clock at 0. */
function clockAtZero(): void {
  vi.useFakeTimers({ toFake: ["Date"] });
  at(0);
}

const ghostEnds = async (s: string) =>
  ((await admin("GET", `/streams/live/${s}/events`)).body.events ?? []).filter((e: any) => e.action === "ghost").map((e: any) => e.client);

describe("the viewer shard's alarm ends ghosts no refusal would find", () => {
  it("an unlimited stream's FLV viewer whose on_stop was lost ends at the shard's next alarm; viewers SRS still has play on", async () => {
    clockAtZero();
    const { edge, fake } = await edgeWithApi(["view0001", "view0002"]);
    const s = uniqueStream();
    await createStream(s); // maxViewers null: nothing is ever refused, so no refusal's ghost check runs
    for (const client of ["view0001", "view0002"]) expect(await hook(play("live", s, { ...edge, client }))).toEqual(ALLOW);
    fake.clients.delete("view0001"); // the player left; its on_stop never reached the gate
    expect((await streamState(s)).viewers).toBe(2);

    await alarmAt(60_000, edge);
    expect((await streamState(s)).viewers).toBe(1);
    expect(await ghostEnds(s)).toEqual(["view0001"]);

    await alarmAt(120_000, edge);
    expect((await streamState(s)).viewers).toBe(1); // view0002 is still on SRS: never ended
    const usage = (await admin("GET", `/streams/live/${s}/usage`)).body.buckets;
    expect(usage.at(-1).viewerSeconds).toBeLessThan(200); // 60 s of the ghost and 120 of view0002: the ghost's time ended with it
  });

  it("the streams take turns, up to 20 questions an alarm: small streams together, and a stream after one that used them all", async () => {
    clockAtZero();
    const crowd = Array.from({ length: 20 }, (_, i) => `crowd0${String(i).padStart(2, "0")}`);
    const { edge, fake } = await edgeWithApi([...crowd, "ghost001", "ghost002"]);
    // Sorted by name as the shard walks them: a 20-viewer stream first, then two streams of one viewer each.
    const [big, small1, small2] = [uniqueStream(), uniqueStream(), uniqueStream()].sort();
    await createStream(big);
    for (const client of crowd) expect(await hook(play("live", big, { ...edge, client }))).toEqual(ALLOW);
    for (const [s, client] of [[small1, "ghost001"], [small2, "ghost002"]]) {
      await createStream(s, { maxViewers: 10 }); // below its cap: no refusal either
      expect(await hook(play("live", s, { ...edge, client }))).toEqual(ALLOW);
    }
    fake.clients.delete("ghost001");
    fake.clients.delete("ghost002"); // both players gone, both stops lost
    const asked = () => fake.calls.filter((c) => c.path.startsWith("/api/v1/clients/")).map((c) => c.path.slice("/api/v1/clients/".length));

    await alarmAt(60_000, edge);
    expect(asked().sort()).toEqual([...crowd].sort()); // the big stream's 20 used the alarm's questions
    expect([(await streamState(small1)).viewers, (await streamState(small2)).viewers]).toEqual([1, 1]);

    await alarmAt(120_000, edge); // the next alarm goes on from there: both small streams at once
    expect([(await streamState(small1)).viewers, (await streamState(small2)).viewers]).toEqual([0, 0]);
    expect((await streamState(big)).viewers).toBe(20);
  });

  it("an edge whose API cannot be reached keeps its viewers (as without the API)", async () => {
    clockAtZero();
    const { edge, fake } = await edgeWithApi(["view0001"]);
    const s = uniqueStream();
    await createStream(s);
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    fake.clients.delete("view0001");
    fake.reachable = false;
    await alarmAt(60_000, edge);
    expect((await streamState(s)).viewers).toBe(1);
  });
});

// Adversarial review of the sweep (92d14d9). Each test here failed on 92d14d9.
describe("the sweep, reviewed: what it must never do, and what it must still reach", () => {
  const asked = (fake: FakeSrs) => fake.calls.filter((c) => c.path.startsWith("/api/v1/clients/")).length;

  it("a quiet shard hibernates between its alarms (no hook for 60 s; Cloudflare takes an idle object out of memory after ~10 s): the sweep still gets past a 20-viewer stream to the next one, whose ghost was otherwise counted, and billed, for good", async () => {
    clockAtZero();
    const crowd = Array.from({ length: 20 }, (_, i) => `crowd0${String(i).padStart(2, "0")}`);
    const { edge, fake } = await edgeWithApi([...crowd, "ghost001"]);
    const [big, small] = [uniqueStream(), uniqueStream()].sort(); // the shard walks its streams by name: big first
    await createStream(big);
    await createStream(small);
    for (const client of crowd) expect(await hook(play("live", big, { ...edge, client }))).toEqual(ALLOW);
    expect(await hook(play("live", small, { ...edge, client: "ghost001" }))).toEqual(ALLOW);
    fake.clients.delete("ghost001"); // its player left; the on_stop was lost
    for (let n = 1; n <= 4; n++) await alarmAt(n * 60_000, edge, true);
    expect((await streamState(small)).viewers).toBe(0); // 92d14d9: 1, after any number of alarms (each began again at the big stream)
    expect((await streamState(big)).viewers).toBe(20);
  });

  it("likewise within a stream of more than 20 viewers here: a hibernated shard walks on from where its last alarm stopped, not from the 20 oldest again", async () => {
    clockAtZero();
    const crowd = Array.from({ length: 24 }, (_, i) => `crowd0${String(i).padStart(2, "0")}`);
    const { edge, fake } = await edgeWithApi([...crowd, "ghost001"]);
    const s = uniqueStream();
    await createStream(s);
    for (const [i, client] of crowd.entries()) {
      at(i);
      expect(await hook(play("live", s, { ...edge, client }))).toEqual(ALLOW);
    }
    at(100);
    expect(await hook(play("live", s, { ...edge, client: "ghost001" }))).toEqual(ALLOW); // the newest viewer
    fake.clients.delete("ghost001");
    for (let n = 1; n <= 3; n++) await alarmAt(n * 60_000, edge, true);
    expect((await streamState(s)).viewers).toBe(24); // 92d14d9: 25 (only the 20 oldest were ever asked about)
  });

  it("an alarm asks about at most 20 viewers, as README says (92d14d9 asked 39: a stream of 19, then one of 20 begun with 1 question left), so an alarm's subrequests stay bounded", async () => {
    clockAtZero();
    const first = Array.from({ length: 19 }, (_, i) => `first0${String(i).padStart(2, "0")}`);
    const second = Array.from({ length: 20 }, (_, i) => `secnd0${String(i).padStart(2, "0")}`);
    const { edge, fake } = await edgeWithApi([...first, ...second]);
    const [a, b] = [uniqueStream(), uniqueStream()].sort();
    await createStream(a);
    await createStream(b);
    for (const client of first) expect(await hook(play("live", a, { ...edge, client }))).toEqual(ALLOW);
    for (const client of second) expect(await hook(play("live", b, { ...edge, client }))).toEqual(ALLOW);
    await alarmAt(60_000, edge);
    expect(asked(fake)).toBeLessThanOrEqual(20);
    await alarmAt(120_000, edge); // the next alarm takes the stream that did not fit
    expect(asked(fake)).toBe(39);
  });

  it("a WebRTC (WHEP) viewer admitted a moment before the alarm, that SRS lists only once the on_play answer reaches it (it registers WHEP players after the hook), is not ended as a ghost: else SRS serves it uncounted and the cap admits one more", async () => {
    clockAtZero();
    const { edge, fake } = await edgeWithApi([]);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    expect(await hook(play("live", s, { ...edge, client: "whep0001" }))).toEqual(ALLOW);
    // The alarm runs while the answer is on its way back to SRS: its API does not list whep0001 yet.
    await runDurableObjectAlarm(shardStub(edge));
    fake.clients.add("whep0001"); // the answer lands: SRS creates the player and serves it
    expect((await streamState(s)).viewers).toBe(1); // 92d14d9: 0, "ended: its SRS server's API no longer has this client"
    fake.clients.add("view0002");
    expect((await hook(play("live", s, { ...edge, client: "view0002" }))).body.code).toBe(4005); // 92d14d9: admitted, 2 served on a cap of 1
    await alarmAt(60_000, edge);
    expect((await streamState(s)).viewers).toBe(1);
  });
});

describe("the stream's alarm ends a ghost publisher nobody tries to replace", () => {
  it("a publisher whose on_unpublish and on_close were both lost stops holding the stream at the stream's next alarm", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    at(0);
    try {
      const { fake, s } = await publishingOnEdgeWithApi();
      await runDurableObjectAlarm(streamStub(s));
      expect((await streamState(s)).live).toBe(true); // SRS still has it: it stays

      at(10_000); // SRS's answer of the first alarm was kept 3 s
      fake.clients.delete("enc00001"); // the encoder left; both stop events lost (a deploy)
      await runDurableObjectAlarm(streamStub(s));
      const state = await streamState(s);
      expect([state.live, state.publisher]).toEqual([false, null]);
      expect(await ghostEnds(s)).toEqual(["enc00001"]);
    } finally {
      vi.useRealTimers();
    }
  });
});
