/**
 * What the model-based property tests share (test/model.test.ts, test/model-operator.test.ts,
 * test/model-seats-operator.test.ts, test/srs-api/model-api.test.ts): their frame (faked Date, a replay test), session keys, the admin API's viewer listing, waiting for the
 * seats the shards take in the background, and objects dropped from memory mid-run.
 */
import { env } from "cloudflare:workers";
import { evictDurableObject, runDurableObjectAlarm } from "cloudflare:test";
import { afterEach, expect, it, vi } from "vitest";
import { serverRegistry, viewerSeats, viewerShard } from "../src/object-access";
import { admin, heartbeat, hook } from "./srs";

/** A session's key in the models: server/service/client. */
export const keyOf = (x: { server: string; service: string; client: string }) => `${x.server}/${x.service}/${x.client}`;

/** GET /admin/streams/live/{stream}/viewers, which must answer. */
export async function listViewers(stream: string) {
  const res = await admin("GET", `/streams/live/${stream}/viewers`);
  expect(res.status).toBe(200);
  return res.body as { viewers: { sub: string; live: number; sessions: any[] }[]; anonymous: number; unreachable?: string[] };
}

/** Waits until every listed session with a viewer id holds a seat in its seat object (at most ~2 s). */
export async function seatsTaken(stream: string, where: string): Promise<void> {
  const streamKey = `__defaultVhost__/live/${stream}`;
  let missing: string[] = [];
  for (let i = 0; i < 200; i++) {
    missing = [];
    for (const entry of (await listViewers(stream)).viewers) {
      const seats = new Set((await viewerSeats(env, streamKey, entry.sub).seats(streamKey)).filter((x) => x.sub === entry.sub).map((x) => keyOf({ server: x.serverId, service: x.serviceId, client: x.clientId })));
      for (const x of entry.sessions) {
        const k = keyOf({ server: x.serverId, service: x.serviceId, client: x.clientId });
        if (!seats.has(k)) missing.push(`${entry.sub}: ${k}`);
      }
    }
    if (missing.length === 0) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  expect(missing, `${where}: sessions admitted without a limit took no seat once it was set`).toEqual([]);
}

/** Drops an object from memory (its storage stays); one not running, or busy, is left as it is. */
export async function evictQuietly(stub: Parameters<typeof evictDurableObject>[0], where: string): Promise<void> {
  await evictDurableObject(stub).catch((err) => expect(String(err), where).toMatch(/not currently running|still has active references/));
}

/** The service id of a model server's next process (a restart). */
export const nextService = (tag: string, server: number, processes: number) => `svc${tag}x${server}${String.fromCharCode(97 + processes)}`;

/** The stream object of a model stream (in the default vhost, app "live"). */
export const streamObjectOf = (stream: string) => env.STREAM.get(env.STREAM.idFromName(`__defaultVhost__/live/${stream}`));

/** A model's "crash": the viewer shard or registry shard of `serverId`, or the stream's object, dropped from memory. */
export async function crash(target: "shard" | "registry" | "stream", serverId: string, stream: string, where: string): Promise<void> {
  await evictQuietly(target === "shard" ? viewerShard(env, serverId) : target === "registry" ? serverRegistry(env, serverId) : streamObjectOf(stream), where);
}

/** A model's "heartbeat" (restart false) or "restart" (a heartbeat of the server's next process, whose service id it returns). */
export async function beatOrRestart(s: { id: string; processes: string[] }, restart: boolean, tag: string, index: number, where: string): Promise<string | undefined> {
  const service = restart ? nextService(tag, index, s.processes.length) : undefined;
  expect((await hook(heartbeat({ server: s.id, service: service ?? s.processes.at(-1)! }), undefined, "/heartbeat")).status, where).toBe(200);
  return service;
}

/**
 * The frame of a model test, inside its describe: Date faked by each test (vi.useFakeTimers({ toFake: ["Date"] })) and
 * real again after it; a "replay" test that runs `replay` alone, a counterexample being studied (skipped while empty).
 */
export function modelFrame<Op>(replay: Op[], runSequence: (ops: Op[]) => Promise<unknown>, replayTimeoutMs?: number): void {
  afterEach(() => {
    vi.useRealTimers();
  });

  it.skipIf(replay.length === 0)(
    "replay",
    async () => {
      vi.useFakeTimers({ toFake: ["Date"] });
      await runSequence(replay);
    },
    replayTimeoutMs,
  );
}

/**
 * Every alarm runs: each server's registry shard (it suspends silent servers and delivers their notices) until its
 * notices are delivered, at most 20 times; then each stream's object (its sweep), then each server's viewer shard.
 */
export async function runEveryAlarm(serverIds: string[], streamNames: string[]): Promise<void> {
  for (const id of serverIds) {
    for (let i = 0; i < 20; i++) {
      await runDurableObjectAlarm(serverRegistry(env, id));
      const listed = (await admin("GET", `/servers?server=${id}`)).body.servers[0];
      if (!listed || listed.pendingNotices === 0) break;
    }
  }
  for (const name of streamNames) await runDurableObjectAlarm(streamObjectOf(name));
  for (const id of serverIds) await runDurableObjectAlarm(viewerShard(env, id));
}
