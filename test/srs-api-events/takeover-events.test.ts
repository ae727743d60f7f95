/**
 * Events of a takeover and of an operator's kicks (project "srs-api-events": SRS_API_URL and
 * EVENTS_WEBHOOK_URL both set). SRS sends the kicked publisher's on_unpublish before its API lets the
 * client go (seen in e2e runs 4, 17 and 19 against SRS 7.0.18): that stop event, not the takeover or
 * the kick itself, ends the old session, and stream.ended must still say why it ended.
 */
import { env } from "cloudflare:workers";
import { runDurableObjectAlarm } from "cloudflare:test";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { Env } from "../../src/env";
import { serverRegistry } from "../../src/object-access";
import { admin, adminWith, createStream, type Edge, heartbeat, hook, publish, uniqueStream, unpublish } from "../srs";
import { restarted, streamStub, until } from "../fleet";
import { ALLOW, deviceOf, edgeWithApi, FakeSrs, hosts, installFakeSrs, kickedOn, takeoverReady } from "../fake-srs";
import { Receiver } from "../receiver";

installFakeSrs();

let receiver: Receiver;
beforeEach(() => {
  receiver = new Receiver();
  // The receiver stands behind the fake network as one more host (installFakeSrs owns fetch).
  hosts.set("receiver.test", { calls: [], handle: (req: Request) => receiver.receive(req) } as unknown as FakeSrs);
});

describe("takeover events", () => {
  it("the old publisher's on_unpublish, sent by SRS during the kick, ends it with stream.ended reason takeover", async () => {
    const { a, b, s, key } = await takeoverReady();
    // As SRS does: the kicked connection's on_unpublish reaches the gate before the DELETE's answer.
    let stopSent: Promise<unknown> | undefined;
    a.fake.onKick = (id) => (stopSent = hook(unpublish("live", s, { ...a.edge, client: id })));
    expect(await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }))).toEqual(ALLOW);
    expect(kickedOn(a.fake, "enc00001")).toBe(true);
    expect(await stopSent).toEqual(ALLOW);
    const events = await receiver.received(s, 3);
    expect(events.map((e) => [e.body.type, e.body.data.client_id])).toEqual([
      ["stream.started", "enc00001"],
      ["stream.ended", "enc00001"],
      ["stream.started", "enc00002"],
    ]);
    expect(events[1].body.data.reason).toBe("takeover");
  });

  it("a takeover whose kicked publisher sends no on_unpublish (lost) ends it with reason takeover too", async () => {
    const { b, s, key } = await takeoverReady();
    expect(await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }))).toEqual(ALLOW);
    const events = await receiver.received(s, 3);
    expect(events.find((e) => e.body.type === "stream.ended")!.body.data).toMatchObject({ client_id: "enc00001", reason: "takeover" });
  });

  it("a publisher that stops on its own, with no takeover under way, ends with reason stop", async () => {
    const { a, s } = await takeoverReady();
    expect(await hook(unpublish("live", s, { ...a.edge, client: "enc00001" }))).toEqual(ALLOW);
    const [, ended] = await receiver.received(s, 2);
    expect(ended.body.data).toMatchObject({ client_id: "enc00001", reason: "stop" });
  });
});

/** Publisher "enc00001" live on an edge whose SRS (with `clients`) sends its on_unpublish while a kick is under way, as SRS does. */
async function publishing(clients = ["enc00001"]) {
  const a = await edgeWithApi(clients);
  const s = uniqueStream();
  const key = await createStream(s);
  expect(await hook(publish("live", s, key, { ...a.edge, client: "enc00001" }))).toEqual(ALLOW);
  let stopSent: Promise<unknown> | undefined;
  a.fake.onKick = (id) => (stopSent = hook(unpublish("live", s, { ...a.edge, client: id })));
  return { a, s, key, stopped: async () => (await until(() => stopSent !== undefined), await stopSent) };
}

/** On the fake clock: a publisher whose edge cannot be reached has its key rotated; the kick's first attempt has failed. */
async function rotatedWhileUnreachable() {
  vi.useFakeTimers({ toFake: ["Date"] });
  const p = await publishing();
  p.a.fake.onKick = null;
  p.a.fake.reachable = false;
  expect((await admin("PUT", `/streams/live/${p.s}`, { rotateKey: true })).body.kicking).toHaveLength(1);
  await until(() => p.a.fake.calls.length > 0);
  return p;
}

/** Until the stream's decision log has a kick line whose reason passes `is` (a kick's outcome is logged there). */
const kickLogged = (s: string, is: (reason: string) => boolean) =>
  until(async () => (await admin("GET", `/streams/live/${s}/events`)).body.events.some((e: { action: string; reason: string }) => e.action === "kick" && is(e.reason)));

/** enc00001 on `a` sends its on_unpublish now; the stream.ended delivered for it gives `reason`. */
async function unpublishedWith(a: { edge: Edge }, s: string, reason: string) {
  expect(await hook(unpublish("live", s, { ...a.edge, client: "enc00001" }))).toEqual(ALLOW);
  const events = await receiver.received(s, 3);
  expect(events.find((e) => e.body.type === "stream.ended")!.body.data).toMatchObject({ client_id: "enc00001", reason });
}

describe("operator kicks' events", () => {
  afterEach(() => vi.useRealTimers());

  for (const [what, call] of [
    ["a rotated key", (s: string) => admin("PUT", `/streams/live/${s}`, { rotateKey: true })],
    ["a deleted stream", (s: string) => admin("DELETE", `/streams/live/${s}`)],
  ] as const) {
    it(`a publisher kicked for ${what}, ended by its own on_unpublish during the kick: stream.ended says operator, not stop`, async () => {
      const { a, s, stopped } = await publishing();
      expect((await call(s)).body.kicking).toEqual([expect.objectContaining({ clientId: "enc00001" })]);
      expect(await stopped()).toEqual(ALLOW);
      expect(kickedOn(a.fake, "enc00001")).toBe(true);
      const events = await receiver.received(s, 3);
      expect(events.find((e) => e.body.type === "stream.ended")!.body.data).toMatchObject({ client_id: "enc00001", reason: "operator" });
      expect(events.find((e) => e.body.type === "session.ended_by_operator")!.body.data).toMatchObject({ client_id: "enc00001", kicked: true });
    });
  }

  it("the edge lets the kicked publisher go first and its on_unpublish comes after the kick's outcome (the order e2e runs 17 and 19 saw): operator", async () => {
    const { a, s } = await publishing();
    a.fake.onKick = null;
    expect((await admin("PUT", `/streams/live/${s}`, { rotateKey: true })).body.kicking).toHaveLength(1);
    await kickLogged(s, (reason) => reason === "kicked (key rotated)");
    await unpublishedWith(a, s, "operator");
  });

  it("a kick that gets through only 40 s after the admin call (its edge unreachable until then): the on_unpublish that follows its outcome says operator", async () => {
    const { a, s } = await rotatedWhileUnreachable();
    vi.setSystemTime(Date.now() + 40_000); // the admin call's 30 s are over
    a.fake.reachable = true;
    expect(await hook({ ...heartbeat(a.edge), device_id: deviceOf(a.edge) }, undefined, "/heartbeat")).toEqual(ALLOW);
    await runDurableObjectAlarm(serverRegistry(env, a.edge.server)); // the retry, due now
    await kickLogged(s, (reason) => reason === "kicked (key rotated)");
    await unpublishedWith(a, s, "operator");
  });

  it("a publisher whose edge cannot be reached, so the kick keeps failing, and that stops on its own 31 s later: stop", async () => {
    const { a, s } = await rotatedWhileUnreachable();
    vi.setSystemTime(Date.now() + 31_000);
    await unpublishedWith(a, s, "stop");
  });

  it("a publisher its kick found gone already (SRS no longer has the client), whose stop event comes later: stop", async () => {
    const { a, s, stopped } = await publishing();
    a.fake.clients.delete("enc00001"); // SRS answers "not found": the kick ends as "already gone", nothing is kicked
    a.fake.onKick = null;
    expect((await admin("PUT", `/streams/live/${s}`, { rotateKey: true })).body.kicking).toHaveLength(1);
    void stopped;
    await kickLogged(s, () => true);
    await unpublishedWith(a, s, "stop");
  });
});

/**
 * Adversarial review of the operator kicks' marks: a mark makes a publisher's own stop say "operator", so
 * it must stand only for a kick that is really on its way, and name that session, not another one.
 */
describe("operator kicks' marks: only a kick on its way, of that session", () => {
  afterEach(() => vi.useRealTimers());
  const endedOf = async (s: string, n: number) => (await receiver.received(s, n)).filter((e) => e.body.type === "stream.ended").map((e) => e.body.data);
  const logged = (s: string, what: (e: { action: string; reason: string }) => boolean) => async () => (await streamStub(s).events()).some(what);

  /** The real catalogue, except that every write fails (as test/catalogue.test.ts). */
  function brokenCatalogue(): Partial<Env> {
    return {
      CATALOGUE: new Proxy(env.CATALOGUE, {
        get(target, prop) {
          if (prop === "put") return async () => { throw new Error("KV unavailable (test)"); };
          const value = Reflect.get(target, prop);
          return typeof value === "function" ? value.bind(target) : value;
        },
      }),
    };
  }

  /** The registry shards, except that queueing kicks fails (a shard that cannot be reached). */
  function registryRefusingKicks(): Partial<Env> {
    const stubFor = (id: DurableObjectId) => {
      const stub = env.REGISTRY.get(id);
      return new Proxy(stub, {
        get(t, prop) {
          if (prop === "queueKicks") return async () => { throw new Error("registry unreachable (test)"); };
          if (typeof prop === "string" && prop !== "then") return (...args: unknown[]) => (t as any)[prop](...args);
          return Reflect.get(t, prop);
        },
      });
    };
    return {
      REGISTRY: new Proxy(env.REGISTRY, {
        get(t, prop) {
          if (prop === "get") return stubFor;
          const v = Reflect.get(t, prop);
          return typeof v === "function" ? v.bind(t) : v;
        },
      }),
    };
  }

  it("a rotation undone (its new key could not be written to the catalogue) kicks nobody: the publisher's own stop right after says stop", async () => {
    vi.spyOn(console, "error").mockImplementation(() => {});
    const { a, s } = await publishing();
    a.fake.onKick = null;
    expect((await adminWith(brokenCatalogue(), "PUT", `/streams/live/${s}`, { rotateKey: true })).status).toBe(503);
    expect(await hook(unpublish("live", s, { ...a.edge, client: "enc00001" }))).toEqual(ALLOW);
    expect(await endedOf(s, 2)).toEqual([expect.objectContaining({ client_id: "enc00001", reason: "stop" })]);
    expect(kickedOn(a.fake, "enc00001")).toBe(false);
  });

  it("a stream deleted, its publisher's kick finding it gone, then created again but undone (catalogue down): its own stop says stop", async () => {
    vi.spyOn(console, "error").mockImplementation(() => {});
    const { a, s } = await publishing([]); // SRS's API no longer has the client: the kick ends as "already gone"
    expect((await admin("DELETE", `/streams/live/${s}`)).body.kicking).toHaveLength(1);
    await until(logged(s, (e) => e.action === "kick"));
    // The PUT that would create it again is undone: the stream is removed again, and no kick is queued.
    expect((await adminWith(brokenCatalogue(), "PUT", `/streams/live/${s}`, {})).status).toBe(503);
    expect(await hook(unpublish("live", s, { ...a.edge, client: "enc00001" }))).toEqual(ALLOW);
    expect(await endedOf(s, 3)).toEqual([expect.objectContaining({ client_id: "enc00001", reason: "stop" })]);
  });

  it("a rotation whose kick could not be queued (registry unreachable: `kicking` is empty) leaves the publisher's own stop its own: stop", async () => {
    vi.spyOn(console, "error").mockImplementation(() => {});
    const { a, s } = await publishing();
    a.fake.onKick = null;
    const rotated = await adminWith(registryRefusingKicks(), "PUT", `/streams/live/${s}`, { rotateKey: true });
    expect(rotated.status).toBe(200);
    expect(rotated.body.kicking).toEqual([]);
    expect(await hook(unpublish("live", s, { ...a.edge, client: "enc00001" }))).toEqual(ALLOW);
    expect(await endedOf(s, 2)).toEqual([expect.objectContaining({ client_id: "enc00001", reason: "stop" })]);
    expect(kickedOn(a.fake, "enc00001")).toBe(false);
  });

  for (const [what, second, status] of [
    ["undone (its new key could not be written to the catalogue)", (s: string) => adminWith(brokenCatalogue(), "PUT", `/streams/live/${s}`, { rotateKey: true }), 503],
    ["whose kick could not be queued (registry unreachable)", (s: string) => adminWith(registryRefusingKicks(), "PUT", `/streams/live/${s}`, { rotateKey: true }), 200],
  ] as const) {
    it(`a second rotation ${what} takes back its own mark only: the first rotation's kick, through 5 s later, ends the publisher as operator`, async () => {
      vi.spyOn(console, "error").mockImplementation(() => {});
      const { a, s } = await rotatedWhileUnreachable();
      expect((await second(s)).status).toBe(status);
      // The edge is back 5 s after the first rotation (within its 30 s): the kick's retry gets through, and
      // SRS sends the kicked client's on_unpublish during the DELETE.
      vi.setSystemTime(Date.now() + 5_000);
      a.fake.reachable = true;
      let stopSent: Promise<unknown> | undefined;
      a.fake.onKick = (id) => (stopSent = hook(unpublish("live", s, { ...a.edge, client: id })));
      expect(await hook({ ...heartbeat(a.edge), device_id: deviceOf(a.edge) }, undefined, "/heartbeat")).toEqual(ALLOW);
      await runDurableObjectAlarm(serverRegistry(env, a.edge.server));
      await until(() => stopSent !== undefined);
      expect(await stopSent).toEqual(ALLOW);
      expect(kickedOn(a.fake, "enc00001")).toBe(true);
      await vi.waitFor(async () => expect((await endedOf(s, 1)).length).toBe(1), { timeout: 20_000, interval: 50 });
      expect(await endedOf(s, 1)).toEqual([expect.objectContaining({ client_id: "enc00001", reason: "operator" })]);
    });
  }

  it("the first rotation's kick lets the client go while a second rotation waits on the catalogue, which then fails (undone): the publisher's stop right after says operator", async () => {
    vi.spyOn(console, "error").mockImplementation(() => {});
    const { a, s } = await rotatedWhileUnreachable();
    let kickedMeanwhile = false;
    const catalogueDownAfterTheKick: Partial<Env> = {
      CATALOGUE: new Proxy(env.CATALOGUE, {
        get(target, prop) {
          if (prop === "put") {
            return async () => {
              // Between the second rotation's marks and its undo, the edge is back and the first kick gets through.
              if (!kickedMeanwhile) {
                kickedMeanwhile = true;
                vi.setSystemTime(Date.now() + 5_000);
                a.fake.reachable = true;
                await runDurableObjectAlarm(serverRegistry(env, a.edge.server));
                await kickLogged(s, (reason) => reason === "kicked (key rotated)");
              }
              throw new Error("KV unavailable (test)");
            };
          }
          const value = Reflect.get(target, prop);
          return typeof value === "function" ? value.bind(target) : value;
        },
      }),
    };
    expect((await adminWith(catalogueDownAfterTheKick, "PUT", `/streams/live/${s}`, { rotateKey: true })).status).toBe(503);
    expect(kickedOn(a.fake, "enc00001")).toBe(true);
    // SRS let the client go and sends its on_unpublish now (the order e2e runs 17 and 19 saw): the first kick's doing.
    expect(await hook(unpublish("live", s, { ...a.edge, client: "enc00001" }))).toEqual(ALLOW);
    await vi.waitFor(async () => expect((await endedOf(s, 1)).length).toBe(1), { timeout: 20_000, interval: 50 });
    expect(await endedOf(s, 1)).toEqual([expect.objectContaining({ client_id: "enc00001", reason: "operator" })]);
  });

  it("a kick whose outbox row a second rotation replaced while it was tried (its client gone) leaves the second rotation's mark: a stop before that kick's outcome says operator", async () => {
    const { a, s } = await publishing([]); // SRS no longer has the client: each kick ends as "already gone"
    a.fake.onKick = null;
    a.fake.delayMs = 1_500; // each API call: a kick takes two (the client, then who answers)
    expect((await admin("PUT", `/streams/live/${s}`, { rotateKey: true })).body.kicking).toHaveLength(1);
    await until(() => a.fake.calls.length > 0);
    expect((await admin("PUT", `/streams/live/${s}`, { rotateKey: true })).body.kicking).toHaveLength(1);
    // The first kick's outcome comes while the second's is queued: it answers for the first rotation only.
    await kickLogged(s, (reason) => reason.startsWith("kick: the client was already gone"));
    expect(await hook(unpublish("live", s, { ...a.edge, client: "enc00001" }))).toEqual(ALLOW);
    await vi.waitFor(async () => expect((await endedOf(s, 1)).length).toBe(1), { timeout: 20_000, interval: 50 });
    expect(await endedOf(s, 1)).toEqual([expect.objectContaining({ client_id: "enc00001", reason: "operator" })]);
    a.fake.delayMs = 0;
  });

  it("a Worker of the version before (during a deploy) calls off a rotation's marks without naming it: the latest action's mark goes", async () => {
    const { a, s } = await rotatedWhileUnreachable();
    const [publisher] = await streamStub(s).publisherSessions();
    await (streamStub(s) as unknown as { kicksNotQueued(p: unknown[]): Promise<void> }).kicksNotQueued([publisher]);
    await unpublishedWith(a, s, "stop");
  });

  it("a DELETE whose catalogue entry could not be deleted (KV: one write a second per key) has removed the stream all the same: its publisher is kicked, and stream.ended says operator", async () => {
    vi.spyOn(console, "error").mockImplementation(() => {});
    const { a, s, key, stopped } = await publishing();
    const refusingDeletes: Partial<Env> = {
      CATALOGUE: new Proxy(env.CATALOGUE, {
        get(target, prop) {
          if (prop === "delete") return async () => { throw new Error("KV: too many writes to one key (test)"); };
          const value = Reflect.get(target, prop);
          return typeof value === "function" ? value.bind(target) : value;
        },
      }),
    };
    const deleted = await adminWith(refusingDeletes, "DELETE", `/streams/live/${s}`);
    expect(deleted.status).toBe(503); // README: the stream is deleted, its catalogue entry left; the answer says so
    expect(deleted.body.kicking).toHaveLength(1);
    // The object is removed (the key revoked), so the kicks README promises for a DELETE are due: before, none was
    // queued, the publisher went on streaming (a repeated DELETE answers 404), and its own stop said operator.
    expect((await hook(publish("live", s, key, { ...a.edge, client: "enc00002" }))).status).not.toBe(200);
    expect(await stopped()).toEqual(ALLOW);
    expect(kickedOn(a.fake, "enc00001")).toBe(true);
    const events = await receiver.received(s, 3);
    expect(events.find((e) => e.body.type === "stream.ended")!.body.data).toMatchObject({ client_id: "enc00001", reason: "operator" });
    expect(events.find((e) => e.body.type === "session.ended_by_operator")!.body.data).toMatchObject({ client_id: "enc00001", reason: "stream deleted", kicked: true });
    // Repeated, the DELETE answers 404 and removes the catalogue entry.
    expect((await admin("DELETE", `/streams/live/${s}`)).status).toBe(404);
    expect(await env.CATALOGUE.get(`stream:__defaultVhost__/live/${s}`)).toBeNull();
  });

  it("its server restarted and the new process reused the kicked publisher's client id (README: it may): that new session's own stop says stop", async () => {
    const { a, s, stopped } = await publishing();
    const key2 = (await admin("PUT", `/streams/live/${s}`, { rotateKey: true })).body.publishKey;
    expect(await stopped()).toEqual(ALLOW); // the kicked one: operator
    await until(logged(s, (e) => e.reason === "kicked (key rotated)"));
    const b = restarted(a.edge);
    expect(await hook({ ...heartbeat(b), device_id: deviceOf(a.edge) }, undefined, "/heartbeat")).toEqual(ALLOW);
    expect(await hook(publish("live", s, key2, { ...b, client: "enc00001" }))).toEqual(ALLOW);
    expect(await hook(unpublish("live", s, { ...b, client: "enc00001" }))).toEqual(ALLOW);
    expect((await endedOf(s, 5)).map((d) => d.reason)).toEqual(["operator", "stop"]);
  });
});
