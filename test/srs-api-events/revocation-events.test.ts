/**
 * A revocation of play tokens with SRS_API_URL and EVENTS_WEBHOOK_URL both set (src/viewers/revoked.ts):
 * the viewer sessions it ends are kicked on their edges, and the receiver's session.ended_by_operator says
 * so (`kicked: true`), as it does for a rotated key or a deleted stream. A receiver that reconciles its
 * own view of who watches reads that field to know the client is being disconnected, not only uncounted.
 */
import { describe, expect, it, vi } from "vitest";
import { admin, createStream, hook, uniqueStream } from "../srs";
import { ALLOW, edgeWithApi, FakeSrs, hosts, installFakeSrs, kickedOn } from "../fake-srs";
import { playWith, tokenOf } from "../identity";
import { Receiver } from "../receiver";

installFakeSrs();

describe("a revocation's events", () => {
  it("the viewer session it ends is kicked, and session.ended_by_operator says kicked: true with the reason 'token revoked'", async () => {
    const receiver = new Receiver();
    hosts.set("receiver.test", { calls: [], handle: (req: Request) => receiver.receive(req) } as unknown as FakeSrs);
    const { edge, fake } = await edgeWithApi(["tv000001"]);
    const s = uniqueStream();
    await createStream(s, { playAuth: "token" });
    expect(await hook(playWith(s, edge, "tv000001", await tokenOf(s, "alice")))).toEqual(ALLOW);
    const r = await admin("POST", `/streams/live/${s}/revocations`, { sub: "alice" });
    expect(r.status).toBe(201);
    expect(r.body.kicking).toEqual([{ role: "viewer", serverId: edge.server, clientId: "tv000001" }]);
    await vi.waitFor(() => expect(kickedOn(fake, "tv000001")).toBe(true), { timeout: 10_000, interval: 50 });
    const ended = (await receiver.received(s, 1)).find((e) => e.body.type === "session.ended_by_operator");
    expect(ended?.body.data).toMatchObject({ role: "viewer", server_id: edge.server, client_id: "tv000001", reason: "token revoked", kicked: true });
  });
});
