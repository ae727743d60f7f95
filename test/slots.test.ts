/**
 * Adversarial unit tests of `Slots` (src/platform/slots.ts) and `ServerCallSlots` (src/srs/ghosts.ts), as
 * 8ca7a9a rewrote them: places never counted wrong, a waiter never resolved twice, no place leaked when work
 * throws or a deadline falls at the moment of a release, in order, and an idle server's slots forgotten only
 * when nothing of it runs or waits.
 */
import { describe, expect, it } from "vitest";
import { Slots } from "../src/platform/slots";
import { CALLS_PER_SERVER, ServerCallSlots } from "../src/srs/ghosts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A piece of work that runs until `finish` is called, counting what runs at once. */
function gate() {
  const counter = { now: 0, most: 0, order: [] as number[] };
  const finishers: (() => void)[] = [];
  const work = (id: number, fail = false) => () =>
    new Promise<number>((resolve, reject) => {
      counter.now++;
      counter.most = Math.max(counter.most, counter.now);
      counter.order.push(id);
      finishers.push(() => {
        counter.now--;
        if (fail) reject(new Error(`work ${id} failed`));
        else resolve(id);
      });
    });
  return { counter, finishers, work };
}

/** How many pieces of work start at once on `slots` now (each then finishes): what the slots think is free. */
async function freePlaces(slots: Slots, upTo = 10): Promise<number> {
  let started = 0;
  const finish: (() => void)[] = [];
  const runs = Array.from({ length: upTo }, () =>
    slots.run(() => new Promise<void>((r) => (started++, finish.push(r))), Date.now() + 1),
  );
  await sleep(5);
  const n = started;
  finish.forEach((f) => f());
  await Promise.all(runs);
  return n;
}

describe("Slots", () => {
  it("holds: never more than its size at once, in order of arrival, and all places back once the work is done", async () => {
    const slots = new Slots(5);
    const { counter, finishers, work } = gate();
    const runs = Array.from({ length: 23 }, (_, i) => slots.run(work(i)));
    await sleep(0);
    for (let round = 0; round < 10 && finishers.length > 0; round++) {
      // Finish them out of order: the next in line gets the place all the same.
      const batch = finishers.splice(0);
      batch.reverse().forEach((f) => f());
      await sleep(0);
    }
    expect(await Promise.all(runs)).toEqual(Array.from({ length: 23 }, (_, i) => i));
    expect(counter.most).toBe(5);
    expect(counter.order).toEqual(Array.from({ length: 23 }, (_, i) => i));
    expect(slots.idle).toBe(true);
    expect(await freePlaces(slots)).toBe(5);
  });

  it("holds: work that throws (or rejects) gives its place back, to the next in line", async () => {
    const slots = new Slots(1);
    await expect(slots.run(() => { throw new Error("sync"); })).rejects.toThrow("sync");
    await expect(slots.run(async () => { throw new Error("async"); })).rejects.toThrow("async");
    const { finishers, work } = gate();
    const first = slots.run(work(1, true));
    const second = slots.run(work(2));
    await sleep(0);
    finishers.shift()!();
    await expect(first).rejects.toThrow("work 1 failed");
    await sleep(0);
    finishers.shift()!();
    expect(await second).toBe(2);
    expect(slots.idle).toBe(true);
    expect(await freePlaces(slots)).toBe(1);
  });

  it("holds: a waiter whose deadline passes at the head of the line leaves it, and the next place goes to the one behind it", async () => {
    const slots = new Slots(1);
    const { finishers, work } = gate();
    const holder = slots.run(work(0));
    const head = slots.run(work(1), Date.now() + 30);
    const behind = slots.run(work(2), Date.now() + 10_000);
    await sleep(60);
    expect(await head).toBeNull();
    finishers.shift()!();
    expect(await holder).toBe(0);
    await sleep(0);
    expect(finishers).toHaveLength(1); // the one behind runs
    finishers.shift()!();
    expect(await behind).toBe(2);
    expect(slots.idle).toBe(true);
    expect(await freePlaces(slots)).toBe(1);
  });

  it("holds: a deadline that falls at the very moment a place is released neither loses nor doubles the place", async () => {
    for (const releaseFirst of [true, false]) {
      for (let trial = 0; trial < 20; trial++) {
        const slots = new Slots(2);
        let running = 0;
        let most = 0;
        const timed = (ms: number) => async () => {
          running++;
          most = Math.max(most, running);
          await sleep(ms);
          running--;
        };
        // Two holders finish at 20 ms; a waiter's deadline is at 20 ms too (its timer set before or after theirs).
        const deadline = Date.now() + 20;
        let waiter: Promise<unknown>;
        const holders: Promise<unknown>[] = [];
        if (releaseFirst) {
          holders.push(slots.run(timed(20)), slots.run(timed(20)));
          waiter = slots.run(timed(5), deadline);
        } else {
          holders.push(slots.run(timed(20)));
          waiter = slots.run(timed(5), deadline); // not waiting: a place is free
          holders.push(slots.run(timed(20)), slots.run(timed(20), deadline));
        }
        const late = [slots.run(timed(5)), slots.run(timed(5)), slots.run(timed(5))];
        await Promise.all([...holders, waiter, ...late]);
        expect(most, "never more than 2 at once").toBeLessThanOrEqual(2);
        expect(slots.idle).toBe(true);
        expect(await freePlaces(slots)).toBe(2);
      }
    }
  });

  it("holds: a run whose deadline has already passed still gets a free place (the caller checks its own time), and never waits", async () => {
    const slots = new Slots(1);
    expect(await slots.run(async () => "ran", Date.now() - 1_000)).toBe("ran");
    const { finishers, work } = gate();
    const holder = slots.run(work(0));
    const started = Date.now();
    expect(await slots.run(async () => "never", Date.now() - 1)).toBeNull();
    expect(await slots.run(async () => "never", Date.now())).toBeNull();
    expect(Date.now() - started).toBeLessThan(50);
    finishers.shift()!();
    await holder;
    expect(slots.idle).toBe(true);
  });

  it("holds: a deadline days away waits its turn (no timer overflow refusing it at once)", async () => {
    const slots = new Slots(1);
    const { finishers, work } = gate();
    const holder = slots.run(work(0));
    // Past setTimeout's 2^31 - 1 ms: a timer that overflowed would fire at once and refuse the waiter.
    const far = slots.run(work(1), Date.now() + 2 ** 31 + 60_000);
    await sleep(50);
    finishers.shift()!();
    await holder;
    await sleep(0);
    expect(finishers, "the far waiter got the place").toHaveLength(1);
    finishers.shift()!();
    expect(await far).toBe(1);
  });
});

describe("ServerCallSlots", () => {
  it("holds: at most CALLS_PER_SERVER at a time per server through churn (a server forgotten when idle, made again), none lost", async () => {
    const slots = new ServerCallSlots();
    const running = new Map<string, number>();
    let most = 0;
    const servers = ["a", "b", "c"];
    const runs: Promise<unknown>[] = [];
    let refused = 0;
    for (let wave = 0; wave < 30; wave++) {
      for (const s of servers) {
        for (let i = 0; i < 3 + (wave % 4); i++) {
          const ms = (wave * 7 + i * 3) % 11;
          const deadline = i % 3 === 0 ? Date.now() + ((wave + i) % 6) : undefined;
          runs.push(
            slots
              .run(
                s,
                async () => {
                  running.set(s, (running.get(s) ?? 0) + 1);
                  most = Math.max(most, running.get(s)!);
                  await sleep(ms);
                  running.set(s, running.get(s)! - 1);
                  if ((wave + i) % 5 === 0) throw new Error("work failed");
                },
                deadline,
              )
              .then((r) => void (r === null && refused++))
              .catch(() => {}),
          );
        }
      }
      await sleep(wave % 3);
    }
    await Promise.all(runs);
    expect(most).toBe(CALLS_PER_SERVER);
    expect(refused, "some waiters ran out of time").toBeGreaterThan(0);
    // Forgotten once idle, and each server still has all its places.
    expect((slots as unknown as { servers: Map<string, Slots> }).servers.size).toBe(0);
    for (const s of servers) {
      let started = 0;
      const finish: (() => void)[] = [];
      const probe = Array.from({ length: 8 }, () => slots.run(s, () => new Promise<void>((r) => (started++, finish.push(r))), Date.now() + 1));
      await sleep(5);
      expect(started).toBe(CALLS_PER_SERVER);
      finish.forEach((f) => f());
      await Promise.all(probe);
    }
  });

  it("holds: a waiter handed its place by the last one running is not left on a forgotten server's slots (no second set of 4)", async () => {
    const slots = new ServerCallSlots();
    let running = 0;
    let most = 0;
    const finish: (() => void)[] = [];
    const work = () => new Promise<void>((r) => { running++; most = Math.max(most, running); finish.push(() => { running--; r(); }); });
    const first = Array.from({ length: CALLS_PER_SERVER }, () => slots.run("s", work));
    const waiter = slots.run("s", work);
    await sleep(0);
    // The last holders finish one by one: the waiter is handed a place as the server could become idle.
    for (const f of finish.splice(0)) f();
    await sleep(0);
    // Newcomers meanwhile: they must share the same 4 places as the waiter.
    const more = Array.from({ length: CALLS_PER_SERVER + 2 }, () => slots.run("s", work));
    await sleep(0);
    expect(running).toBe(CALLS_PER_SERVER);
    while (finish.length > 0) {
      finish.splice(0).forEach((f) => f());
      await sleep(0);
    }
    await Promise.all([...first, waiter, ...more]);
    expect(most).toBe(CALLS_PER_SERVER);
  });
});

describe("Slots, with keys and low work (calls to an API that stopped answering)", () => {
  it("holds: low work never holds more than lowMax places, and work that is not low, behind it in line, goes first", async () => {
    const slots = new Slots(5, 4);
    let low = 0;
    let mostLow = 0;
    const finish: (() => void)[] = [];
    const order: string[] = [];
    const job = (name: string, isLow: boolean) =>
      slots.run(
        () =>
          new Promise<void>((r) => {
            order.push(name);
            if (isLow) (low++, (mostLow = Math.max(mostLow, low)));
            finish.push(() => (isLow && low--, r()));
          }),
        Infinity,
        { key: isLow ? "hanging" : name, low: () => isLow },
      );
    const runs = [...Array.from({ length: 8 }, (_, i) => job(`low${i}`, true)), job("healthy", false)];
    await sleep(0);
    expect(order).toEqual(["low0", "low1", "low2", "low3", "healthy"]);
    while (finish.length > 0) {
      finish.splice(0).forEach((f) => f());
      await sleep(0);
    }
    await Promise.all(runs);
    expect(mostLow).toBe(4);
    expect(slots.idle).toBe(true);
    expect(await freePlaces(slots)).toBe(5);
  });

  it("holds: work whose key has nothing running goes before more work of a key that has (one place at a time per busy key)", async () => {
    const slots = new Slots(2);
    const finish: (() => void)[] = [];
    const order: string[] = [];
    const job = (name: string, key: string) =>
      slots.run(() => new Promise<void>((r) => (order.push(name), finish.push(r))), Infinity, { key });
    const runs = [job("a1", "a"), job("a2", "a"), job("a3", "a"), job("a4", "a"), job("b1", "b")];
    await sleep(0);
    expect(order).toEqual(["a1", "a2"]);
    finish.shift()!(); // a1 done: b1 (its key idle) goes before a3
    await sleep(0);
    expect(order).toEqual(["a1", "a2", "b1"]);
    while (finish.length > 0) {
      finish.splice(0).forEach((f) => f());
      await sleep(0);
    }
    await Promise.all(runs);
    expect(order).toEqual(["a1", "a2", "b1", "a3", "a4"]);
    expect(slots.idle).toBe(true);
  });

  it("holds: a low waiter whose deadline passes while skipped leaves the line; counts stay right", async () => {
    const slots = new Slots(2, 1);
    const finish: (() => void)[] = [];
    const hold = (low: boolean, deadline = Infinity) =>
      slots.run(() => new Promise<void>((r) => finish.push(r)), deadline, { key: low ? "x" : undefined, low: () => low });
    const first = hold(true);
    const skipped = hold(true, Date.now() + 20); // low share full: waits, a place free
    await sleep(40);
    expect(await skipped).toBeNull();
    const other = hold(false);
    await sleep(0);
    expect(finish).toHaveLength(2);
    finish.splice(0).forEach((f) => f());
    await Promise.all([first, other]);
    expect(slots.idle).toBe(true);
    expect(await freePlaces(slots)).toBe(2);
  });
});
