/**
 * Each path reads, and fails on, only the settings it uses: a malformed
 * setting that only publishes and plays need must not stop heartbeats (the
 * fleet would be declared dead SERVER_TIMEOUT_S later) or stop events.
 */
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { ServerRegistry } from "../src/server/registry";
import { at, beat, deliverNotices, serverStub, useFakeClock } from "./fleet";
import { ALLOW, createStream, type Edge, heartbeat, hook, hookWith, newEdge, publish, streamState, stopPlay, uniqueStream } from "./srs";


describe("a malformed AUTH_FAILURES_PER_MINUTE", () => {
  const bad = { AUTH_FAILURES_PER_MINUTE: "ten" };

  it("does not stop heartbeats or stop events", async () => {
    const s = uniqueStream();
    await createStream(s);
    const edge = newEdge();
    expect(await hookWith(bad, heartbeat(edge), "/heartbeat")).toEqual(ALLOW);
    expect(await hookWith(bad, stopPlay("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
  });

  it("fails on_publish closed with a 500 naming it, and admits nothing", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    const r = await hookWith(bad, publish("live", s, key, { ...newEdge(), client: "pub00001" }));
    expect(r).toEqual({ status: 500, body: { code: 500, reason: 'AUTH_FAILURES_PER_MINUTE must be a positive integer, not "ten"' } });
    expect((await streamState(s)).live).toBe(false);
  });
});

describe("a malformed SESSION_GRACE_S or SERVER_RETENTION_S (how long things are kept) never fails a path", () => {
  useFakeClock();

  /** Runs `body` in the edge's registry shard with `vars` mistyped in its env. */
  function withRegistryVars<T>(edge: Edge, vars: Record<string, string>, body: (registry: any) => Promise<T>): Promise<T> {
    return runInDurableObject(serverStub(edge), async (registry: ServerRegistry) => {
      const r = registry as any;
      const saved = r.env;
      r.env = { ...saved, ...vars };
      try {
        return await body(r);
      } finally {
        r.env = saved;
      }
    });
  }

  const mistyped: Record<string, string>[] = [{ SERVER_RETENTION_S: "7d" }, { SESSION_GRACE_S: "1 day" }];
  for (const vars of mistyped) {
    it(`${Object.keys(vars)[0]}="${Object.values(vars)[0]}": the registry's alarm still suspends a silent edge, a new server's heartbeat and a returning edge are answered, and its sessions count again`, async () => {
      const edge = newEdge();
      await beat(edge);
      const s = uniqueStream();
      const key = await createStream(s);
      expect(await hook(publish("live", s, key, { ...edge, client: "pub00001" }))).toEqual(ALLOW);
      at(31_000);
      await withRegistryVars(edge, vars, (r) => r.alarm());
      await deliverNotices(edge);
      expect(await streamState(s)).toMatchObject({ live: false, publisher: { state: "suspended" } });
      // A server never seen before, in the same registry shard, and the silent edge's return.
      const fresh = { serverId: `${edge.server}-new`, serviceId: "svc00001", deviceId: "", ip: "", pid: "" };
      await withRegistryVars(edge, vars, (r) => r.heartbeat(fresh));
      await withRegistryVars(edge, vars, (r) => r.heartbeat({ serverId: edge.server, serviceId: edge.service, deviceId: "", ip: "", pid: "" }));
      await deliverNotices(edge);
      expect(await streamState(s)).toMatchObject({ live: true, publisher: { clientId: "pub00001", state: "live" } });
    });
  }
});
