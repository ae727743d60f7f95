/**
 * Adversarial review of 63d4518 (a publisher takeover fits in the hook's deadline): slow and
 * restarting edges, two live holders after a heal, tiny budgets. Runs in the "srs-api" project,
 * against test/fake-srs.ts.
 */
import { runDurableObjectAlarm } from "cloudflare:test";
import { describe, expect, it, onTestFinished, vi } from "vitest";
import { admin, createStream, heartbeat, hook, newEdge, publish, streamState, uniqueStream, type Edge } from "../srs";
import { ALLOW, FakeSrs, deviceOf, installFakeSrs, kickedOn, takeoverReady, edgeWithApi } from "../fake-srs";
import { GhostCheck } from "../../src/srs/ghosts";
import { ServerRegistry } from "../../src/server/registry";
import { at, deliverNotices, serverListed, overloaded, serverStub, streamStub, until, withDeadline } from "../fleet";

installFakeSrs();

const TIMEOUT_MS = 30_000; // SERVER_TIMEOUT_S in wrangler.toml
const beatWithDevice = (edge: Edge) => hook({ ...heartbeat(edge), device_id: deviceOf(edge) }, undefined, "/heartbeat");

/**
 * A "replace" stream held by enc00003 on edge c while enc00001 on edge a, back from a silence, is
 * live too (a conflict after a heal): two live holders. Edge b's SRS has enc00002, about to take over.
 */
async function twoLiveHolders() {
  // A clock that moves with real time (the takeover's timing is real), starting at T0.
  vi.useFakeTimers({ toFake: ["Date"], shouldAdvanceTime: true });
  onTestFinished(() => void vi.useRealTimers());
  at(0);
  const a = await edgeWithApi(["enc00001"]);
  const s = uniqueStream();
  const key = await createStream(s);
  expect((await admin("PUT", `/streams/live/${s}`, { onDuplicatePublish: "replace" })).status).toBe(200);
  expect(await hook(publish("live", s, key, { ...a.edge, client: "enc00001" }))).toEqual(ALLOW);
  // Edge a falls silent: its publisher is suspended, and c publishes meanwhile.
  at(TIMEOUT_MS + 1_000);
  await runDurableObjectAlarm(serverStub(a.edge));
  await runDurableObjectAlarm(streamStub(s));
  const c = await edgeWithApi(["enc00003"]);
  expect(await hook(publish("live", s, key, { ...c.edge, client: "enc00003" }))).toEqual(ALLOW);
  // a heals (same process): two live publishers, c holding the stream, a in conflict.
  at(TIMEOUT_MS + 5_000);
  expect(await beatWithDevice(a.edge)).toEqual(ALLOW);
  await deliverNotices(a.edge);
  const b = await edgeWithApi(["enc00002"]);
  expect(await streamState(s)).toMatchObject({ publisher: { clientId: "enc00003", state: "live" }, conflicts: [{ clientId: "enc00001" }] });
  return { a, b, c, s, key };
}

describe("adversarial: takeover within the hook's deadline", () => {
  it("must not happen (fixed): two live holders after a heal, each edge slow: the first is kicked, then no time is left for the second and the new publisher is refused", async () => {
    const { a, b, c, s, key } = await twoLiveHolders();
    // Both old edges answer each call in 1.9 s; the new publisher comes with the right key.
    a.fake.delayMs = 1_900;
    c.fake.delayMs = 1_900;
    const r = await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }));
    await until(() => a.fake.inFlight === 0 && c.fake.inFlight === 0);
    const kicked = [kickedOn(a.fake, "enc00001"), kickedOn(c.fake, "enc00003")];
    if (r.status === 200 && r.body.code === 0) {
      // Admitted: only after both were kicked.
      expect(kicked).toEqual([true, true]);
    } else {
      // Refused: nobody was kicked for it.
      expect(r.body.code).toBe(4009);
      expect(kicked).toEqual([false, false]);
    }
  });

  it("must not happen (fixed): two live holders, the second's API address slow to look up (its registry shard, its cached address expired): the first is kicked, then the hook runs out of time", async () => {
    const { a, b, c, s, key } = await twoLiveHolders();
    // The second lookup of a holder's SRS API address takes 9 s (a slow registry shard).
    const real = GhostCheck.prototype.targetOf;
    let lookups = 0;
    vi.spyOn(GhostCheck.prototype, "targetOf").mockImplementation(async function (this: GhostCheck, ...args: Parameters<GhostCheck["targetOf"]>) {
      if (++lookups === 2) await scheduler.wait(9_000);
      return real.apply(this, args);
    });
    const r = await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }));
    expect(r.status === 200 && r.body.code === 0).toBe(false);
    // Refused (or failed): nobody was kicked for it.
    expect([kickedOn(a.fake, "enc00001"), kickedOn(c.fake, "enc00003")]).toEqual([false, false]);
  });

  it("holds: two live holders after a heal, fast edges: both are kicked and the new publisher admitted", async () => {
    const { a, b, c, s, key } = await twoLiveHolders();
    expect(await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }))).toEqual(ALLOW);
    expect([kickedOn(a.fake, "enc00001"), kickedOn(c.fake, "enc00003")]).toEqual([true, true]);
    expect(await streamState(s)).toMatchObject({ publisher: { clientId: "enc00002", state: "live" }, conflicts: [] });
  });

  it("holds: the old edge restarts between the ghost check and the kick (the check's 'present' is skipped into a DELETE): the new process has no such client, the new publisher is admitted", async () => {
    const { a, b, s, key } = await takeoverReady();
    const real = a.fake.handle.bind(a.fake);
    let asked = 0;
    a.fake.handle = async (req: Request) => {
      const answer = await real(req);
      // Right after the ghost check's GET of the client: SRS restarts (new service_id, no clients).
      if (req.method === "GET" && new URL(req.url).pathname === "/api/v1/clients/enc00001" && asked++ === 0) {
        a.fake.service = newEdge().service;
        a.fake.clients.clear();
      }
      return answer;
    };
    expect(await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }))).toEqual(ALLOW);
    expect((await streamState(s)).publisher).toMatchObject({ clientId: "enc00002", state: "live" });
  });

  it("holds: a takeover refused as too slow leaves the old edge's API neither marked down nor failing (apiOk), and the next takeover with time kicks", async () => {
    const { a, b, s, key } = await takeoverReady();
    a.fake.delayMs = 1_500;
    const r = await withDeadline(4_000, () => hook(publish("live", s, key, { ...b.edge, client: "enc00002" })));
    expect(r.body.code).toBe(4009);
    await until(() => a.fake.inFlight === 0);
    expect((await serverListed(a.edge)).apiOk).not.toBe(false);
    expect(kickedOn(a.fake, "enc00001")).toBe(false);
    // Not left alone as down: the next hook, with its full deadline, takes over.
    expect(await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }))).toEqual(ALLOW);
    expect(kickedOn(a.fake, "enc00001")).toBe(true);
  });

  it("holds: almost no time left (a 0.6 s deadline, the object keeps 0.5 s): no DELETE is sent, the old publisher keeps the stream", async () => {
    const { a, b, s, key } = await takeoverReady();
    const r = await withDeadline(600, () => hook(publish("live", s, key, { ...b.edge, client: "enc00002" })));
    expect(r.status).not.toBe(200);
    await until(() => a.fake.inFlight === 0);
    expect(kickedOn(a.fake, "enc00001")).toBe(false);
    expect((await streamState(s)).publisher).toMatchObject({ clientId: "enc00001", state: "live" });
  });

  it("holds: the old edge's API answers as a restarted process that has a client of the same id: the old session ends as a ghost, no DELETE reaches the new process's client", async () => {
    const { a, b, s, key } = await takeoverReady();
    // The stream's session is of a's process; its API now answers as a new process that has a client of the same id.
    a.fake.service = newEdge().service;
    const r = await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }));
    expect(r).toEqual(ALLOW);
    expect(kickedOn(a.fake, "enc00001")).toBe(false);
  });

  // Fixed (older than 63d4518): the registry's index write runs beside the stream's decision, so the stream
  // took over before the Worker knew the index failed; the admission was then undone. The stream now writes
  // the same entry itself before the first kick.
  it("must not happen (fixed): the registry cannot index the new publisher (overloaded) while the stream takes over: the old publisher is kicked and the new one refused (503)", async () => {
    const { a, b, s, key } = await takeoverReady();
    const real = ServerRegistry.prototype.track;
    vi.spyOn(ServerRegistry.prototype, "track").mockImplementation(async function (this: ServerRegistry, ...args: Parameters<ServerRegistry["track"]>) {
      if (args[0] === b.edge.server) throw overloaded();
      return real.apply(this, args);
    });
    const r = await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }));
    expect(r.status).toBe(503);
    // Refused: the old publisher must still have the stream, unkicked.
    expect(kickedOn(a.fake, "enc00001")).toBe(false);
  });

  // Fixed: the old edge's API address starts answering as another SRS server (a floating IP moved,
  // a DNS name reused) right after the ghost check. Before 63d4518 the kick's own question got that
  // server's "not found", asked /api/v1/versions and refused (another server); 63d4518 made the ghost
  // check's code-0 answer both "known present" (no question) and the identity a "not found" is checked
  // against for 5 s, so the DELETE's bare 2049 from the other server counted as "gone". Now code-0
  // answers name nobody for later, and a DELETE's "not found" is checked like a GET's.
  it("must not happen (fixed): the old edge's address answers as another server right after the ghost check: its 'not found' is trusted, the old session ends and the new publisher is admitted while the old one may still be live", async () => {
    const { a, b, s, key } = await takeoverReady();
    const other = new FakeSrs(newEdge().server, newEdge().service);
    const real = a.fake.handle.bind(a.fake);
    let swapped = false;
    a.fake.handle = async (req: Request) => {
      if (swapped) return other.handle(req);
      const answer = await real(req);
      if (req.method === "GET" && new URL(req.url).pathname === "/api/v1/clients/enc00001") swapped = true;
      return answer;
    };
    const r = await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }));
    // What the API of the old session's server never said: that its client is gone.
    expect(r.body.code).toBe(4009);
    expect((await streamState(s)).publisher).toMatchObject({ clientId: "enc00001" });
  });
});
