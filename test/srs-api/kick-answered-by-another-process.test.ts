/**
 * A kick whose DELETE is answered by another process of the same server (SRS restarted between the
 * question and the DELETE: src/srs/api.ts kickClient). SRS names a client by id alone, so that answer
 * is about some client of the new process, not the session the operator ended: the decision log must
 * not say "kicked". The kick is tried again, and the new process no longer has the old session's client.
 * On the fake clock: the registry's alarm runs when the test runs it.
 */
import { runDurableObjectAlarm } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import { installFakeSrs, operatorKick } from "../fake-srs";
import { at, events, serverStub, useFakeClock } from "../fleet";

installFakeSrs();
useFakeClock();

describe("a kick answered by a restarted process", () => {
  it("is not told as kicked: it waits, and its retry finds the old process's client gone", async () => {
    const { edge, s } = await operatorKick((fake) => void (fake.onKick = () => void (fake.service = "newproc1")));
    await runDurableObjectAlarm(serverStub(edge));
    at(1_100);
    await runDurableObjectAlarm(serverStub(edge));
    await vi.waitFor(async () => expect((await events(s)).some((e: any) => e.action === "kick")).toBe(true), { timeout: 5_000, interval: 50 });
    const told = (await events(s)).filter((e: any) => e.action === "kick" || e.action === "kick-wait").map((e: any) => e.reason);
    expect(told).toContain("kick: the client was already gone (ended by operator)");
    expect(told).not.toContain("kicked (ended by operator)");
  });
});
