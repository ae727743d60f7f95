/**
 * Adversarial pass on kept answers (src/platform/kept-answers.ts) with SRS's HTTP API (this file runs in the
 * "srs-api" project). A seat's end of a replaced screen whose answer is lost is kicked all the same; an
 * answer dropped by the seat object's own timeout (SHARD_TIMEOUT_MS) is a lost answer too.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { admin, createStream, hook, publish, uniqueStream } from "../srs";
import { overloaded, until } from "../fleet";
import { ALLOW, edgeWithApi, installFakeSrs, kickedOn } from "../fake-srs";
import { aliceTvAndAnotherEdge, livePerSub, playWith } from "../identity";
import { ViewerShard } from "../../src/viewers/shard";

installFakeSrs();
afterEach(() => void vi.useRealTimers());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("replace: the shard ends the old screen only after the seat object stopped waiting (SHARD_TIMEOUT_MS, 2 s)", () => {
  it("the old screen is kicked once its shard ended it (it was ended in the accounting, never kicked, and played on uncounted beside the phone on limit 1)", async () => {
    const { a, b, s, token } = await aliceTvAndAnotherEdge(["phone001", "phone002"]);
    const real = ViewerShard.prototype.endSeat;
    let calls = 0;
    let landed = 0;
    // The shard is stuck behind a slow neighbour: the end reaches it after the seat object gave up waiting.
    const spy = vi.spyOn(ViewerShard.prototype, "endSeat").mockImplementation(function (this: ViewerShard, ...args: Parameters<ViewerShard["endSeat"]>) {
      calls++;
      return sleep(2_300).then(() => real.apply(this, args)).finally(() => void landed++) as never;
    });
    const first = await hook(playWith(s, b.edge, "phone001", token));
    spy.mockRestore();
    await until(() => landed === 1); // the late end has landed (its kick follows in the background: checked below)
    expect(calls).toBe(1);
    // The shard ended the TV: its accounting has nobody for alice.
    expect((await livePerSub(s)).alice ?? 0).toBe(first.status === 200 ? 1 : 0);
    // The phone plays again (a player retries): nothing stands in its way now.
    expect(await hook(playWith(s, b.edge, "phone002", token))).toEqual(ALLOW);
    // The TV's kick (queued once its late end landed) is carried out in the background.
    await until(() => kickedOn(a.fake, "tv000001"));
    expect((await livePerSub(s)).alice).toBe(1);
    // The TV, ended in the accounting, must not play on uncounted on edge a.
    expect(kickedOn(a.fake, "tv000001")).toBe(true);
  });
});

describe("DELETE /admin/servers/{id}/sessions: the server's viewer shard cannot be reached (overloaded)", () => {
  it("the publishers its streams ended are still answered and kicked (the call failed with 500 after ending them: nobody kicked the encoder, and a repeated call found nothing left to end)", async () => {
    const { edge, fake } = await edgeWithApi(["enc00001"]);
    const s = uniqueStream();
    const key = await createStream(s);
    expect(await hook(publish("live", s, key, { ...edge, client: "enc00001" }))).toEqual(ALLOW);
    const spy = vi.spyOn(ViewerShard.prototype, "endAll").mockImplementation(() => {
      throw overloaded();
    });
    const res = await admin("DELETE", `/servers/${edge.server}/sessions`);
    spy.mockRestore();
    const again = await admin("DELETE", `/servers/${edge.server}/sessions`);
    await until(() => kickedOn(fake, "enc00001")); // the kick is sent in the background
    expect(res.status).toBe(200);
    expect(res.body.failed).toBe(1); // the shard: its viewers still stand
    const reported = [...(res.body?.ended ?? []), ...(again.body?.ended ?? [])].map((e: any) => e.clientId);
    expect(reported).toContain("enc00001");
    expect(kickedOn(fake, "enc00001")).toBe(true);
  });
});
