/**
 * Events of a takeover (project "srs-api-events": SRS_API_URL and EVENTS_WEBHOOK_URL both set).
 * SRS sends the kicked publisher's on_unpublish before its API lets the client go (seen in e2e runs
 * 4 and 17 against SRS 7.0.18): that stop event, not the takeover itself, ends the old session, and
 * stream.ended must still say why it ended.
 */
import { beforeEach, describe, expect, it } from "vitest";
import { hook, publish, unpublish } from "./srs";
import { ALLOW, FakeSrs, hosts, installFakeSrs, kickedOn, takeoverReady } from "./fake-srs";
import { Receiver } from "./receiver";

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
