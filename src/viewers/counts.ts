/**
 * How many viewers a shard holds, per stream and per process, in memory (read
 * from the viewer rows when the shard starts): a lease decision reads these
 * counts, never the rows. A process's viewers count as live unless the
 * process is suspended (its server is silent).
 */
export class ViewerCounts {
  /** stream → service_id → viewers. */
  private counts = new Map<string, Map<string, number>>();

  constructor(
    private isSuspended: (serviceId: string) => boolean,
    /** Told every change: the stream and how many viewers of it the shard now holds, live and suspended. */
    private changed: (streamKey: string, held: number) => void,
  ) {}

  /** A count read from storage when the shard starts. */
  set(streamKey: string, serviceId: string, n: number): void {
    this.of(streamKey).set(serviceId, n);
  }

  add(streamKey: string, serviceId: string, by: number): void {
    const m = this.of(streamKey);
    const n = (m.get(serviceId) ?? 0) + by;
    if (n > 0) m.set(serviceId, n);
    else m.delete(serviceId);
    this.changed(streamKey, total(m));
    if (m.size === 0) this.counts.delete(streamKey);
  }

  /** Viewers of a stream that count (their process is not suspended). */
  live(streamKey: string): number {
    let n = 0;
    for (const [id, c] of this.counts.get(streamKey) ?? []) if (!this.isSuspended(id)) n += c;
    return n;
  }

  /** Viewers of a stream kept for a silent server. */
  suspended(streamKey: string): number {
    let n = 0;
    for (const [id, c] of this.counts.get(streamKey) ?? []) if (this.isSuspended(id)) n += c;
    return n;
  }

  /** One process's viewers of a stream. */
  ofProcess(streamKey: string, serviceId: string): number {
    return this.counts.get(streamKey)?.get(serviceId) ?? 0;
  }

  /** The streams a process has viewers of. */
  streamsOf(serviceId: string): string[] {
    return [...this.counts].filter(([, m]) => (m.get(serviceId) ?? 0) > 0).map(([k]) => k);
  }

  /** Every viewer session held, of every stream. */
  total(): number {
    let n = 0;
    for (const m of this.counts.values()) n += total(m);
    return n;
  }

  /** Each stream's viewers held, live and suspended. */
  held(): Map<string, number> {
    return new Map([...this.counts].map(([k, m]) => [k, total(m)]));
  }

  private of(streamKey: string): Map<string, number> {
    let m = this.counts.get(streamKey);
    if (!m) {
      m = new Map();
      this.counts.set(streamKey, m);
    }
    return m;
  }
}

function total(byProcess: Map<string, number>): number {
  let n = 0;
  for (const c of byProcess.values()) n += c;
  return n;
}
