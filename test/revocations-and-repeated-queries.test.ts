/**
 * Adversarial review of 03bbb3e..1ca5fdb (gate project): revocations on open streams and the
 * switch to token, the admin API's query parameters (a repeated ?vhost=, ?cursor= of GET
 * /admin/usage). Each test states what should hold; all failed on 1ca5fdb, fixed by a0035bb and 58ac365.
 */
import { runDurableObjectAlarm } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { StreamObject } from "../src/stream/object";
import { ALLOW, admin, createStream, type Edge, hook, newEdge, uniqueStream } from "./srs";
import { holdMatching, streamStub, until, useFakeClock } from "./fleet";
import { playWith, tokenOf } from "./identity";


useFakeClock();

describe("a revocation posted while the stream switches from open to token", () => {
  it("the live session it covers ends (the admin call read 'open' before the switch, the switch's push ran before the revocation existed)", async () => {
    const edge: Edge = newEdge();
    const s = uniqueStream();
    await createStream(s, {});
    const token = await tokenOf(s, "alice");
    expect(await hook(playWith(s, edge, "tv000001", token))).toEqual(ALLOW);
    // The revocation's admin call has read the stream's state (open) and is on its way to store the revocation.
    const held = holdMatching(StreamObject.prototype, "revoke", () => true);
    const posting = admin("POST", `/streams/live/${s}/revocations`, { sub: "alice" });
    await until(() => held.reached);
    // Meanwhile another operator switches the stream to token: its push ends the sessions the revocations
    // known then cover (none yet).
    expect((await admin("PUT", `/streams/live/${s}`, { playAuth: "token" })).status).toBe(200);
    held.released = true;
    const r = await posting;
    expect(r.status).toBe(201);
    // Nothing later catches up either: the stream's alarm (push retries) finds nothing pending.
    await runDurableObjectAlarm(streamStub(s));
    // The stream asks for tokens and alice's tokens are revoked: her session, admitted with one, must end
    // (as it does when the revocation comes first and the switch second, README).
    const viewers = (await admin("GET", `/streams/live/${s}/viewers`)).body.viewers;
    expect(viewers.find((v: any) => v.sub === "alice")?.live ?? 0, "alice's live sessions on a token stream that revoked her tokens").toBe(0);
  });
});

describe("a repeated ?vhost= on the admin routes that name a stream", () => {
  it("DELETE /admin/streams/live/{s}?vhost=X&vhost=X does not delete the stream of the default vhost", async () => {
    const s = uniqueStream();
    await createStream(s, {});
    const res = await admin("DELETE", `/streams/live/${s}?vhost=tenant-a&vhost=tenant-a`);
    // GET /admin/streams answers 400 'query parameter "vhost" must be given once'; this route should too (or 404 for tenant-a).
    expect(res.status, JSON.stringify(res.body)).toBe(400);
    expect((await admin("GET", `/streams/live/${s}`)).status, "__defaultVhost__/live/{s} still exists").toBe(200);
  });

  it("POST /admin/apps/{app}/tokens?vhost=X&vhost=X does not mint a season pass for the default vhost", async () => {
    const res = await admin("POST", `/apps/live/tokens?vhost=tenant-a&vhost=tenant-a`, {});
    expect(res.status, `minted for ${res.body.resource}`).toBe(400);
  });
});

describe("GET /admin/usage?cursor=", () => {
  it("a malformed cursor is refused (400), not answered as a last, empty page (a billing export would stop there)", async () => {
    const res = await admin("GET", `/usage?cursor=${encodeURIComponent("not-a-cursor!!")}`);
    expect(res.status, JSON.stringify(res.body)).toBe(400);
  });

  it("a repeated cursor is refused (400), not ignored (the first page again: a client that pages loops for ever)", async () => {
    const res = await admin("GET", `/usage?cursor=abc&cursor=abc`);
    expect(res.status, JSON.stringify(res.body).slice(0, 200)).toBe(400);
  });
});
