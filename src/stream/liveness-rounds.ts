/**
 * The stream's questions to the registry about the processes holding its
 * sessions (src/server/registry.ts liveness): before a refusal rests on
 * other sessions (they may be ghosts of a crashed, restarted or silent
 * server) or an admission rests on suspended ones (their server may have
 * just come back), and from the alarm's sweep. One round at a time, shared
 * by every hook that arrives while it runs.
 */
import type { Env } from "../env";
import { withRetry } from "../platform/retry";
import { serverRegistry } from "../object-access";
import { shardOf, type ProcessId, type ProcessStatus } from "../server/registry";
import type { SessionId } from "../srs/hook";
import type { SessionBook } from "./sessions";

/** A round of liveness questions to the registry, shared by the hooks that arrive while it runs. */
interface Round {
  done: Promise<void>;
  witness: string | null;
}

export class LivenessRounds {
  private round: Round | null = null;

  constructor(
    private env: () => Env,
    private sessions: () => SessionBook,
    private apply: (status: ProcessStatus) => void,
  ) {}

  /**
   * Asks the registry where every process holding sessions here stands, and
   * applies the answers. A hook arriving while a round runs shares it, unless
   * it brings news the round lacks (its server under another service_id: the
   * first sign of a restart). An unreachable registry changes nothing: a ghost
   * is better than ending or un-blocking a real session.
   */
  async refresh(hook: SessionId | null, news = false): Promise<void> {
    const witness = hook && (news || this.sessions().heldByOtherProcessOf(hook)) ? `${hook.serverId}\n${hook.serviceId}` : null;
    if (this.round && (witness === null || this.round.witness === witness)) return this.round.done;
    if (this.round) await this.round.done.catch(() => {});
    const round: Round = { witness, done: this.ask(hook) };
    this.round = round;
    try {
      await round.done;
    } finally {
      if (this.round === round) this.round = null;
    }
  }

  private async ask(hook: SessionId | null): Promise<void> {
    const byShard = new Map<number, ProcessId[]>();
    for (const p of this.sessions().heldProcesses()) {
      const shard = shardOf(p.serverId);
      byShard.set(shard, [...(byShard.get(shard) ?? []), p]);
    }
    const env = this.env();
    const asked = [...byShard].map(async ([shard, processes]) => {
      // The hook being decided goes to its own server's shard: it may be the first news of a restart.
      const witness = hook && shardOf(hook.serverId) === shard ? { serverId: hook.serverId, serviceId: hook.serviceId } : undefined;
      try {
        // Retried on a retryable platform error (src/platform/retry.ts): asking again changes nothing the first question did not.
        const answers = await withRetry(() => serverRegistry(env, processes[0].serverId), (registry) => registry.liveness(processes, witness));
        for (const a of answers) this.apply(a);
      } catch (err) {
        console.error(JSON.stringify({ error: "liveness check failed", server: processes[0].serverId, detail: String(err) }));
      }
    });
    await Promise.all(asked);
  }
}
