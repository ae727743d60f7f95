/**
 * At most `size` pieces of work at a time; the others wait their turn, in
 * order. A place that frees goes straight to the first in line, so work that
 * arrives later never overtakes work already waiting, with two exceptions for
 * work that names a `key` (an SRS API's address) and whether it is `low` (that
 * API stopped answering), both asked when a place frees:
 * - low work goes after all other work waiting, and holds at most `lowMax`
 *   places at once: calls to edges that hang never hold every place;
 * - work of a key with nothing running goes before work of a key that has
 *   some: a server with many calls waiting (each of which may hang 2 s before
 *   the server counts as low) takes one place at a time while others wait.
 */
export class Slots {
  private active = 0;
  private activeLow = 0;
  private running = new Map<string, number>();
  private waiters: Waiter[] = [];

  constructor(
    private size: number,
    private lowMax = size,
  ) {}

  /** Nothing running, nothing waiting. */
  get idle(): boolean {
    return this.active === 0 && this.waiters.length === 0;
  }

  /** Runs `work` in a place; null if none was free by `deadline` (none: waits its turn however long). */
  async run<T>(work: () => Promise<T>, deadline = Infinity, kind: WorkKind = {}): Promise<T | null> {
    const place = await this.take(deadline, kind);
    if (place === null) return null;
    try {
      return await work();
    } finally {
      this.release(place);
    }
  }

  /** The place taken (as low or not), or null when none came by `deadline`. */
  private take(deadline: number, kind: WorkKind): Promise<Place | null> | Place | null {
    if (this.waiters.length === 0 && this.fits(kind)) return this.occupy(kind);
    const left = deadline - Date.now();
    if (left <= 0) return null;
    return new Promise<Place | null>((resolve) => {
      const waiter: Waiter = {
        kind,
        grant: (place) => {
          clearTimeout(timer);
          resolve(place);
        },
      };
      // A waiter whose time ran out leaves the line: the next place goes to one still waiting.
      const timer =
        left === Infinity
          ? undefined
          : setTimeout(() => {
              const i = this.waiters.indexOf(waiter);
              if (i >= 0) this.waiters.splice(i, 1);
              resolve(null);
            }, left);
      this.waiters.push(waiter);
      // Those ahead may be low ones waiting for their share while a place is free.
      this.grantWaiting();
    });
  }

  private fits(kind: WorkKind): boolean {
    return this.active < this.size && (!kind.low?.() || this.activeLow < this.lowMax);
  }

  private occupy(kind: WorkKind): Place {
    const place = { low: !!kind.low?.(), key: kind.key };
    this.active++;
    if (place.low) this.activeLow++;
    if (place.key !== undefined) this.running.set(place.key, (this.running.get(place.key) ?? 0) + 1);
    return place;
  }

  private release(place: Place): void {
    this.active--;
    if (place.low) this.activeLow--;
    if (place.key !== undefined) {
      const n = this.running.get(place.key)! - 1;
      if (n > 0) this.running.set(place.key, n);
      else this.running.delete(place.key);
    }
    this.grantWaiting();
  }

  /**
   * Free places to those waiting, first in line first, but work that is not low before low work, and within
   * each, work of a key with nothing running before work of a key that has some (low work within lowMax).
   */
  private grantWaiting(): void {
    while (this.active < this.size) {
      let pick = -1;
      let best = Infinity;
      for (let i = 0; i < this.waiters.length && best > 0; i++) {
        const { kind } = this.waiters[i];
        const low = !!kind.low?.();
        if (low && this.activeLow >= this.lowMax) continue;
        const rank = (low ? 2 : 0) + (kind.key !== undefined && this.running.has(kind.key) ? 1 : 0);
        if (rank < best) (pick = i), (best = rank);
      }
      if (pick < 0) return;
      const [waiter] = this.waiters.splice(pick, 1);
      waiter.grant(this.occupy(waiter.kind));
    }
  }
}

/** What a piece of work is, for its turn: its key (work of one key shares turns), and whether it is low. */
export interface WorkKind {
  key?: string;
  low?: () => boolean;
}

interface Place {
  low: boolean;
  key: string | undefined;
}

interface Waiter {
  kind: WorkKind;
  grant: (place: Place) => void;
}
