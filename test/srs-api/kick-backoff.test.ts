/**
 * The kick outbox's retries while an edge's API cannot be reached (src/srs/kick-outbox.ts; README, "Kicks":
 * "again with backoff (1 s, doubling to 30 s) for KICK_RETRY_MS"). An unreachable edge must be neither
 * hammered at every alarm nor left for long once it may be back. On the fake clock: the registry's alarm
 * runs only when the test runs it, every 500 ms here, and a try is a run in which the edge was called.
 */
import { runDurableObjectAlarm } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { ALLOW, deviceOf, installFakeSrs, kickedOn, operatorKick } from "../fake-srs";
import { heartbeat, hook } from "../srs";
import { at, serverListed, serverStub, useFakeClock } from "../fleet";

installFakeSrs();
useFakeClock();

describe("a kick whose edge cannot be reached", () => {
  it("is tried again after 1 s, then 2, 4, 8, 16 s, and every 30 s from then on", async () => {
    const { edge, fake } = await operatorKick((f) => void (f.reachable = false));
    // The first try is at once, when the operator's call queues the kick.
    await runDurableObjectAlarm(serverStub(edge));
    expect(fake.calls.length).toBeGreaterThan(0);
    const tries: number[] = [];
    for (let t = 500; t <= 125_000; t += 500) {
      at(t);
      const before = fake.calls.length;
      await runDurableObjectAlarm(serverStub(edge));
      if (fake.calls.length > before) tries.push(t);
    }
    expect(tries).toEqual([1_000, 3_000, 7_000, 15_000, 31_000, 61_000, 91_000, 121_000]);
  });

  it("is tried at once when its silent server is heard from again, not at the end of its backoff", async () => {
    const { edge, fake } = await operatorKick((f) => void (f.reachable = false));
    for (let t = 0; t <= 45_000; t += 500) {
      at(t);
      await runDurableObjectAlarm(serverStub(edge));
    }
    // Tried at 31 s, next at 61 s; the edge went silent meanwhile (no heartbeat since 0).
    expect((await serverListed(edge)).alive).toBe(false);
    expect(kickedOn(fake, "view0001")).toBe(false);
    fake.reachable = true;
    at(45_500);
    expect(await hook({ ...heartbeat(edge), device_id: deviceOf(edge) }, undefined, "/heartbeat")).toEqual(ALLOW);
    await runDurableObjectAlarm(serverStub(edge));
    expect(kickedOn(fake, "view0001")).toBe(true);
  });
});
