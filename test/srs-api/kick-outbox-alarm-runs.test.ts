/**
 * Adversarial review of b0d80f0 (kick outbox: a kick being tried no longer re-arms the alarm for
 * right now; tries in flight no longer use up a run's places). Runs in the "srs-api" project
 * (SRS_API_URL = https://{device_id}.srs.test:1985). Each test states what should hold; the one below failed on
 * 8716d3a (a due kick of a server whose kicks were being tried kept the alarm armed for now).
 */
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import { admin, createStream, hook, play, uniqueStream } from "../srs";
import { ALLOW, edgeWithApi, installFakeSrs } from "../fake-srs";
import { at, serverStub, until } from "../fleet";

installFakeSrs();
afterEach(() => void vi.useRealTimers());

describe("the registry's alarm while more kicks of one edge wait than a run takes of it", () => {
  it("is not re-armed for right now while a queueing run tries that edge's kicks (nine viewers ended on a hanging edge)", async () => {
    vi.useFakeTimers({ toFake: ["Date"] }); // alarms run only when the test runs them
    at(0);
    const clients = Array.from({ length: 9 }, (_, i) => `view000${i + 1}`);
    const { edge, fake } = await edgeWithApi(clients);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 20 });
    for (const client of clients) expect(await hook(play("live", s, { ...edge, client }))).toEqual(ALLOW);
    fake.hang = true; // the edge's API answers only when each call times out (2 s)
    const ended = await admin("DELETE", `/streams/live/${s}/sessions`);
    expect(ended.body.kicking).toHaveLength(9);
    // Queueing armed the alarm for now and started a run: it took 8 of the edge's kicks (two turns of its 4 slots).
    await until(() => fake.inFlight > 0);
    // The alarm fires (at once, in production): the 8 tries in flight fill the edge's places in its run
    // (server_turn counts them), so the ninth kick is left too ...
    expect(await runDurableObjectAlarm(serverStub(edge))).toBe(true);
    expect(fake.inFlight, "the queueing run's tries are still on their way").toBeGreaterThan(0);
    const waiting = await runInDurableObject(serverStub(edge), (_r, state) =>
      state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM kicks").one().n,
    );
    expect(waiting).toBe(9);
    const notices = await runInDurableObject(serverStub(edge), (_r, state) =>
      state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM notices").one().n,
    );
    expect(notices, "no notice wants the alarm: only kicks do").toBe(0);
    // ... and nextAt counts that ninth kick as due now: the alarm is armed for now, fires again at once,
    // does nothing again, for as long as the first run's tries last (the loop b0d80f0 meant to end).
    const alarm = await runInDurableObject(serverStub(edge), (_r, state) => state.storage.getAlarm());
    expect(alarm, "alarm re-armed for now while no run will take the only kick it counts as due").toBeGreaterThan(Date.now());
  });
});
