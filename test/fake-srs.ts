/**
 * A fake of SRS 7's HTTP API (srs_app_http_api.cpp) for the tests of the "srs-api" project
 * (SRS_API_URL = https://{device_id}.srs.test:1985, basic auth gate / srs-api-password):
 * every answer is HTTP 200, "not found" is the bare `{"code":2049}`, a success the code-0
 * envelope with server, service and pid; 401 with an empty body for bad credentials. The fetch
 * spy routes hosts of `hosts` to their fake and behaves like workerd's fetch where it matters:
 * it follows redirects when the request's redirect mode is "follow" (stripping Authorization
 * across origins) and honours the request's AbortSignal.
 */
import { afterEach, beforeEach, expect, vi } from "vitest";
import { ALLOW, admin, createStream, heartbeat, hook, newEdge, play, publish, uniqueStream, type Edge } from "./srs";
import { runDurableObjectAlarm } from "cloudflare:test";
import { at, serverListed, serverStub } from "./fleet";

export { ALLOW } from "./srs";
export const BASIC = `Basic ${btoa("gate:srs-api-password")}`;

/** Calls being answered by all the fakes together, and the most at once: reset before each test. */
export const network = { inFlight: 0, maxInFlight: 0 };

export interface Call {
  host: string;
  method: string;
  path: string;
  auth: string | null;
}

/** One fake SRS process's http_api. */
export class FakeSrs {
  clients = new Set<string>();
  reachable = true;
  /** Each answer takes this long (the request's signal still aborts it). */
  delayMs = 0;
  /** Never answers (until the signal aborts). */
  hang = false;
  /**
   * A call its caller gave up on during `delayMs` is carried out all the same once the delay is over (a slow SRS does
   * not know the caller stopped waiting: a DELETE then kicks); its caller still sees the abort.
   */
  lateEffects = false;
  /** DELETE answers code 0 but the client stays (a kicked connection that lingers). */
  linger = false;
  /** Leave the `service` field out of code-0 envelopes. */
  noService = false;
  /** Set false after the first DELETE (the API goes away right after a kick). */
  downAfterDelete = false;
  /** Called at each kick (DELETE of a client it has), awaited before the DELETE is answered. */
  onKick: ((id: string) => unknown) | null = null;
  inFlight = 0;
  maxInFlight = 0;
  calls: Call[] = [];
  /** Fields of a client's entry other than the defaults (SRS's `ip`, from X-Forwarded-For, is as long as the header was). */
  details = new Map<string, Record<string, unknown>>();
  /** Replaces the whole answer when set. */
  override: ((req: Request) => Response | Promise<Response>) | null = null;

  constructor(
    public server: string,
    public service: string,
  ) {}

  envelope() {
    return { code: 0, server: this.server, ...(this.noService ? {} : { service: this.service }), pid: "4242" };
  }

  async handle(req: Request): Promise<Response> {
    if (!this.reachable) throw new TypeError("Network connection lost.");
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    network.inFlight++;
    network.maxInFlight = Math.max(network.maxInFlight, network.inFlight);
    try {
      if (this.delayMs > 0 && !this.hang && this.lateEffects) {
        const answer = new Promise<void>((r) => setTimeout(r, this.delayMs)).then(() => this.answer(req));
        answer.catch(() => {});
        const aborted = new Promise<never>((_, reject) => {
          if (req.signal.aborted) reject(req.signal.reason);
          req.signal.addEventListener("abort", () => reject(req.signal.reason));
        });
        aborted.catch(() => {});
        return await Promise.race([answer, aborted]);
      }
      if (this.hang || this.delayMs > 0) await abortableSleep(this.hang ? 3_600_000 : this.delayMs, req.signal);
      return await this.answer(req);
    } finally {
      this.inFlight--;
      network.inFlight--;
    }
  }

  /** The answer to a call that reached it (after its delay, if any). */
  private async answer(req: Request): Promise<Response> {
    if (this.override) return await this.override(req);
    if (req.headers.get("authorization") !== BASIC) return new Response(null, { status: 401 });
    const path = new URL(req.url).pathname;
    if (path === "/api/v1/" || path === "/api/v1") return Response.json({ ...this.envelope(), urls: { clients: "..." } });
    if (path === "/api/v1/versions") return Response.json({ ...this.envelope(), data: { major: 7, minor: 0, revision: 18, version: "7.0.18" } });
    if (path === "/api/v1/clients/" || path === "/api/v1/clients") {
      if (req.method === "DELETE") return Response.json({ code: 2049 });
      return Response.json({ ...this.envelope(), clients: [...this.clients].map((id) => ({ id })) });
    }
    const m = path.match(/^\/api\/v1\/clients\/([^/]+)$/);
    if (!m) return Response.json({ code: 1 });
    // As SRS: the path's segment as it arrives is the id (SrsHttpMessage::parse_rest_id; SRS never percent-decodes a path).
    const id = m[1];
    if (!this.clients.has(id)) return Response.json({ code: 2049 });
    if (req.method === "DELETE") {
      if (!this.linger) this.clients.delete(id);
      if (this.downAfterDelete) this.reachable = false;
      await this.onKick?.(id);
      return Response.json(this.envelope());
    }
    return Response.json({ ...this.envelope(), client: { id, vhost: "vid-x", stream: "vid-y", ip: "127.0.0.1", url: "/live/cam", name: "cam", type: "rtmp-play", publish: false, alive: 3.2, ...this.details.get(id) } });
  }
}

function abortableSleep(ms: number, signal: AbortSignal | null): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(t);
      reject(signal.reason);
    });
  });
}

/** The fake SRS behind each host, and every call that reached one. */
export const hosts = new Map<string, FakeSrs>();
export const allCalls: Call[] = [];

/** Routes the Worker's and the objects' fetch to the fakes for each test of the calling file. */
/** DELETE /api/v1/clients/{id} reached the fake with a path SRS reads as that id (SRS does not percent-decode paths). */
export const kickedOn = (fake: FakeSrs, client: string) => fake.calls.some((c) => c.method === "DELETE" && c.path === `/api/v1/clients/${client}`);

export function installFakeSrs(): void {
  beforeEach(() => {
    network.inFlight = network.maxInFlight = 0;
    const real = globalThis.fetch;
    vi.spyOn(globalThis, "fetch").mockImplementation(async (input: RequestInfo | URL, init?: RequestInit) => {
      let request = new Request(input, init);
      if (!hosts.has(new URL(request.url).host)) return real(input, init);
      for (let hop = 0; hop < 10; hop++) {
        const url = new URL(request.url);
        const fake = hosts.get(url.host);
        if (!fake) throw new TypeError(`fake network: no route to ${url.host}`);
        const call = { host: url.host, method: request.method, path: url.pathname, auth: request.headers.get("authorization") };
        fake.calls.push(call);
        allCalls.push(call);
        const res = await fake.handle(request);
        const location = res.headers.get("location");
        if (request.redirect === "follow" && [301, 302, 303, 307, 308].includes(res.status) && location) {
          const next = new URL(location, request.url);
          const headers = new Headers(request.headers);
          if (next.origin !== url.origin) headers.delete("authorization");
          request = new Request(next, { method: request.method, headers, signal: request.signal, redirect: "follow" });
          continue;
        }
        return res;
      }
      throw new TypeError("Too many redirects.");
    });
  });
  afterEach(() => {
    vi.restoreAllMocks();
    hosts.clear();
    allCalls.length = 0;
  });
}

export function deviceOf(edge: Edge) {
  return `dev-${edge.server.slice(4)}`;
}
export function hostOf(edge: Edge) {
  return `${deviceOf(edge)}.srs.test:1985`;
}

/** An edge that heartbeats with a device_id, so SRS_API_URL names its fake API. */
export async function edgeWithApi(clients: string[] = [], edge: Edge = newEdge()): Promise<{ edge: Edge; fake: FakeSrs }> {
  expect(await hook({ ...heartbeat(edge), device_id: deviceOf(edge) }, undefined, "/heartbeat")).toEqual(ALLOW);
  const fake = new FakeSrs(edge.server, edge.service);
  for (const c of clients) fake.clients.add(c);
  hosts.set(hostOf(edge), fake);
  return { edge, fake };
}

/** A publisher ("enc00001") SRS has on an edge with an API, admitted on a new stream with its key. */
export async function publishingOnEdgeWithApi(): Promise<{ edge: Edge; fake: FakeSrs; s: string; key: string }> {
  const { edge, fake } = await edgeWithApi(["enc00001"]);
  const s = uniqueStream();
  const key = await createStream(s);
  expect(await hook(publish("live", s, key, { ...edge, client: "enc00001" }))).toEqual(ALLOW);
  return { edge, fake, s, key };
}

/**
 * A viewer ("view0001") SRS has on an edge with an API, whose session the operator ends: its kick is
 * queued in the edge's registry shard. `first` changes the fake before the kick is queued.
 */
export async function operatorKick(first: (fake: FakeSrs) => void = () => {}): Promise<{ edge: Edge; fake: FakeSrs; s: string }> {
  const { edge, fake } = await edgeWithApi(["view0001"]);
  const s = uniqueStream();
  await createStream(s, { maxViewers: 10 });
  expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
  first(fake);
  expect((await admin("DELETE", `/streams/live/${s}/sessions`)).body.kicking).toHaveLength(1);
  return { edge, fake, s };
}

/**
 * On the fake clock (at 0 when called): a viewer ("view0001") SRS has on an edge with an API, whose edge
 * then freezes (a stopped process, a partition: no heartbeats, and its API holds every call until the
 * call's 2 s limit) until it is silent (31 s); the operator ends the viewer's session, queueing its kick.
 */
export async function frozenEdgeKicking(): Promise<{ edge: Edge; fake: FakeSrs; s: string }> {
  const { edge, fake } = await edgeWithApi(["view0001"]);
  const s = uniqueStream();
  await createStream(s, { maxViewers: 10 });
  expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
  fake.hang = true;
  at(31_000);
  await runDurableObjectAlarm(serverStub(edge));
  expect((await serverListed(edge)).alive).toBe(false);
  expect((await admin("DELETE", `/streams/live/${s}/sessions?client=view0001`)).body.kicking).toHaveLength(1);
  return { edge, fake, s };
}

/** A frozen edge comes back while a kick's try is on its way: its API answers again and it heartbeats. */
export async function thawedDuringATry(edge: Edge, fake: FakeSrs): Promise<void> {
  // Generous: on a loaded machine (CI with other work) the registry's alarm can take seconds to start its try.
  await vi.waitFor(() => expect(fake.inFlight).toBe(1), { timeout: 15_000, interval: 20 });
  fake.hang = false;
  expect((await hook({ ...heartbeat(edge), device_id: deviceOf(edge) }, undefined, "/heartbeat")).status).toBe(200);
}

/** The try on its way fails (its call times out), then the registry's alarm runs; returns once `client` is kicked. */
export async function kickedAfterTheTry(edge: Edge, fake: FakeSrs, client = "view0001"): Promise<void> {
  await vi.waitFor(() => expect(fake.inFlight).toBe(0), { timeout: 15_000, interval: 20 });
  await scheduler.wait(100);
  await runDurableObjectAlarm(serverStub(edge));
  await vi.waitFor(() => expect(kickedOn(fake, client)).toBe(true), { timeout: 3000, interval: 50 });
}

/**
 * A stream with onDuplicatePublish "replace" whose publisher "enc00001" is live on edge `a`, and an
 * edge `b` whose SRS has "enc00002", about to take it over with the same key.
 */
export async function takeoverReady() {
  const a = await edgeWithApi(["enc00001"]);
  const b = await edgeWithApi(["enc00002"]);
  const s = uniqueStream();
  const key = await createStream(s);
  expect((await admin("PUT", `/streams/live/${s}`, { onDuplicatePublish: "replace" })).body.onDuplicatePublish).toBe("replace");
  expect(await hook(publish("live", s, key, { ...a.edge, client: "enc00001" }))).toEqual(ALLOW);
  return { a, b, s, key };
}

/** A fake SRS API of `edge`'s process at another host (a per-server override). */
export function fakeAt(host: string, edge: Edge, clients: string[] = []): FakeSrs {
  const fake = new FakeSrs(edge.server, edge.service);
  for (const c of clients) fake.clients.add(c);
  hosts.set(host, fake);
  return fake;
}

