/**
 * A rotated key without SRS_API_URL (project "webhooks": EVENTS_WEBHOOK_URL set, no SRS API): nothing can
 * be kicked, so the publisher keeps streaming until it stops on its own, and its stream.ended says `stop`
 * (README, "Events": `operator` only for a publisher kicked with SRS_API_URL). A receiver billing or
 * alerting on operator ends must not see one for a publisher nobody disconnected.
 */
import { beforeEach, describe, expect, it } from "vitest";
import { ALLOW, admin, createStream, hook, newEdge, publish, uniqueStream, unpublish } from "../srs";
import { at, useFakeClock } from "../fleet";
import { Receiver } from "../receiver";

useFakeClock();

let receiver: Receiver;
beforeEach(() => {
  receiver = new Receiver().install();
});

describe("a key rotated while its publisher streams, without SRS_API_URL", () => {
  it("its own on_unpublish moments later ends it with stream.ended reason stop, not operator", async () => {
    const edge = newEdge();
    const stream = uniqueStream();
    const key = await createStream(stream);
    expect(await hook(publish("live", stream, key, { ...edge, client: "pub1" }))).toEqual(ALLOW);
    at(1_000);
    const rotated = await admin("PUT", `/streams/live/${stream}`, { rotateKey: true });
    expect(rotated.status).toBe(200);
    expect(rotated.body.kicking).toBeUndefined();
    at(2_000);
    expect(await hook(unpublish("live", stream, { ...edge, client: "pub1" }))).toEqual(ALLOW);
    const [, ended] = await receiver.received(stream, 2);
    expect(ended.body).toMatchObject({ type: "stream.ended", data: { client_id: "pub1", reason: "stop", duration: 2 } });
  });
});
