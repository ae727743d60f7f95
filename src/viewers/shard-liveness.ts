/**
 * A viewer shard's word with the server registry about its server's processes (src/server/registry.ts):
 * announcing a process before its first viewer is trusted, speaking for a process the registry may take for
 * silent, asking where all of them stand (one round at a time, shared), and applying what it answers or
 * notices: a silent server's viewers suspended and back, a restarted or timed-out process's viewers fenced.
 * The shard's copy of the processes is src/viewers/processes.ts.
 */
import { serverTimeoutMs } from "../config";
import type { Env } from "../env";
import { nested, withRetry } from "../platform/retry";
import { serverRegistry } from "../object-access";
import type { ProcessStatus, NoticeAnswer } from "../server/registry";
import { endingsOf } from "../server/endings";
import type { SessionId } from "../srs/hook";
import { fenceEnd, type ShardActivity } from "../usage/shard-activity";
import { floorTo } from "../usage/book";
import type { ViewerCounts } from "./counts";
import type { ShardProcesses } from "./processes";
import type { ShardLeases } from "./shard-leases";
import type { ShardLog } from "./shard-log";
import type { ShardTables } from "./tables";
import { logError } from "./shard-log";

/** What the liveness of its processes needs of the viewer shard. */
export interface LivenessHost {
  readonly env: Env;
  readonly tables: ShardTables;
  readonly processes: ShardProcesses;
  readonly counts: ViewerCounts;
  readonly log: ShardLog;
  readonly activity: ShardActivity;
  readonly leases: Pick<ShardLeases, "giveBackIfTight" | "coverHealed">;
  serverId(): string;
  /** Seats of ended viewers given back (src/viewers/seats.ts). */
  releaseSeats(streamKey: string, sub: string, sessions: SessionId[]): void;
  /** Runs an end of many viewers at once, their seats given back in one call per seat object. */
  withSeatsBatched<T>(end: () => T): T;
}

export class ShardLiveness {
  /** The registry's answer on its way (refresh): the hooks that arrive meanwhile share it. */
  private round: Promise<void> | null = null;

  constructor(private readonly host: LivenessHost) {}

  /**
   * Makes sure the session's process may be trusted. A process seen for the
   * first time is announced to the registry (one call per process, not per
   * viewer): that is how a restart of a server without heartbeats takes
   * effect, how a candidate is registered, and how a replaced process is
   * refused. A process this shard holds suspended is back: the registry says
   * what of it survived. False: the process was replaced (4006).
   */
  async knowProcess(session: SessionId): Promise<boolean> {
    const { processes } = this.host;
    const id = session.serviceId;
    if (processes.isReplaced(id)) return false;
    const p = processes.get(id);
    if (p && !p.suspended) {
      if (processes.mayThinkSilent(id, serverTimeoutMs(this.host.env))) await this.speakFor(session, "start");
      return !processes.isReplaced(id);
    }
    if (p) {
      await this.refresh(session);
    } else {
      await this.speakFor(session, "start");
      if (processes.isReplaced(id)) return false;
      processes.add(id);
      // A new process of a server whose other processes are known here may be its restart (by this very hook,
      // on a server without heartbeats): the shard learns at once which it replaced, whose viewers end and
      // whose late hooks are refused (4006), also if they hold no viewers here (a refused one, a stopped one).
      if (processes.ids().some((other) => other !== id)) await this.refresh(session);
    }
    if (processes.isReplaced(id)) return false;
    const now = processes.get(id);
    if (now?.suspended) this.setSuspended(id, false, now.seq - 1, "its server is heard from again");
    return true;
  }

  /**
   * Tells the registry that a process is heard from (src/server/registry.ts
   * shardHeard): a start announces a process (and is how "retired" is learnt);
   * either kind brings a silent server back.
   */
  async speakFor(session: SessionId, kind: "start" | "stop"): Promise<void> {
    const answer = await nested("registry", () => serverRegistry(this.host.env, session.serverId), (r) => r.shardHeard(session.serverId, session.serviceId, kind));
    this.host.processes.heardFrom(session.serviceId, answer.lastHeartbeat);
    if (answer.epoch === "retired") this.host.processes.markReplaced(session.serviceId);
  }

  /** Asks the registry where this server's processes stand; shared by the hooks that arrive meanwhile. */
  async refresh(witness: SessionId | null): Promise<void> {
    if (this.round && !witness) return this.round;
    if (this.round) await this.round.catch(() => {});
    const round = this.askRegistry(witness);
    this.round = round;
    try {
      await round;
    } finally {
      if (this.round === round) this.round = null;
    }
  }

  private async askRegistry(witness: SessionId | null): Promise<void> {
    const serverId = this.host.serverId();
    const processes = this.host.processes.ids().map((serviceId) => ({ serverId, serviceId }));
    if (processes.length === 0 || !serverId) return;
    try {
      const answers = await withRetry(
        () => serverRegistry(this.host.env, this.host.serverId()),
        (r) => r.liveness(processes, witness ? { serverId: witness.serverId, serviceId: witness.serviceId } : undefined),
      );
      this.host.withSeatsBatched(() => {
        for (const a of answers) this.apply(a);
      });
    } catch (err) {
      // An unreachable registry changes nothing: a ghost is better than ending or un-blocking a real session.
      logError("liveness check failed", "", err);
    }
  }

  /** What the registry knows about one of this server's processes (a notice, or the answer to a question). */
  apply(news: ProcessStatus): NoticeAnswer {
    const { processes, counts } = this.host;
    const id = news.serviceId;
    let ended = 0;
    let kept = 0;
    // Streams whose slots this notice may free: only those give back (a tight shard keeps the share a recall left it).
    let touched = counts.streamsOf(id);
    if (news.cutoff > 0) {
      if (news.replaced) processes.markReplaced(id);
      const freed = new Set<string>();
      // Those of an earlier end still untold (SESSION_GRACE_S before a restart) first, at its own last moment alive.
      for (const e of endingsOf(news)) {
        for (const streamKey of touched) {
          const n = this.fenceViewers(streamKey, id, e.cutoff, fenceEnd(e.lastAlive), e.why);
          if (n > 0) freed.add(streamKey);
          ended += n;
        }
      }
      touched = touched.filter((k) => freed.has(k));
      kept = counts.streamsOf(id).length;
      if (kept === 0) {
        // The registry drops its index entry for the process: its next viewer here is checked again.
        processes.forget(id);
      } else {
        // Viewers admitted after the cutoff (the process came back before this notice) stay, and are
        // suspended by its next silence like any other: the registry keeps the index entry (`kept`).
        const p = processes.get(id);
        if (p && p.seq < news.seq) this.setSuspended(id, news.status !== "live", news.seq, news.why);
      }
    } else if (processes.knows(id)) {
      const p = processes.get(id)!;
      const wasSuspended = p.suspended;
      if (p.seq < news.seq) this.setSuspended(id, news.status !== "live", news.seq, news.why);
      if (wasSuspended || !p.suspended) touched.length = 0;
    }
    for (const streamKey of touched) this.host.leases.giveBackIfTight(streamKey);
    this.host.leases.coverHealed();
    return { ended, kept };
  }

  /** Ends the process's viewers of the stream admitted up to `cutoff`, at `end` (their server's last moment alive). */
  private fenceViewers(streamKey: string, serviceId: string, cutoff: number, end: number, why: string): number {
    const { activity, counts } = this.host;
    const gone = this.host.tables.sql.exec<{ client_id: string; sub: string; seat: number; since: number }>(
      "DELETE FROM viewers WHERE stream_key = ? AND service_id = ? AND since <= ? RETURNING client_id, sub, seat, since", streamKey, serviceId, cutoff,
    ).toArray();
    if (gone.length === 0) return 0;
    for (const g of gone) activity.viewerEnded(streamKey, g.since, end);
    // Nor are they a peak after it: the counts since then are taken back (before the count held now is told).
    if (end < Date.now()) {
      // Each from when it was gone (its admission, if after the heartbeat), a second's worth at a time.
      for (const [, ended] of groupBy(gone, (g) => String(floorTo(Math.max(g.since, end), 1000)))) {
        activity.usage.retract(streamKey, ended.length, Math.min(...ended.map((g) => Math.max(g.since, end))));
      }
    }
    for (const [sub, clients] of groupBy(gone.filter((g) => g.seat === 1), (g) => g.sub)) {
      this.host.releaseSeats(streamKey, sub, clients.map((g) => ({ serverId: this.host.serverId(), serviceId, clientId: g.client_id })));
    }
    counts.add(streamKey, serviceId, -gone.length);
    this.host.log.record(streamKey, "fence", "", "", "end", `ended ${gone.length} viewer(s) of server ${this.host.serverId()} (service ${serviceId}): ${why}`);
    return gone.length;
  }

  /** Stores a process's status; a change is a line in the log of each stream it has viewers of. */
  private setSuspended(id: string, suspended: boolean, seq: number, why: string): void {
    const { processes, counts } = this.host;
    if (!processes.setSuspended(id, suspended, seq)) return;
    for (const streamKey of counts.streamsOf(id)) {
      const n = counts.ofProcess(streamKey, id);
      const what = suspended ? "suspended" : "count again";
      this.host.log.record(streamKey, suspended ? "suspend" : "resume", "", "", suspended ? "suspend" : "resume", `${n} viewer(s) of server ${this.host.serverId()} (service ${id}) ${what}: ${why}`);
    }
  }
}

function groupBy<T>(items: T[], key: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) groups.set(key(item), [...(groups.get(key(item)) ?? []), item]);
  return groups;
}
