/**
 * Load per object, counted by the objects themselves, for `npm run bench`
 * (flash crowd: "the busiest object received N% of the hooks"). Off unless the
 * var LOAD_COUNTERS is "1", which only the bench sets: then the listed RPC
 * methods of a class are wrapped, once per class, to count each call on the
 * instance that receives it. Internal calls between an object's own methods
 * do not go through the listed methods, so only calls from outside count.
 */
const COUNT = Symbol("calls");
const wrapped = new WeakSet<object>();

type Counted = { [COUNT]?: number };

export function countCalls(object: object, env: { LOAD_COUNTERS?: string }, methods: string[]): void {
  if (env.LOAD_COUNTERS !== "1") return;
  const proto = Object.getPrototypeOf(object) as Record<string, unknown>;
  if (wrapped.has(proto)) return;
  wrapped.add(proto);
  for (const name of methods) {
    const method = proto[name];
    if (typeof method !== "function") throw new Error(`countCalls: no method ${name}`);
    proto[name] = function (this: Counted, ...args: unknown[]) {
      this[COUNT] = (this[COUNT] ?? 0) + 1;
      return method.apply(this, args);
    };
  }
}

/** Calls the object received since it started (0 when not counting). */
export function callsOf(object: object): number {
  return (object as Counted)[COUNT] ?? 0;
}
