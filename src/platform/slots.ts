/**
 * At most `size` pieces of work at a time; the others wait their turn, in
 * order. A place that frees goes straight to the first in line, so work that
 * arrives later never overtakes work already waiting.
 */
export class Slots {
  private active = 0;
  private waiters: ((granted: boolean) => void)[] = [];

  constructor(private size: number) {}

  /** Nothing running, nothing waiting. */
  get idle(): boolean {
    return this.active === 0 && this.waiters.length === 0;
  }

  /** Runs `work` in a place; null if none was free by `deadline` (none: waits its turn however long). */
  async run<T>(work: () => Promise<T>, deadline = Infinity): Promise<T | null> {
    if (!(await this.take(deadline))) return null;
    try {
      return await work();
    } finally {
      this.release();
    }
  }

  private take(deadline: number): Promise<boolean> | boolean {
    if (this.active < this.size) {
      this.active++;
      return true;
    }
    const left = deadline - Date.now();
    if (left <= 0) return false;
    return new Promise<boolean>((resolve) => {
      const waiter = (granted: boolean) => {
        clearTimeout(timer);
        resolve(granted);
      };
      // A waiter whose time ran out leaves the line: the next place goes to one still waiting.
      const timer =
        left === Infinity
          ? undefined
          : setTimeout(() => {
              const i = this.waiters.indexOf(waiter);
              if (i >= 0) this.waiters.splice(i, 1);
              resolve(false);
            }, left);
      this.waiters.push(waiter);
    });
  }

  private release(): void {
    const next = this.waiters.shift();
    if (next) next(true);
    else this.active--;
  }
}
