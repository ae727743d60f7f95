/**
 * Keys remembered for a while with the moment each was marked (in an object's memory): the oldest are
 * forgotten first, and a key marked again moves to the end, so the map's order is the marks' order and
 * a mark costs a constant, however many keys a busy object (never evicted) sees.
 */
export class Recent<K> {
  private at = new Map<K, number>();

  constructor(private readonly keepMs: number) {}

  /** Whether the key was marked within keepMs of `now`. */
  has(key: K, now = Date.now()): boolean {
    const at = this.at.get(key);
    return at !== undefined && now - at < this.keepMs;
  }

  /** When the key was last marked (undefined: not remembered). */
  markedAt(key: K): number | undefined {
    return this.at.get(key);
  }

  mark(key: K, now = Date.now()): void {
    for (const [k, at] of this.at) {
      if (now - at < this.keepMs) break;
      this.at.delete(k);
    }
    this.at.delete(key);
    this.at.set(key, now);
  }

  delete(key: K): void {
    this.at.delete(key);
  }
}
