/**
 * Adversarial probes of f267a07 (a kick-wait decision line at a kick's first failed try) and
 * 4a1d29f (a kick being tried when its edge is heard from again goes again at once).
 */
import { runDurableObjectAlarm } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import { admin, createStream, hook, publish, uniqueStream } from "../srs";
import { ALLOW, edgeWithApi, frozenEdgeKicking, installFakeSrs, kickedAfterTheTry, thawedDuringATry } from "../fake-srs";
import { at, serverStub, T0 } from "../fleet";

installFakeSrs();

/** A stream whose publisher ("enc00001") is live on an edge with an API. */
async function livePublisherOnAnEdgeWithApi() {
  const { edge, fake } = await edgeWithApi(["enc00001"]);
  const s = uniqueStream();
  const key = await createStream(s);
  expect(await hook(publish("live", s, key, { ...edge, client: "enc00001" }))).toEqual(ALLOW);
  return { edge, fake, s };
}

const streamEvents = async (s: string) => (await admin("GET", `/streams/live/${s}/events`)).body.events ?? [];
const iso = (ms: number) => new Date(T0 + ms).toISOString();

describe("kick-wait: an operator's kick in place of one already waiting for its edge", () => {
  it("says it waits, with its own reason and until, and starts its backoff afresh (the row kept the replaced kick's attempts: no line, and its first retry 30 s later)", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    at(0);
    try {
      const { edge, fake, s } = await livePublisherOnAnEdgeWithApi();
      fake.reachable = false;
      expect((await admin("PUT", `/streams/live/${s}`, { rotateKey: true })).body.kicking).toHaveLength(1);
      // The rotation's kick fails for a few minutes (backoff up to 30 s).
      for (let t = 0; t <= 180_000; t += 5_000) {
        at(t);
        await runDurableObjectAlarm(serverStub(edge));
      }
      // The operator ends the publisher's session: its kick replaces the rotation's.
      at(200_000);
      expect((await admin("DELETE", `/streams/live/${s}/sessions?client=enc00001`)).body.kicking).toHaveLength(1);
      await runDurableObjectAlarm(serverStub(edge));
      // Told when each kick's first try has failed (a try started by the admin call may still be on its way).
      const waiting = async () => (await streamEvents(s)).filter((e: any) => e.action === "kick-wait").map((e: any) => e.reason).sort();
      await vi.waitFor(async () => expect(await waiting()).toHaveLength(2), { timeout: 5000, interval: 50 });
      expect(await waiting()).toEqual([
        `kick waiting: edge unreachable; tried again until ${iso(5 * 60_000)}, at once when the server is heard from again (key rotated)`,
        `kick waiting: edge unreachable; tried again until ${iso(200_000 + 5 * 60_000)}, at once when the server is heard from again (ended by operator)`,
      ]);
      // Its first retry comes a second later, as any new kick's (the replaced kick's 30 s step is not inherited).
      fake.reachable = true;
      at(201_500);
      await runDurableObjectAlarm(serverStub(edge));
      await vi.waitFor(async () => expect((await streamEvents(s)).some((e: any) => e.action === "kick" && e.reason === "kicked (ended by operator)")).toBe(true), { timeout: 3000, interval: 50 });
    } finally {
      vi.useRealTimers();
    }
  });
});

describe("kick-wait: the kicks of a deleted stream", () => {
  it("are told waiting in the Worker's logs, as their outcome is (the stream's decision log answers 404 once it is deleted: nothing was told for 5 minutes)", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    at(0);
    try {
      const { edge, fake, s } = await livePublisherOnAnEdgeWithApi();
      fake.reachable = false;
      const logged: string[] = [];
      const spy = vi.spyOn(console, "log").mockImplementation((line: unknown) => void logged.push(String(line)));
      try {
        expect((await admin("DELETE", `/streams/live/${s}`)).body.kicking).toHaveLength(1);
        await runDurableObjectAlarm(serverStub(edge));
        expect((await admin("GET", `/streams/live/${s}/events`)).status).toBe(404);
        const waiting = logged.map((l) => { try { return JSON.parse(l); } catch { return null; } }).filter((e) => e?.event === "kick-wait" && e.client === "enc00001");
        expect(waiting.map((e) => e.outcome)).toEqual([
          `kick waiting: edge unreachable; tried again until ${iso(5 * 60_000)}, at once when the server is heard from again (stream deleted)`,
        ]);
      } finally {
        spy.mockRestore();
      }
    } finally {
      vi.useRealTimers();
    }
  });
});

describe("a kick whose last try before its deadline is on its way when its edge is heard from again", () => {
  it("is tried again at once, past its deadline (it was given up: the edge was back, the client stayed)", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    at(0);
    try {
      const { edge, fake, s } = await frozenEdgeKicking();
      // Its first try (started by the admin call) is over once its kick-wait line is told: its call's end is not
      // enough, an alarm run while that try still records the line leaves the kick to it (and no try would start).
      await vi.waitFor(async () => expect((await streamEvents(s)).some((e: any) => e.action === "kick-wait")).toBe(true), { timeout: 10_000, interval: 20 });
      // The last try before the kick's deadline (31 s + 5 min) is on its way when the edge heartbeats again...
      at(31_000 + 5 * 60_000 - 500);
      void runDurableObjectAlarm(serverStub(edge));
      await thawedDuringATry(edge, fake);
      // ... and fails after the deadline.
      at(31_000 + 5 * 60_000 + 1_000);
      await kickedAfterTheTry(edge, fake);
      expect((await streamEvents(s)).some((e: any) => e.action === "kick" && e.reason === "kicked (ended by operator)")).toBe(true);
    } finally {
      vi.useRealTimers();
    }
  });
});
