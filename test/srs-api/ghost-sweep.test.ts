/**
 * Ghosts of lost stop hooks on streams no refusal reaches. HTTP-FLV and HLS viewers have no on_close,
 * and SRS never retries an on_stop: one lost to a deploy left the viewer counted (the audience, the
 * usage's viewer-seconds) until its edge restarted, on an unlimited stream or one below its cap, since
 * only a refusal asked the SRS API. The viewer shard's alarm now asks its server's API about one
 * stream's viewers each run (README, "SRS's HTTP API"). Runs in the "srs-api" project (test/fake-srs.ts).
 */
import { describe, expect, it, vi } from "vitest";
import { admin, createStream, hook, play, publish, streamState, uniqueStream } from "../srs";
import { ALLOW, edgeWithApi, installFakeSrs } from "../fake-srs";
import { runDurableObjectAlarm } from "cloudflare:test";
import { at, shardStub, streamStub } from "../fleet";

installFakeSrs();

const ghostEnds = async (s: string) =>
  ((await admin("GET", `/streams/live/${s}/events`)).body.events ?? []).filter((e: any) => e.action === "ghost").map((e: any) => e.client);

describe("the viewer shard's alarm ends ghosts no refusal would find", () => {
  it("an unlimited stream's FLV viewer whose on_stop was lost ends at the shard's next alarm; viewers SRS still has play on", async () => {
    const { edge, fake } = await edgeWithApi(["view0001", "view0002"]);
    const s = uniqueStream();
    await createStream(s); // maxViewers null: nothing is ever refused, so no refusal's ghost check runs
    for (const client of ["view0001", "view0002"]) expect(await hook(play("live", s, { ...edge, client }))).toEqual(ALLOW);
    fake.clients.delete("view0001"); // the player left; its on_stop never reached the gate
    expect((await streamState(s)).viewers).toBe(2);

    await runDurableObjectAlarm(shardStub(edge));
    expect((await streamState(s)).viewers).toBe(1);
    expect(await ghostEnds(s)).toEqual(["view0001"]);
    const usage = (await admin("GET", `/streams/live/${s}/usage`)).body.buckets;
    expect(usage.at(-1).viewerSeconds).toBeLessThan(60); // the ghost's time ended with it, not counting on

    await runDurableObjectAlarm(shardStub(edge));
    expect((await streamState(s)).viewers).toBe(1); // view0002 is still on SRS: never ended
  });

  it("the streams take turns, up to 20 questions an alarm: small streams together, and a stream after one that used them all", async () => {
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

    await runDurableObjectAlarm(shardStub(edge));
    expect(asked().sort()).toEqual([...crowd].sort()); // the big stream's 20 used the alarm's questions
    expect([(await streamState(small1)).viewers, (await streamState(small2)).viewers]).toEqual([1, 1]);

    await runDurableObjectAlarm(shardStub(edge)); // the next alarm goes on from there: both small streams at once
    expect([(await streamState(small1)).viewers, (await streamState(small2)).viewers]).toEqual([0, 0]);
    expect((await streamState(big)).viewers).toBe(20);
  });

  it("an edge whose API cannot be reached keeps its viewers (as without the API)", async () => {
    const { edge, fake } = await edgeWithApi(["view0001"]);
    const s = uniqueStream();
    await createStream(s);
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    fake.clients.delete("view0001");
    fake.reachable = false;
    await runDurableObjectAlarm(shardStub(edge));
    expect((await streamState(s)).viewers).toBe(1);
  });
});

describe("the stream's alarm ends a ghost publisher nobody tries to replace", () => {
  it("a publisher whose on_unpublish and on_close were both lost stops holding the stream at the stream's next alarm", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    at(0);
    try {
      const { edge, fake } = await edgeWithApi(["enc00001"]);
      const s = uniqueStream();
      const key = await createStream(s);
      expect(await hook(publish("live", s, key, { ...edge, client: "enc00001" }))).toEqual(ALLOW);
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
