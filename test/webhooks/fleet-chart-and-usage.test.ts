/**
 * Review of issue 15 (events out, usage in): defects found by an acceptance review, each pinned by
 * a test that failed before its fix. Runs in the "webhooks" project (EVENTS_WEBHOOK_URL set).
 */
import { describe, expect, it } from "vitest";
import chartsSource from "../../public/console/charts.js?raw";
import { admin, createStream, hook, newEdge, play, uniqueStream } from "../srs";
import { at, MIN, useFakeClock } from "../fleet";

useFakeClock();

/** A stand-in for the few DOM calls public/console/charts.js makes, enough to read the chart it draws. */
function fakeDom() {
  const node = (tag: string): any => ({
    tag,
    attrs: {} as Record<string, string>,
    children: [] as any[],
    setAttribute(name: string, value: unknown) { this.attrs[name] = String(value); },
    append(...c: any[]) { this.children.push(...c); },
    prepend(...c: any[]) { this.children.unshift(...c); },
    replaceChildren(...c: any[]) { this.children = c; },
    addEventListener() {},
    querySelector: (sel: string) => (sel === ".fleet-chart" ? box : section),
  });
  const box = node("div");
  const section = node("section");
  const document = { createElementNS: (_ns: string, tag: string) => node(tag), querySelector: () => section };
  const el = (tag: string, attrs: Record<string, unknown> = {}, ...children: any[]) => {
    const n = node(tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    n.append(...children);
    return n;
  };
  return { document, el, box };
}

/** Loads the console's charts.js with the admin API behind `api` (as app.js's api(): the body, or a throw). */
function consoleCharts() {
  const { document, el, box } = fakeDom();
  const api = async (method: string, path: string) => {
    const res = await admin(method, path);
    if (res.status >= 400) throw new Error(`${res.status} ${JSON.stringify(res.body)}`);
    return res.body;
  };
  const failure = (err: unknown) => String(err);
  const load = new Function("document", "el", "api", "failure", "setInterval", `${chartsSource}\nreturn { refreshFleet };`);
  const { refreshFleet } = load(document, el, api, failure, () => 0) as { refreshFleet: () => Promise<void> };
  return { refreshFleet, figure: () => box.children[0] };
}

describe("the console's fleet-wide chart (All streams: concurrent viewers)", () => {
  it("counts the viewers of every stream, also beyond the first page of 200 streams GET /admin/usage answers", async () => {
    // 200 streams that sort before the watched one in the catalogue, so that it is on the second page.
    const fillers = Array.from({ length: 200 }, (_, i) => `a${String(i).padStart(3, "0")}`);
    for (let i = 0; i < fillers.length; i += 25) await Promise.all(fillers.slice(i, i + 25).map((n) => createStream(n)));
    const watched = `zz-${uniqueStream()}`;
    await createStream(watched);
    const edge = newEdge();
    expect((await hook(play("live", watched, { ...edge, client: "v1" }))).status).toBe(200);
    at(MIN);
    const fleet = await admin("GET", "/usage?resolution=minute");
    expect(fleet.body.truncated).toBe(true);
    const { refreshFleet, figure } = consoleCharts();
    await refreshFleet();
    expect(figure().attrs["data-chart"]).toBe("fleet-minute");
    // Its viewer was watching during the last hour: the fleet's total shows it.
    expect(figure().attrs["data-max"]).toBe("1");
  });
});

describe("GET /admin/usage?resolution=minute of no stream at all", () => {
  it("answers every minute of the range with 0 viewers, as for any stream, not an empty list", async () => {
    const vhost = `v${crypto.randomUUID().slice(0, 8)}`;
    const res = await admin("GET", `/usage?vhost=${vhost}&resolution=minute`);
    expect(res.status).toBe(200);
    expect(res.body.buckets).toHaveLength((Date.parse(res.body.to) - Date.parse(res.body.from)) / MIN);
    expect(res.body.buckets.length).toBeGreaterThanOrEqual(60);
    expect(res.body.buckets.every((b: any) => b.peakViewers === 0)).toBe(true);
  });
});
