/**
 * Usage: viewer-seconds, publish-seconds and peak viewers per hour, as the admin API reports them
 * after a sequence of hooks on a fake clock (src/usage/). Sessions count from their start to
 * their end, split over the hours they span; one still open counts up to now; one ended by a
 * restart's fence ends at its server's last heartbeat.
 */
import { describe, expect, it, vi } from "vitest";
import { StreamObject } from "../src/stream/object";
import { ViewerShard } from "../src/viewers/shard";
import { ALLOW, admin, createStream, hook, newEdge, play, publish, stopPlay, uniqueStream, unpublish } from "./srs";
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { at, beat, bucket, deliverNotices, restarted, iso, MIN, minutePeaks, serverStub, shardStub, streamStub, T0, usage, useFakeClock, watchedBy } from "./fleet";

const HOUR = 3_600_000;

useFakeClock();



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
    // The same as CSV, in the fleet's columns: every hour of the range (it was answered as JSON).
    const csv = await exportsFetch(`/streams/live/${stream}/usage?from=${iso(0)}&to=${iso(2 * HOUR - 1000)}&format=csv`);
    expect(csv.headers.get("content-type")).toMatch(/^text\/csv/);
    expect(csv.headers.get("content-disposition")).toBe(`attachment; filename="streamgate-usage-live-${stream}.csv"`);
    expect((await csv.text()).split("\r\n")).toEqual([
      "start,vhost,app,stream,viewerSeconds,publishSeconds,peakViewers",
      `${iso(0)},__defaultVhost__,live,${stream},90,100,2`,
      `${iso(HOUR)},__defaultVhost__,live,${stream},0,0,0`,
      "",
    ]);
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

  it("a restart's fence takes its viewers back from the per-minute peaks of every minute after the last heartbeat, not only the first", async () => {
    const edge = newEdge();
    const stream = uniqueStream();
    await createStream(stream);
    await beat(edge);
    expect(await hook(play("live", stream, { ...edge, client: "v1" }))).toEqual(ALLOW);
    at(50_000);
    await beat(edge); // the process's last heartbeat
    // A second viewer a minute later, within SERVER_TIMEOUT_S of that heartbeat; then the process dies and restarts.
    at(70_000);
    expect(await hook(play("live", stream, { ...edge, client: "v2" }))).toEqual(ALLOW);
    at(75_000);
    await beat(restarted(edge));
    await deliverNotices(edge);
    // v1 ended at 50 s; v2, admitted after that heartbeat, ended at it too (0 viewer-seconds): no peak after it.
    expect(await minutePeaks(stream, 0, 3 * MIN)).toEqual([1, 0, 0]);
  });

  it("viewers watching into a new hour without a change, then fenced by a restart: that hour keeps them as its peak (e2e run 36: peakViewers 0 beside their viewer-seconds)", async () => {
    const edge = newEdge();
    const stream = uniqueStream();
    await createStream(stream);
    await beat(edge);
    // Two viewers from the first hour on; nothing changes until the process dies 40 minutes into the second hour.
    expect(await hook(play("live", stream, { ...edge, client: "v1" }))).toEqual(ALLOW);
    expect(await hook(play("live", stream, { ...edge, client: "v2" }))).toEqual(ALLOW);
    for (let t = 10 * MIN; t <= HOUR + 40 * MIN; t += 10 * MIN) {
      at(t);
      await beat(edge);
    }
    // It restarts a minute after its last heartbeat: the fence ends both at that heartbeat.
    at(HOUR + 41 * MIN);
    await beat(restarted(edge));
    await deliverNotices(edge);
    const body = await usage(stream, `?from=${iso(0)}&to=${iso(2 * HOUR)}`);
    expect(bucket(body, 0)).toMatchObject({ viewerSeconds: 2 * 3600, peakViewers: 2 });
    expect(bucket(body, HOUR)).toMatchObject({ viewerSeconds: 2 * 40 * 60, peakViewers: 2 });
    // And the minutes: two until the last heartbeat (1:40:00.000 exactly, so none in its minute), none after.
    expect(await minutePeaks(stream, HOUR + 38 * MIN, HOUR + 42 * MIN)).toEqual([2, 2, 0, 0]);
  });

  it("viewers of a server that went silent are no peak after its last heartbeat, once their sessions are fenced", async () => {
    const DAY = 24 * HOUR;
    const edge = newEdge();
    const stream = uniqueStream();
    await createStream(stream);
    await beat(edge);
    await hook(play("live", stream, { ...edge, client: "v1" }));
    at(20_000);
    await beat(edge);
    // The server dies; the registry's alarm runs again only after SESSION_GRACE_S (1 day): silence and fence at once.
    at(DAY + 60_000);
    await runDurableObjectAlarm(serverStub(edge));
    await deliverNotices(edge);
    const body = await usage(stream, `?from=${iso(0)}&to=${iso(DAY + 2 * HOUR)}`);
    expect(body.buckets.reduce((sum: number, b: any) => sum + b.viewerSeconds, 0)).toBe(20);
    expect(bucket(body, 0)).toMatchObject({ viewerSeconds: 20, peakViewers: 1 });
    expect(body.buckets.filter((b: any) => b.peakViewers > 0).map((b: any) => b.start)).toEqual([iso(0)]);
    // The console's per-minute chart and stream.ended's peak read the minutes: none after the last heartbeat's.
    expect(await minutePeaks(stream, DAY - HOUR, DAY + 2 * MIN)).toEqual(Array(62).fill(0));
  });

  it("a viewer shard that cannot be asked is named in incomplete (and in a CSV's header); the other shards' viewers still count", async () => {
    const [edge, other] = [newEdge(), newEdge()];
    const stream = uniqueStream();
    await createStream(stream);
    expect(await hook(play("live", stream, { ...edge, client: "v1" }))).toEqual(ALLOW);
    expect(await hook(play("live", stream, { ...other, client: "v2" }))).toEqual(ALLOW);
    at(10_000);
    expect(await hook(stopPlay("live", stream, { ...edge, client: "v1" }))).toEqual(ALLOW);
    expect(await hook(stopPlay("live", stream, { ...other, client: "v2" }))).toEqual(ALLOW);
    const real = ViewerShard.prototype.viewerUsage;
    vi.spyOn(ViewerShard.prototype, "viewerUsage").mockImplementation(async function (this: ViewerShard, ...args: Parameters<ViewerShard["viewerUsage"]>) {
      if ((this as unknown as { ctx: DurableObjectState }).ctx.id.equals(shardStub(other).id)) throw new Error("viewer shard overloaded");
      return real.apply(this, args);
    } as any);
    vi.spyOn(console, "error").mockImplementation(() => {});
    const range = `?from=${iso(0)}&to=${iso(HOUR)}`;
    const body = await usage(stream, range);
    const csv = await exportsFetch(`/streams/live/${stream}/usage${range}&format=csv`);
    vi.restoreAllMocks();
    expect(body).toMatchObject({ incomplete: [other.server], buckets: [{ start: iso(0), viewerSeconds: 10, peakViewers: 1 }] });
    expect(csv.headers.get("streamgate-incomplete")).toBe(other.server);
    expect((await csv.text()).split("\r\n")[1]).toBe(`${iso(0)},__defaultVhost__,live,${stream},10,0,1`);
    expect((await usage(stream, range)).incomplete).toBeUndefined();
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
      "?format=xml",
      "?format=csv&resolution=minute",
      "?format=csv&format=csv",
    ]) {
      const res = await admin("GET", `/streams/live/${stream}/usage${query}`);
      expect(res.status, query).toBe(400);
      expect(res.body.error, query).toMatch(/from|to|range|resolution|kept|format/);
    }
    expect((await admin("GET", `/streams/live/${uniqueStream()}/usage`)).status).toBe(404);
  });

  it("the range's edges (README: 'from' before 'to', at most 31 days per hour and 24 hours per minute, a real date): the longest range is answered, an empty one and a day its month lacks are not", async () => {
    const stream = uniqueStream();
    await createStream(stream);
    // Exactly the longest ranges: every bucket of them.
    expect((await usage(stream, `?from=${iso(-31 * 24 * HOUR)}&to=${iso(0)}`)).buckets).toHaveLength(31 * 24);
    expect((await usage(stream, `?resolution=minute&from=${iso(-24 * HOUR)}&to=${iso(0)}`)).buckets).toHaveLength(24 * 60);
    // One step longer, and an empty range.
    for (const query of [
      `?from=${iso(-31 * 24 * HOUR - HOUR)}&to=${iso(0)}`,
      `?resolution=minute&from=${iso(-24 * HOUR - MIN)}&to=${iso(0)}`,
      `?from=${iso(0)}&to=${iso(0)}`,
    ]) {
      const res = await admin("GET", `/streams/live/${stream}/usage${query}`);
      expect(res.status, query).toBe(400);
      expect(res.body.error, query).toMatch(/"from" must be before "to"|at most/);
    }
    const february30 = await admin("GET", `/streams/live/${stream}/usage?from=2031-02-30T00:00:00Z&to=2031-03-03T00:00:00Z`);
    expect({ status: february30.status, error: february30.body.error }).toEqual({ status: 400, error: 'query parameter "from" must be an ISO 8601 date-time, e.g. 2026-05-01T00:00:00Z' });
    // A day February does not have (Date.parse reads it as March 2) is no date; the month's last day is.
    expect((await usage(stream, "?from=2031-02-28T00:00:00Z&to=2031-03-01T00:00:00Z")).buckets).toHaveLength(24);
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

  it("a range that ends in the future: the minutes not begun yet hold nobody (as future hours), the current one the viewers watching (e2e run 37)", async () => {
    const { edge, s } = await watchedBy(["v1", "v2"]);
    at(90_000);
    expect(await minutePeaks(s, 0, 5 * MIN)).toEqual([2, 2, 0, 0, 0]);
    const hours = (await usage(s, `?from=${iso(0)}&to=${iso(3 * HOUR)}`)).buckets.map((b: any) => b.peakViewers);
    expect(hours).toEqual([2, 0, 0]);
    // A minute later the next minute is the current one: counted then.
    at(150_000);
    await beat(edge);
    expect(await minutePeaks(s, 0, 5 * MIN)).toEqual([2, 2, 2, 0, 0]);
  });
});

describe("USAGE_RETENTION_DAYS", () => {
  it("a session older than the retention counts only from the oldest hour kept", async () => {
    const DAY = 24 * HOUR;
    const edge = newEdge();
    const stream = uniqueStream();
    await createStream(stream);
    at(-91 * DAY);
    await hook(play("live", stream, { ...edge, client: "v1" }));
    at(0);
    await hook(stopPlay("live", stream, { ...edge, client: "v1" }));
    const body = await usage(stream, `?from=${iso(-91 * DAY)}&to=${iso(-89 * DAY)}`);
    expect(bucket(body, -91 * DAY).viewerSeconds).toBe(0);
    expect(bucket(body, -90 * DAY - HOUR).viewerSeconds).toBe(0);
    expect(bucket(body, -90 * DAY).viewerSeconds).toBe(3600);
  });

  it("hours older than the retention are neither reported nor kept, even by a stream and a shard idle since", async () => {
    const DAY = 24 * HOUR;
    const edge = newEdge();
    const stream = uniqueStream();
    const key = await createStream(stream);
    await hook(publish("live", stream, key, { ...edge, client: "pub1" }));
    await hook(play("live", stream, { ...edge, client: "v1" }));
    at(60_000);
    await hook(stopPlay("live", stream, { ...edge, client: "v1" }));
    await hook(unpublish("live", stream, { ...edge, client: "pub1" }));
    expect(bucket(await usage(stream, `?from=${iso(0)}&to=${iso(HOUR)}`), 0)).toMatchObject({ viewerSeconds: 60, publishSeconds: 60, peakViewers: 1 });
    at(91 * DAY);
    expect((await usage(stream, `?from=${iso(0)}&to=${iso(HOUR)}`)).buckets).toEqual([{ start: iso(0), viewerSeconds: 0, publishSeconds: 0, peakViewers: 0 }]);
    const hoursKept = (stub: DurableObjectStub) =>
      runInDurableObject(stub, (_o, state) => state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM usage_hours WHERE hour < ?", T0 + DAY).one().n);
    expect(await hoursKept(streamStub(stream))).toBe(0);
    expect(await hoursKept(shardStub(edge))).toBe(0);
  });

  it("is read as days, and a malformed value falls back to 90 days (logged) instead of failing hooks", async () => {
    const { usageRetentionMs } = await import("../src/config");
    const env = (v?: string) => ({ USAGE_RETENTION_DAYS: v }) as any;
    expect(usageRetentionMs(env("2"))).toBe(2 * 86_400_000);
    expect(usageRetentionMs(env(undefined))).toBe(90 * 86_400_000);
    expect(usageRetentionMs(env("ninety"))).toBe(90 * 86_400_000);
    expect(usageRetentionMs(env("-1"))).toBe(90 * 86_400_000);
  });
});

describe("GET /admin/usage: every stream", () => {
  it("lists each stream's totals and non-empty hours, as JSON and as CSV, and the fleet's viewers per minute", async () => {
    const vhost = `v${crypto.randomUUID().slice(0, 8)}`;
    const edge = newEdge();
    const [a, b] = [uniqueStream(), uniqueStream()];
    for (const s of [a, b]) expect((await admin("PUT", `/streams/live/${s}?vhost=${vhost}`, {})).status).toBe(201);
    await hook({ ...play("live", a, { ...edge, client: "v1" }), vhost });
    await hook({ ...play("live", b, { ...edge, client: "v2" }), vhost });
    at(10_000);
    await hook({ ...stopPlay("live", a, { ...edge, client: "v1" }), vhost });
    at(30_000);
    await hook({ ...stopPlay("live", b, { ...edge, client: "v2" }), vhost });
    const json = await admin("GET", `/usage?vhost=${vhost}&from=${iso(0)}&to=${iso(HOUR)}`);
    expect(json.status).toBe(200);
    const byName = Object.fromEntries(json.body.streams.map((s: any) => [s.stream, s]));
    expect(byName[a]).toMatchObject({ vhost, app: "live", viewerSeconds: 10, publishSeconds: 0, peakViewers: 1, buckets: [{ start: iso(0), viewerSeconds: 10 }] });
    expect(byName[b]).toMatchObject({ viewerSeconds: 30, peakViewers: 1 });
    const csv = await exportsFetch(`/usage?vhost=${vhost}&from=${iso(0)}&to=${iso(HOUR)}&format=csv`);
    expect(csv.headers.get("content-type")).toMatch(/^text\/csv/);
    const lines = (await csv.text()).trim().split("\r\n");
    expect(lines[0]).toBe("start,vhost,app,stream,viewerSeconds,publishSeconds,peakViewers");
    expect(lines.slice(1).sort()).toEqual([`${iso(0)},${vhost},live,${a},10,0,1`, `${iso(0)},${vhost},live,${b},30,0,1`].sort());
    at(60_000);
    const minutes = await admin("GET", `/usage?vhost=${vhost}&resolution=minute`);
    expect(minutes.body.buckets.find((x: any) => x.start === iso(0)).peakViewers).toBe(2);
    for (const bad of ["?format=xml", "?format=csv&resolution=minute", "?to=2031-13-01"]) expect((await admin("GET", `/usage${bad}`)).status, bad).toBe(400);
  });

  it("a stream's totals are its buckets' sums to the millisecond, without float noise (e2e run 36: 135.825 + 202.076 gave 337.90099999999995)", async () => {
    const vhost = `v${crypto.randomUUID().slice(0, 8)}`;
    const edge = newEdge();
    const s = uniqueStream();
    expect((await admin("PUT", `/streams/live/${s}?vhost=${vhost}`, {})).status).toBe(201);
    // A viewer from 135.825 s before the hour's end to 202.076 s into the next.
    at(HOUR - 135_825);
    expect(await hook({ ...play("live", s, { ...edge, client: "v1" }), vhost })).toEqual(ALLOW);
    at(HOUR + 202_076);
    expect(await hook({ ...stopPlay("live", s, { ...edge, client: "v1" }), vhost })).toEqual(ALLOW);
    const json = await admin("GET", `/usage?vhost=${vhost}&from=${iso(0)}&to=${iso(2 * HOUR)}`);
    const [stream] = json.body.streams;
    expect(stream.buckets.map((b: any) => b.viewerSeconds)).toEqual([135.825, 202.076]);
    expect(stream.viewerSeconds).toBe(337.901);
  });

  it("pages through more streams than one call covers (200) with ?cursor=, as GET /admin/streams does", async () => {
    const vhost = `v${crypto.randomUUID().slice(0, 8)}`;
    const names = Array.from({ length: 205 }, (_, i) => `s${String(i).padStart(3, "0")}`);
    for (let i = 0; i < names.length; i += 25) {
      await Promise.all(names.slice(i, i + 25).map(async (n) => expect((await admin("PUT", `/streams/live/${n}?vhost=${vhost}`, {})).status).toBe(201)));
    }
    const edge = newEdge();
    await hook({ ...play("live", "s204", { ...edge, client: "v1" }), vhost });
    at(10_000);
    await hook({ ...stopPlay("live", "s204", { ...edge, client: "v1" }), vhost });
    const range = `from=${iso(0)}&to=${iso(HOUR)}`;
    const first = await admin("GET", `/usage?vhost=${vhost}&${range}`);
    expect(first.body).toMatchObject({ truncated: true });
    expect(first.body.streams).toHaveLength(200);
    const second = await admin("GET", `/usage?vhost=${vhost}&${range}&cursor=${encodeURIComponent(first.body.cursor)}`);
    expect(second.body.cursor).toBeUndefined();
    expect([...first.body.streams, ...second.body.streams].map((x: any) => x.stream)).toEqual(names);
    expect(second.body.streams.at(-1)).toMatchObject({ stream: "s204", viewerSeconds: 10 });
    const csv = await exportsFetch(`/usage?vhost=${vhost}&${range}&format=csv`);
    const next = csv.headers.get("streamgate-cursor");
    await csv.body?.cancel();
    const rest = await exportsFetch(`/usage?vhost=${vhost}&${range}&format=csv&cursor=${encodeURIComponent(next!)}`);
    expect((await rest.text()).trim().split("\r\n").slice(1)).toEqual([`${iso(0)},${vhost},live,s204,10,0,1`]);
  });

  it("a stream whose object cannot be asked is named as unavailable; the other streams still report", async () => {
    const vhost = `v${crypto.randomUUID().slice(0, 8)}`;
    const edge = newEdge();
    const [a, b] = [uniqueStream(), uniqueStream()];
    for (const s of [a, b]) expect((await admin("PUT", `/streams/live/${s}?vhost=${vhost}`, {})).status).toBe(201);
    await hook({ ...play("live", a, { ...edge, client: "v1" }), vhost });
    at(10_000);
    await hook({ ...stopPlay("live", a, { ...edge, client: "v1" }), vhost });
    const real = StreamObject.prototype.publishUsage;
    vi.spyOn(StreamObject.prototype, "publishUsage").mockImplementation(async function (this: StreamObject, ...args: Parameters<StreamObject["publishUsage"]>) {
      if ((await this.state())?.stream === b) throw new Error("stream object overloaded");
      return real.apply(this, args);
    } as any);
    const json = await admin("GET", `/usage?vhost=${vhost}&from=${iso(0)}&to=${iso(HOUR)}`);
    // A spreadsheet export says so too, in a header (its lines have no room for it).
    const csv = await exportsFetch(`/usage?vhost=${vhost}&from=${iso(0)}&to=${iso(HOUR)}&format=csv`);
    vi.restoreAllMocks();
    expect(csv.headers.get("streamgate-unavailable")).toBe(`${vhost}/live/${b}`);
    expect((await csv.text()).trim().split("\r\n").slice(1)).toEqual([`${iso(0)},${vhost},live,${a},10,0,1`]);
    expect(json.status).toBe(200);
    expect(json.body.unavailable).toEqual([`${vhost}/live/${b}`]);
    expect(json.body.streams.find((s: any) => s.stream === a)).toMatchObject({ viewerSeconds: 10 });
    expect(json.body.streams.find((s: any) => s.stream === b)).toMatchObject({ viewerSeconds: 0, buckets: [] });
  });
});

/** A raw admin GET (the CSV answer is not JSON). */
async function exportsFetch(path: string): Promise<Response> {
  const { exports } = await import("cloudflare:workers");
  return exports.default.fetch(`http://gate.test/admin${path}`, { headers: { authorization: "Bearer test-admin-token-32-chars-or-more" } });
}
