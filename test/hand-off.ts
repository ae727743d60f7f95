/**
 * Helpers for the tests of "replace at a full stream" (a replaced session's slot handed to the viewer's newer
 * screen): test/replace-at-full-stream.test.ts, test/hand-off-adversarial.test.ts, test/hand-off-review.test.ts.
 * Edges `a`, `b`, `c` are test/identity.ts's (screensOnTheFakeClock).
 */
import { expect, onTestFinished, vi } from "vitest";
import { a, ALLOW, b, limited, playWith, tokenOf } from "./identity";
import { hook, newEdge } from "./srs";
import { events, streamStub, until } from "./fleet";
import { evictDurableObject } from "cloudflare:test";

/** The refusal SRS receives at a full stream of cap `n`. */
export const FULL = (n: number) => ({ status: 403, body: { code: 4005, reason: `viewer cap reached: ${n} of ${n} viewers` } });

/** A stream with maxViewers `cap`, one session per viewer id, replace; its viewers' tokens. */
export async function fullStream(cap: number, policy: Record<string, unknown> = {}) {
  const s = await limited({ maxViewers: cap, onExtraViewerSession: "replace", ...policy });
  return { s, alice: await tokenOf(s, "alice"), bob: await tokenOf(s, "bob"), carol: await tokenOf(s, "carol"), dave: await tokenOf(s, "dave") };
}

/** Alice's session `client` was ended for her newer one (the stream's decision log says so). */
export const replaced = async (s: string, client: string) =>
  (await events(s)).some((e: any) => e.client === client && e.decision === "end" && /replaced by a newer session of viewer alice/.test(e.reason));

/**
 * The first call of `method` matching `which` runs to its end; its answer is held (inside the object) until released.
 * `calls` counts the matching calls (a later one has entered the method, and run to its first await, once counted).
 */
export function holdAfter<T extends object>(proto: T, method: keyof T & string, which: (self: any, args: any[]) => boolean) {
  const real = (proto as any)[method];
  const state = { reached: false, released: false, calls: 0 };
  onTestFinished(() => void (state.released = true));
  vi.spyOn(proto as any, method).mockImplementation(async function (this: unknown, ...args: unknown[]) {
    if (!which(this, args)) return real.apply(this, args);
    state.calls++;
    if (state.reached) return real.apply(this, args);
    const answer = await real.apply(this, args);
    state.reached = true;
    while (!state.released) await scheduler.wait(5);
    return answer;
  });
  return state;
}

/** The stream's record of slots per shard (what its lease book counts), summed. */
export async function leased(s: string): Promise<number> {
  const state = await streamStub(s).state();
  return state!.shards.reduce((n: number, x: any) => n + x.leased, 0);
}

/** Alice watches on `a` (phone001), bob on `b`: a stream capped at `cap` (2) is full. */
export async function phoneAndBob(cap = 2) {
  const t = await fullStream(cap);
  expect(await hook(playWith(t.s, a, "phone001", t.alice))).toEqual(ALLOW);
  expect(await hook(playWith(t.s, b, "bob00001", t.bob))).toEqual(ALLOW);
  return t;
}

/**
 * Once `held` (a hold on the TV's admission, `tv`) is reached, the phone replaced: the stream's object restarts
 * (evicted: what it keeps in memory goes), dave asks on a new edge, then the hold is released. Both answers.
 */
export async function daveAfterAStreamRestart(s: string, dave: string, held: { reached: boolean; released: boolean }, tv: Promise<unknown>) {
  await until(() => held.reached);
  expect(await replaced(s, "phone001")).toBe(true);
  await evictDurableObject(streamStub(s));
  const daveAnswer = await hook(playWith(s, newEdge(), "dave0001", dave));
  held.released = true;
  return { dave: daveAnswer, tv: await tv };
}
