/**
 * Deterministic examples found by test/model-operator.test.ts (operator actions interleaved with a fleet
 * that restarts, retries and loses hooks).
 */
import { describe, expect, it } from "vitest";
import { admin, hook, newEdge, publish, streamState } from "./srs";
import { ALLOW } from "./fake-srs";
import { at, beat, restarted, streamAtZero, useFakeClock } from "./fleet";

describe("DELETE /admin/servers/{id}/sessions answers only the sessions it ended", () => {
  useFakeClock();

  // Model sequence: [publish s0 c0, restart s0, late on_publish of s0's old process c0, endServer s0]. The restart's
  // notice had not reached the stream yet (the registry's alarm); the late hook (4006) made the stream end the old
  // process's publisher, but its index entry stayed until the notice: the operator's end found the entry, the stream
  // ended nothing (0), and the call answered that publisher as ended by the operator (with SRS_API_URL: a kick and a
  // session.ended_by_operator event for a session a restart had ended).
  it("must not happen (fixed): a publisher a restart had ended, its index entry not yet cleaned, is answered as ended by the operator", async () => {
    const s = await streamAtZero();
    const key = (await admin("PUT", `/streams/live/${s}`, { rotateKey: true })).body.publishKey;
    const a = newEdge();
    expect(await beat(a)).toEqual(ALLOW);
    at(1);
    expect(await hook(publish("live", s, key, { ...a, client: "enc00001" }))).toEqual(ALLOW);
    at(2);
    const b = restarted(a);
    expect(await beat(b)).toEqual(ALLOW);
    at(3);
    // A late on_publish of the replaced process: refused, and the stream lets that publisher go.
    expect((await hook(publish("live", s, key, { ...a, client: "enc00001" }))).body.code).toBe(4006);
    expect((await streamState(s)).publisher).toBeNull();
    at(4);
    const res = await admin("DELETE", `/servers/${a.server}/sessions`);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ serverId: a.server, ended: [], remaining: 0 });
  });

  it("holds: a publisher the stream still holds is answered as ended, and its stream lets it go", async () => {
    const s = await streamAtZero();
    const key = (await admin("PUT", `/streams/live/${s}`, { rotateKey: true })).body.publishKey;
    const a = newEdge();
    expect(await beat(a)).toEqual(ALLOW);
    at(1);
    expect(await hook(publish("live", s, key, { ...a, client: "enc00001" }))).toEqual(ALLOW);
    at(2);
    const res = await admin("DELETE", `/servers/${a.server}/sessions`);
    expect(res.body).toMatchObject({ ended: [{ stream: `__defaultVhost__/live/${s}`, role: "publisher", serviceId: a.service, clientId: "enc00001" }], remaining: 0 });
    expect((await streamState(s)).publisher).toBeNull();
  });
});
