/**
 * The last news (the registry's sequence number) applied to processes an
 * object forgot because it held nothing of them any more. A process seen
 * again within FORGOTTEN_KEPT_MS starts from it, so older news that arrives
 * late (a notice that timed out on its way and was sent again meanwhile)
 * changes nothing. Kept in memory, only that long and only the FORGOTTEN_KEPT
 * most recent: news that late is not expected (a registry shard that forgot a
 * server, after SERVER_RETENTION_S, numbers its news from the clock when it
 * learns it again, so that news is newer anyway).
 */
const FORGOTTEN_KEPT_MS = 10 * 60_000;
const FORGOTTEN_KEPT = 10_000;

export class ForgottenProcesses {
  private seqs = new Map<string, { seq: number; at: number }>();

  remember(key: string, seq: number): void {
    this.seqs.delete(key);
    this.seqs.set(key, { seq, at: Date.now() });
    if (this.seqs.size > FORGOTTEN_KEPT) this.seqs.delete(this.seqs.keys().next().value!);
  }

  /** The last seq applied to a process forgotten within FORGOTTEN_KEPT_MS, else -1 (none). */
  seqOf(key: string): number {
    const f = this.seqs.get(key);
    if (!f) return -1;
    if (Date.now() - f.at < FORGOTTEN_KEPT_MS) return f.seq;
    this.seqs.delete(key);
    return -1;
  }
}
