/**
 * The bound on kicks of refused clients (src/srs/kick-outbox.ts; README, "Kicks": refused HLS sessions
 * that chose their hls_ctx are kicked, "at most 1,000 wait per registry shard (more are logged, not
 * queued)"), and that an operator's kick is queued whatever that flood left. A flood of refused requests
 * (one HTTP GET each) must not grow a registry shard's storage without bound. The kicks are queued in the
 * registry shard as src/srs/routes.ts kickRefused queues them (0.3 s delay, unless admitted); the fake clock
 * stands still, so none of them runs meanwhile.
 */
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import type { ServerRegistry } from "../../src/server/registry";
import type { Kick } from "../../src/srs/kicks";
import { edgeWithApi, installFakeSrs } from "../fake-srs";
import { serverStub, useFakeClock } from "../fleet";
import { uniqueStream } from "../srs";

installFakeSrs();
useFakeClock();

const waiting = (server: string) =>
  runInDurableObject(serverStub({ server, service: "" }), (_: ServerRegistry, state: DurableObjectState) =>
    state.storage.sql.exec<{ refused: number; n: number }>("SELECT unless_admitted AS refused, COUNT(*) AS n FROM kicks GROUP BY unless_admitted ORDER BY refused").toArray(),
  );

describe("kicks of refused clients waiting in one registry shard", () => {
  it("at most 1,000: the 1,001st is logged and not queued, and an operator's kick is queued all the same", async () => {
    const { edge } = await edgeWithApi();
    const key = `__defaultVhost__/live/${uniqueStream()}`;
    const refused = (i: number): Kick => ({ streamKey: key, role: "viewer", serverId: edge.server, serviceId: edge.service, clientId: `hls${String(i).padStart(5, "0")}`, why: "refused", delayMs: 300, unlessAdmitted: true });
    const errors: string[] = [];
    const spy = vi.spyOn(console, "error").mockImplementation((line: unknown) => void errors.push(String(line)));
    try {
      await runInDurableObject(serverStub(edge), (r: ServerRegistry) => r.queueKicks(Array.from({ length: 999 }, (_, i) => refused(i))));
      await runInDurableObject(serverStub(edge), (r: ServerRegistry) => r.queueKicks([refused(999)]));
      expect(errors.filter((l) => l.includes("too many waiting"))).toHaveLength(0);
      await runInDurableObject(serverStub(edge), (r: ServerRegistry) => r.queueKicks([refused(1000)]));
      expect(errors.filter((l) => l.includes("too many waiting") && l.includes("hls01000"))).toHaveLength(1);
    } finally {
      spy.mockRestore();
    }
    const operator: Kick = { streamKey: key, role: "viewer", serverId: edge.server, serviceId: edge.service, clientId: "view0001", why: "ended by operator", delayMs: 300 };
    await runInDurableObject(serverStub(edge), (r: ServerRegistry) => r.queueKicks([operator]));
    expect(await waiting(edge.server)).toEqual([
      { refused: 0, n: 1 },
      { refused: 1, n: 1_000 },
    ]);
  });
});
