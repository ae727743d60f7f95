/**
 * The last news (the registry's sequence number) applied to processes an
 * object forgot because it held nothing of them any more. A process seen
 * again starts from it, so older news that arrives late (a notice that timed
 * out on its way and was sent again meanwhile) changes nothing. In memory,
 * the FORGOTTEN_KEPT most recent: an object evicted since starts from
 * nothing, as before.
 */
const FORGOTTEN_KEPT = 10_000;

export class ForgottenProcesses {
  private seqs = new Map<string, number>();

  remember(key: string, seq: number): void {
    this.seqs.delete(key);
    this.seqs.set(key, seq);
    if (this.seqs.size > FORGOTTEN_KEPT) this.seqs.delete(this.seqs.keys().next().value!);
  }

  /** The last seq applied to a forgotten process, else -1 (none). */
  seqOf(key: string): number {
    return this.seqs.get(key) ?? -1;
  }
}
