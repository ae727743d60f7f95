/**
 * Review of issue 10 (liveness and epochs): sequences under which a rule broke.
 */
import { beforeEach, describe, expect, it } from "vitest";
import { ViewerShard } from "../src/viewers/shard";
import { createStream, type Edge, hook, newEdge, play, publish, streamState, uniqueStream } from "./srs";
import { at, beat, holdMatching, restarted, serverListed, until, useFakeClock } from "./fleet";

const ALLOW = { status: 200, body: { code: 0 } };

let edge: Edge;
let other: Edge;
useFakeClock();
beforeEach(() => {
  edge = newEdge();
  other = newEdge();
});

describe("a restart's heartbeat is a heartbeat, even while its shard's notice is on its way", () => {
  it("the restarted process, which heartbeated 1.5 s ago, is not taken for silent: its publisher keeps blocking", async () => {
    // The old process heartbeats at 0 and has a viewer (so its server's viewer shard has a notice to get at a restart).
    expect(await beat(edge)).toEqual(ALLOW);
    const v = uniqueStream();
    await createStream(v);
    expect(await hook(play("live", v, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    const s = uniqueStream();
    const key = await createStream(s);

    // SRS restarts; the new process's first heartbeat comes 29 s after the old one's last. Its shard's notice
    // is slow to arrive (a cold or busy shard: the registry waits up to 5 s for it before it answers).
    const next = restarted(edge);
    const slow = holdMatching(ViewerShard.prototype, "applyStatus", (_self, args) => args[0]?.serviceId === edge.service);
    at(29_000);
    const restartBeat = beat(next);
    await until(() => slow.reached);
    // The new process's encoder publishes: admitted (the restart is recorded).
    at(29_500);
    expect(await hook(publish("live", s, key, { ...next, client: "enc00001" }))).toEqual(ALLOW);

    // 1.5 s after that heartbeat, another edge's encoder tries the same stream.
    at(30_500);
    expect(await beat(other)).toEqual(ALLOW);
    const second = await hook(publish("live", s, key, { ...other, client: "enc00002" }));
    slow.released = true;
    expect(await restartBeat).toEqual(ALLOW);
    expect(second.body.code, "a second live publisher admitted").toBe(4004);
    expect(await serverListed(next)).toMatchObject({ serviceId: next.service, alive: true });
    expect(await streamState(s)).toMatchObject({ live: true, publisher: { serverId: next.server, state: "live" } });
  });
});
