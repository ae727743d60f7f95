/**
 * What a stream keeps of its revocations of play tokens (src/stream/revocations.ts; README, "Revocations"
 * and POST /admin/streams/{app}/{stream}/revocations): a later revocation of a viewer never narrows an
 * earlier one, a revocation of every token replaces the viewers' ones it covers, one of a viewer lasts until
 * every token it covers has expired (MAX_TOKEN_TTL_S after its `before`, to the second), and at most 1,000
 * are active (409 past that; a revocation of every token is the way out). On the fake clock.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { maxTokenTtlS } from "../src/config";
import type { Env } from "../src/env";
import { a, nowS, playWith, REVOKED, screensOnTheFakeClock, tokenOf } from "./identity";
import { admin, createStream, hook, uniqueStream } from "./srs";
import { at } from "./fleet";

screensOnTheFakeClock();

const TTL_S = maxTokenTtlS(env as Env);
const revoke = (s: string, body: Record<string, unknown>) => admin("POST", `/streams/live/${s}/revocations`, body);
const listed = async (s: string) => (await admin("GET", `/streams/live/${s}/revocations`)).body.revocations;

describe("a stream's revocations", () => {
  it("a later revocation of a viewer with an earlier 'before' does not narrow the one in force: tokens it covered stay refused", async () => {
    const s = uniqueStream();
    await createStream(s, { playAuth: "token" });
    const issued = nowS() - 50;
    const first = await revoke(s, { sub: "alice", before: nowS() });
    expect(first.status).toBe(201);
    const second = await revoke(s, { sub: "alice", before: nowS() - 100 });
    expect(second.status).toBe(201);
    expect(second.body.revocation).toEqual(first.body.revocation);
    expect(await listed(s)).toEqual([first.body.revocation]);
    expect(await hook(playWith(s, a, "tv000001", await tokenOf(s, "alice", issued)))).toEqual(REVOKED);
  });

  it("a revocation of every token issued before a time replaces the viewers' revocations it covers (only theirs)", async () => {
    const s = uniqueStream();
    await createStream(s, { playAuth: "token" });
    await revoke(s, { sub: "alice", before: nowS() - 100 });
    // Covered to the second: its tokens were issued before the same moment.
    await revoke(s, { sub: "carol", before: nowS() - 10 });
    const later = (await revoke(s, { sub: "bob" })).body.revocation;
    const all = await revoke(s, { before: nowS() - 10 });
    expect(all.status).toBe(201);
    expect(await listed(s)).toEqual([all.body.revocation, later]);
  });

  it("one of a viewer lasts until every token it covers has expired, to the second: one already over is 201 with nothing kept, one still live goes at its end", async () => {
    const s = uniqueStream();
    await createStream(s, { playAuth: "token" });
    const over = await revoke(s, { sub: "alice", before: nowS() - TTL_S });
    expect(over.status).toBe(201);
    expect(over.body.revocation).toEqual({ sub: "alice", before: nowS() - TTL_S, expires: nowS() });
    expect(await listed(s)).toEqual([]);
    const live = (await revoke(s, { sub: "bob", before: nowS() })).body.revocation;
    expect(live).toEqual({ sub: "bob", before: nowS(), expires: nowS() + TTL_S });
    at((TTL_S - 1) * 1000);
    expect(await listed(s)).toEqual([live]);
    at(TTL_S * 1000);
    expect(await listed(s)).toEqual([]);
  });

  it("at most 1,000 active: a revocation of a 1,001st viewer is 409, one of a viewer already revoked and one of every token still 201", async () => {
    const s = uniqueStream();
    await createStream(s, { playAuth: "token" });
    for (let i = 0; i < 1_000; i++) expect((await revoke(s, { sub: `viewer${i}` })).status).toBe(201);
    const refused = await revoke(s, { sub: "viewer1000" });
    expect(refused.status).toBe(409);
    expect((await revoke(s, { sub: "viewer7" })).status).toBe(201);
    expect((await revoke(s, { before: nowS() - 10 })).status).toBe(201);
  });
});
