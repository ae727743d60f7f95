/**
 * Usage: viewer-seconds, publish-seconds and peak viewers per hour, as the admin API reports them
 * after a sequence of hooks on a fake clock (src/usage/). Sessions count from their start to
 * their end, split over the hours they span; one still open counts up to now; one ended by a
 * restart's fence ends at its server's last heartbeat.
 */
import { describe, expect, it } from "vitest";
import { admin, createStream, hook, newEdge, play, publish, stopPlay, uniqueStream, unpublish } from "./srs";
import { at, beat, deliverNotices, restarted, T0, useFakeClock } from "./fleet";

const ALLOW = { status: 200, body: { code: 0 } };
const HOUR = 3_600_000;
const iso = (ms: number) => new Date(T0 + ms).toISOString();

useFakeClock();

async function usage(stream: string, query = "") {
  const res = await admin("GET", `/streams/live/${stream}/usage${query}`);
  expect(res.status).toBe(200);
  return res.body;
}

/** The bucket that starts at T0 + ms. */
const bucket = (body: any, ms: number) => body.buckets.find((b: any) => b.start === iso(ms));

describe("usage of a stream", () => {
  it("a publish of 100 s and two viewers of 60 s and 30 s: publishSeconds 100, viewerSeconds 90, peakViewers 2", async () => {
    const edge = newEdge();
    const stream = uniqueStream();
    const key = await createStream(stream);
    expect(await hook(publish("live", stream, key, { ...edge, client: "pub1" }))).toEqual(ALLOW);
    at(10_000);
    expect(await hook(play("live", stream, { ...edge, client: "v1" }))).toEqual(ALLOW);
    at(20_000);
    expect(await hook(play("live", stream, { ...edge, client: "v2" }))).toEqual(ALLOW);
    at(50_000);
    expect(await hook(stopPlay("live", stream, { ...edge, client: "v2" }))).toEqual(ALLOW);
    at(70_000);
    expect(await hook(stopPlay("live", stream, { ...edge, client: "v1" }))).toEqual(ALLOW);
    at(100_000);
    expect(await hook(unpublish("live", stream, { ...edge, client: "pub1" }))).toEqual(ALLOW);
    const body = await usage(stream, `?from=${iso(0)}&to=${iso(HOUR)}`);
    expect(body.buckets).toEqual([{ start: iso(0), viewerSeconds: 90, publishSeconds: 100, peakViewers: 2 }]);
  });

  it("a session spanning hours is split across their buckets; the default range is the last 24 hours", async () => {
    const edge = newEdge();
    const stream = uniqueStream();
    const key = await createStream(stream);
    at(HOUR - 600_000);
    await hook(publish("live", stream, key, { ...edge, client: "pub1" }));
    await hook(play("live", stream, { ...edge, client: "v1" }));
    at(2 * HOUR + 300_000);
    await hook(stopPlay("live", stream, { ...edge, client: "v1" }));
    await hook(unpublish("live", stream, { ...edge, client: "pub1" }));
    const body = await usage(stream);
    expect(body.buckets).toHaveLength(25);
    expect(bucket(body, 0)).toEqual({ start: iso(0), viewerSeconds: 600, publishSeconds: 600, peakViewers: 1 });
    expect(bucket(body, HOUR)).toEqual({ start: iso(HOUR), viewerSeconds: 3600, publishSeconds: 3600, peakViewers: 1 });
    expect(bucket(body, 2 * HOUR)).toEqual({ start: iso(2 * HOUR), viewerSeconds: 300, publishSeconds: 300, peakViewers: 1 });
    const total = body.buckets.reduce((s: number, b: any) => s + b.viewerSeconds, 0);
    expect(total).toBe(600 + 3600 + 300);
  });

  it("open sessions count up to now, so the current hour shows a live stream's usage", async () => {
    const edge = newEdge();
    const stream = uniqueStream();
    const key = await createStream(stream);
    await hook(publish("live", stream, key, { ...edge, client: "pub1" }));
    await hook(play("live", stream, { ...edge, client: "v1" }));
    at(42_000);
    expect(bucket(await usage(stream), 0)).toEqual({ start: iso(0), viewerSeconds: 42, publishSeconds: 42, peakViewers: 1 });
    at(HOUR + 1_000);
    const later = await usage(stream);
    expect(bucket(later, HOUR)).toEqual({ start: iso(HOUR), viewerSeconds: 1, publishSeconds: 1, peakViewers: 1 });
  });

  it("viewers on two servers: their seconds add up, peakViewers is the sum of the servers' peaks", async () => {
    const [a, b] = [newEdge(), newEdge()];
    const stream = uniqueStream();
    await createStream(stream);
    await hook(play("live", stream, { ...a, client: "v1" }));
    await hook(play("live", stream, { ...b, client: "v2" }));
    await hook(play("live", stream, { ...b, client: "v3" }));
    at(30_000);
    for (const [edge, client] of [[a, "v1"], [b, "v2"], [b, "v3"]] as const) await hook(stopPlay("live", stream, { ...edge, client }));
    expect(bucket(await usage(stream), 0)).toEqual({ start: iso(0), viewerSeconds: 90, publishSeconds: 0, peakViewers: 3 });
  });

  it("sessions ended by a restart's fence end at the server's last heartbeat, not when the fence ran", async () => {
    const edge = newEdge();
    const stream = uniqueStream();
    const key = await createStream(stream);
    await beat(edge);
    await hook(publish("live", stream, key, { ...edge, client: "pub1" }));
    await hook(play("live", stream, { ...edge, client: "v1" }));
    at(20_000);
    await beat(edge);
    // The process dies; its restart heartbeats 25 minutes later.
    at(20_000 + 1_500_000);
    await beat(restarted(edge));
    await deliverNotices(edge);
    expect(bucket(await usage(stream), 0)).toEqual({ start: iso(0), viewerSeconds: 20, publishSeconds: 20, peakViewers: 1 });
  });

  it("bad ranges are refused with a 400 and change nothing", async () => {
    const stream = uniqueStream();
    await createStream(stream);
    for (const query of [
      "?from=yesterday",
      "?from=1",
      `?from=${iso(HOUR)}&to=${iso(0)}`,
      `?from=${iso(-32 * 24 * HOUR)}&to=${iso(0)}`,
      "?resolution=second",
      `?resolution=minute&from=${iso(-3 * 24 * HOUR)}&to=${iso(-3 * 24 * HOUR + HOUR)}`,
      `?resolution=minute&from=${iso(-25 * HOUR)}`,
    ]) {
      const res = await admin("GET", `/streams/live/${stream}/usage${query}`);
      expect(res.status, query).toBe(400);
      expect(res.body.error, query).toMatch(/from|to|range|resolution|kept/);
    }
    expect((await admin("GET", `/streams/live/${uniqueStream()}/usage`)).status).toBe(404);
  });
});

describe("usage per minute (the console's chart)", () => {
  it("concurrent viewers per minute over the last hour, each minute's peak", async () => {
    const [a, b] = [newEdge(), newEdge()];
    const stream = uniqueStream();
    await createStream(stream);
    at(-30 * 60_000);
    await hook(play("live", stream, { ...a, client: "v1" }));
    at(-20 * 60_000 + 5_000);
    await hook(play("live", stream, { ...b, client: "v2" }));
    at(-20 * 60_000 + 10_000);
    await hook(stopPlay("live", stream, { ...b, client: "v2" }));
    at(-10 * 60_000);
    await hook(stopPlay("live", stream, { ...a, client: "v1" }));
    at(0);
    const body = await usage(stream, "?resolution=minute");
    expect(body.buckets).toHaveLength(60);
    const minute = (m: number) => body.buckets.find((x: any) => x.start === iso(m * 60_000)).peakViewers;
    expect(minute(-31)).toBe(0);
    expect(minute(-30)).toBe(1);
    expect(minute(-21)).toBe(1);
    expect(minute(-20)).toBe(2);
    expect(minute(-19)).toBe(1);
    expect(minute(-10)).toBe(1);
    expect(minute(-9)).toBe(0);
  });
});
