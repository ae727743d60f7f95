/**
 * Adversarial review (srs-api-events project: SRS_API_URL and EVENTS_WEBHOOK_URL both set).
 */
import { beforeEach, describe, expect, it } from "vitest";
import { hook, publish, unpublish } from "../srs";
import { ALLOW, FakeSrs, hosts, installFakeSrs, kickedOn, takeoverReady } from "../fake-srs";
import { Receiver } from "../receiver";
import { until } from "../fleet";

installFakeSrs();

let receiver: Receiver;
beforeEach(() => {
  receiver = new Receiver();
  hosts.set("receiver.test", { calls: [], handle: (req: Request) => receiver.receive(req) } as unknown as FakeSrs);
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("takeover reason: a stop that is not the takeover's", () => {
  it("the old edge's API is unreachable (no kick sent), its publisher stops on its own meanwhile: stream.ended says stop", async () => {
    const { a, b, s, key } = await takeoverReady();
    // The takeover's question to edge a takes 600 ms, then fails: no DELETE is ever sent.
    a.fake.override = async () => {
      await sleep(600);
      throw new TypeError("Network connection lost.");
    };
    const asked = a.fake.calls.length;
    const taking = hook(publish("live", s, key, { ...b.edge, client: "enc00002" }));
    // 0-600 ms: the ghost check's question (fails); 600-1200 ms: the kick's own question before its DELETE (fails).
    // The second question has reached edge a (it fails 600 ms later).
    await until(() => a.fake.calls.length >= asked + 2);
    // The encoder on a stops by itself while the question is on its way.
    expect(await hook(unpublish("live", s, { ...a.edge, client: "enc00001" }))).toEqual(ALLOW);
    await taking;
    expect(kickedOn(a.fake, "enc00001")).toBe(false);
    const events = await receiver.received(s, 2);
    const ended = events.find((e) => e.body.type === "stream.ended")!;
    expect(ended.body.data).toMatchObject({ client_id: "enc00001", reason: "stop" });
  });
});
