/**
 * Adversarial pass on kept answers (src/platform/kept-answers.ts): an answer outlives the object's restart
 * between attempts, belongs to its call id only, and a shard that ended nothing keeps nothing.
 */
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import { ViewerShard } from "../src/viewers/shard";
import { admin, createStream, hook, newEdge, play, uniqueStream } from "./srs";
import { ALLOW } from "./identity";
import { shardStub } from "./fleet";

const keyOf = (s: string) => `__defaultVhost__/live/${s}`;
const tables = (state: DurableObjectState) => state.storage.sql.exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table'").toArray().map((r) => r.name);

describe("kept answers", () => {
  it("a retry after the shard restarted gets the first attempt's answer; another call id gets only what is left", async () => {
    const edge = newEdge();
    const s = uniqueStream();
    await createStream(s);
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    const first = await runInDurableObject(shardStub(edge), (shard: ViewerShard) => shard.endSessions(keyOf(s), undefined, "by hand", "call-1"));
    expect(first.map((v) => v.clientId)).toEqual(["view0001"]);
    await evictDurableObject(shardStub(edge));
    const retry = await runInDurableObject(shardStub(edge), (shard: ViewerShard) => shard.endSessions(keyOf(s), undefined, "by hand", "call-1"));
    expect(retry).toEqual(first);
    const other = await runInDurableObject(shardStub(edge), (shard: ViewerShard) => shard.endSessions(keyOf(s), undefined, "by hand", "call-2"));
    expect(other).toEqual([]);
    // The same client plays again: a new call ends the new session, the old call id still answers the old one only.
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    const again = await runInDurableObject(shardStub(edge), (shard: ViewerShard) => shard.endSessions(keyOf(s), undefined, "by hand", "call-1"));
    expect(again).toEqual(first);
    expect((await runInDurableObject(shardStub(edge), (shard: ViewerShard) => shard.sessionCount()))).toBe(1);
  });

  it("a shard that never held a viewer keeps nothing for an end by hand", async () => {
    const edge = newEdge();
    const s = uniqueStream();
    await createStream(s);
    await runInDurableObject(shardStub(edge), (shard: ViewerShard) => {
      shard.endSessions(keyOf(s), undefined, "by hand", "c1");
      shard.endAll(500, "by hand", "c2");
      shard.endRevoked(keyOf(s), null, Date.now(), "c3");
      shard.endSeat(keyOf(s), { serverId: edge.server, serviceId: edge.service, clientId: "x" }, "why", "c4");
    });
    expect(await runInDurableObject(shardStub(edge), (_: ViewerShard, state: DurableObjectState) => tables(state))).toEqual([]);
  });
});

describe("an answer too big to keep (SQLite's row limit: 2 MB on Cloudflare, some 20,000 viewers of one stream on one edge)", () => {
  it("DELETE …/sessions still answers the viewers it ended (the store threw after the ends: the shard was reported failed, its viewers ended and never kicked)", async () => {
    const edge = newEdge();
    const s = uniqueStream();
    await createStream(s);
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    const proto = await runInDurableObject(shardStub(edge), (_: ViewerShard, state: DurableObjectState) => Object.getPrototypeOf(state.storage.sql));
    const real = proto.exec;
    const spy = vi.spyOn(proto, "exec").mockImplementation(function (this: SqlStorage, query: string, ...args: unknown[]) {
      if (query.startsWith("INSERT OR REPLACE INTO kept_answers")) throw new Error("string or blob too big: SQLITE_TOOBIG");
      return real.call(this, query, ...args);
    } as never);
    const res = await admin("DELETE", `/streams/live/${s}/sessions`);
    spy.mockRestore();
    expect(res.status).toBe(200);
    expect(res.body.failed).toBeUndefined();
    expect(res.body.ended.map((e: any) => e.clientId)).toEqual(["view0001"]);
  });
});
