/**
 * Load per object, counted by the objects themselves, for `npm run bench`
 * (flash crowd: "the busiest object received N% of the hooks"). Off unless the
 * var LOAD_COUNTERS is "1", which only the bench sets: then the listed RPC
 * methods of a class are wrapped, once per class, to count each call on the
 * object that receives it. Internal calls between an object's own methods
 * do not go through the listed methods, so only calls from outside count.
 *
 * The counts are kept by object id in the isolate, not on the instance: local
 * workerd sometimes starts every object of the isolate again in the middle of a
 * flash crowd (BENCHMARKS.md), and a count on the instance went back to 0 with
 * it. A count lost all the same (the isolate itself started again) shows as a
 * new `isolate` in GET /admin/load.
 */
export type LoadCount = { calls: number; starts: number; methods: Record<string, number> };

const counts = new Map<string, LoadCount>();
const wrapped = new WeakSet<object>();
/** What an object not counted (LOAD_COUNTERS off, or no call yet) reports. */
export const NOT_COUNTED: Readonly<LoadCount> = Object.freeze({ calls: 0, starts: 0, methods: {} });
/** Set by the first read of the counts: random values are not available at module load. */
let isolate = "";

type Counted = { ctx?: DurableObjectState };

/** Each counted instance's key, made once: an object's id never changes, and every counted call needs it. */
const keys = new WeakMap<object, string>();

function keyOf(object: Counted): string {
  let key = keys.get(object);
  if (key === undefined) keys.set(object, (key = `${object.constructor.name}:${object.ctx?.id.toString() ?? ""}`));
  return key;
}

function countOf(key: string) {
  let c = counts.get(key);
  if (!c) counts.set(key, (c = { calls: 0, starts: 0, methods: {} }));
  return c;
}

/** Called by each counted object's constructor: counts its start, and wraps its class's methods once. */
export function countCalls(object: object, env: { LOAD_COUNTERS?: string }, methods: string[]): void {
  if (env.LOAD_COUNTERS !== "1") return;
  const key = keyOf(object as Counted);
  const c = countOf(key);
  // A start after the first (the runtime dropped the object and a call started it again): logged with the calls it had had.
  if (c.starts++ > 0) console.log(JSON.stringify({ event: "object started again", object: key, calls: c.calls }));
  const proto = Object.getPrototypeOf(object) as Record<string, unknown>;
  if (wrapped.has(proto)) return;
  wrapped.add(proto);
  for (const name of methods) {
    const method = proto[name];
    if (typeof method !== "function") throw new Error(`countCalls: no method ${name}`);
    proto[name] = function (this: Counted, ...args: unknown[]) {
      const c = countOf(keyOf(this));
      c.calls++;
      c.methods[name] = (c.methods[name] ?? 0) + 1;
      return method.apply(this, args);
    };
  }
}

/** Calls the object received since its isolate started, by method, and how often it started (zeros when not counting). */
export function callsOf(object: object): LoadCount {
  return counts.get(keyOf(object as Counted)) ?? NOT_COUNTED;
}

/** Names the isolate that counts: another name means the counts started again from 0. */
export function isolateOfCounts(): string {
  if (!isolate) isolate = crypto.randomUUID();
  return isolate;
}
