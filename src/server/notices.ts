/**
 * The outbox of notices in a registry shard: every change of an SRS process's status (a silence, a
 * return, a restart, the end of SESSION_GRACE_S) is written here as one notice per stream on which
 * the process holds indexed sessions (and one for its server's viewer shard, which stands for all
 * its viewers), and the shard's alarm delivers them NOTICE_BATCH at a time, so that a restart of a
 * server that touched thousands of streams is answered at once and the counts operators see still
 * converge. A notice that fails waits, with backoff, so it never holds back the others; a delivered
 * end drops the index entries of the sessions it ended (src/server/registry.ts keeps the index).
 */
import type { Env } from "../env";
import { streamObject, viewerShard } from "../object-access";
import { withRetry, withTimeout } from "../platform/retry";
import { addColumns } from "../platform/sql";
import { VIEWER_SHARD_ENTRY } from "../viewers/lease";
import type { NoticeAnswer, ProcessStatus } from "./process-status";

/** Notices delivered per alarm run: bounded work, whatever the fleet size. */
export const NOTICE_BATCH = 50;
/** A notice that could not be delivered is retried this much later, then twice as late each time, up to NOTICE_RETRY_MAX_MS. */
const NOTICE_RETRY_MS = 5000;
const NOTICE_RETRY_MAX_MS = 60_000;

/** What the outbox needs of its registry shard. */
export interface NoticeHost {
  /** How long one delivery may take (ServerRegistry.noticeTimeoutMs). */
  timeoutMs(): number;
  armAlarm(at: number): void;
}

export class NoticeOutbox {
  /** Notices being delivered now (deliver), and their deliveries. */
  private delivering = new Map<string, Promise<NoticeAnswer>>();

  constructor(
    private sql: SqlStorage,
    private env: Env,
    private host: NoticeHost,
  ) {
    this.sql.exec(`
      CREATE TABLE IF NOT EXISTS notices (
        stream_key TEXT NOT NULL, server_id TEXT NOT NULL, service_id TEXT NOT NULL,
        kind TEXT NOT NULL, status TEXT NOT NULL, seq INTEGER NOT NULL, cutoff INTEGER NOT NULL, replaced INTEGER NOT NULL, why TEXT NOT NULL,
        UNIQUE (stream_key, server_id, service_id, kind));
    `);
    // due: not sent before (a notice that failed waits, with backoff, so it never holds back the others); failures: in a row.
    // early_*: an earlier end still pending when a later one came (ProcessStatus.earlier): its sessions keep their own end.
    addColumns(this.sql, "notices", {
      last_alive: "INTEGER NOT NULL DEFAULT 0",
      due: "INTEGER NOT NULL DEFAULT 0",
      failures: "INTEGER NOT NULL DEFAULT 0",
      early_cutoff: "INTEGER NOT NULL DEFAULT 0",
      early_last_alive: "INTEGER NOT NULL DEFAULT 0",
    });
  }

  /**
   * Queues a notice for every stream on which the process holds indexed
   * sessions. Per stream and process, the newest change of status replaces an
   * older one still pending; an end (cutoff > 0) is kept apart, so that a
   * return right after SESSION_GRACE_S cannot cancel it.
   */
  queue(
    server: { server_id: string; seq: number }, serviceId: string, status: ProcessStatus["status"], cutoff: number, replaced: boolean, why: string,
    lastAlive = 0, earlier?: ProcessStatus["earlier"],
  ): void {
    // Two ends merged (the first not delivered yet): the sessions of the first keep its end (early_*), the rest
    // end at the later one's. The pending end is the exact one (a restart's `earlier` may be a guess, for a
    // grace ended by the version before this one); of the same cutoff, the earlier moment. One early end is
    // kept: a third end merged before the first is delivered (a stream unreachable through two graces, days)
    // ends its sessions at the latest one's. (The SET expressions all read the row as it was.)
    this.sql.exec(
      `INSERT INTO notices (stream_key, server_id, service_id, kind, status, seq, cutoff, replaced, why, last_alive, early_cutoff, early_last_alive)
       SELECT DISTINCT stream_key, server_id, service_id, ?, ?, ?, ?, ?, ?, ?, ?, ? FROM client_streams WHERE server_id = ? AND service_id = ?
       ON CONFLICT (stream_key, server_id, service_id, kind) DO UPDATE SET
         status = excluded.status, seq = excluded.seq, cutoff = MAX(cutoff, excluded.cutoff), replaced = MAX(replaced, excluded.replaced), why = excluded.why,
         early_cutoff = CASE WHEN early_cutoff > 0 THEN early_cutoff WHEN cutoff > 0 AND cutoff < excluded.cutoff THEN cutoff
           WHEN excluded.early_cutoff > 0 THEN excluded.early_cutoff ELSE 0 END,
         early_last_alive = CASE WHEN early_cutoff > 0 THEN early_last_alive
           WHEN cutoff > 0 AND cutoff < excluded.cutoff THEN
             CASE WHEN cutoff = excluded.early_cutoff THEN MIN(last_alive, excluded.early_last_alive) ELSE last_alive END
           WHEN excluded.early_cutoff > 0 THEN excluded.early_last_alive ELSE 0 END,
         last_alive = CASE WHEN excluded.cutoff > cutoff THEN excluded.last_alive WHEN excluded.cutoff < cutoff THEN last_alive
           ELSE MAX(last_alive, excluded.last_alive) END,
         due = 0, failures = 0`,
      cutoff > 0 ? "end" : "status", status, server.seq, cutoff, replaced ? 1 : 0, why, lastAlive, earlier?.cutoff ?? 0, earlier?.lastAlive ?? 0,
      server.server_id, serviceId,
    );
    if (cutoff === 0) {
      // A status still pending for a stream the process no longer holds sessions on (ended meanwhile) is
      // brought up to date too: a stale "suspended" must not greet the process's next session there.
      this.sql.exec(
        "UPDATE notices SET status = ?, seq = ?, why = ?, due = 0, failures = 0 WHERE server_id = ? AND service_id = ? AND kind = 'status'",
        status, server.seq, why, server.server_id, serviceId,
      );
    }
    if (this.sql.exec("SELECT 1 FROM notices LIMIT 1").toArray().length > 0) this.host.armAlarm(Date.now());
  }

  /**
   * Sends up to NOTICE_BATCH notices that are due, oldest first (or, with
   * `shardServer`, every notice of that server's viewer shard, due or not). A
   * notice goes to a stream (its publishers) or, for the index entry that
   * stands for a viewer shard, to the server's shard (its viewers of every
   * stream). One that fails is due again later, with backoff: fifty streams
   * that cannot be reached never hold back the notices behind them.
   */
  async deliver(shardServer?: string): Promise<void> {
    type Notice = {
      stream_key: string; server_id: string; service_id: string; status: string; seq: number; cutoff: number; replaced: number; why: string;
      last_alive: number; failures: number; early_cutoff: number; early_last_alive: number;
    };
    const columns = "stream_key, server_id, service_id, status, seq, cutoff, replaced, why, last_alive, failures, early_cutoff, early_last_alive";
    const stored =
      shardServer === undefined
        ? this.sql.exec<Notice>(`SELECT ${columns} FROM notices WHERE due <= ? ORDER BY due, rowid LIMIT ?`, Date.now(), NOTICE_BATCH).toArray()
        : this.sql.exec<Notice>(`SELECT ${columns} FROM notices WHERE server_id = ? AND stream_key = ? ORDER BY rowid`, shardServer, VIEWER_SHARD_ENTRY.streamKey).toArray();
    // A notice on its way already (the alarm runs while a restart's heartbeat sends its shard's) is not sent
    // twice: this run waits for that delivery instead (the heartbeat is answered only once its shard knows).
    const id = (n: Notice) => `${n.stream_key}\n${n.server_id}\n${n.service_id}\n${n.seq}\n${n.cutoff}`;
    const elsewhere = stored.flatMap((n) => this.delivering.get(id(n)) ?? []);
    const batch = stored.filter((n) => !this.delivering.has(id(n)));
    const sends = batch.map((n) => {
      const news: ProcessStatus = {
        serverId: n.server_id,
        serviceId: n.service_id,
        status: n.status as ProcessStatus["status"],
        seq: n.seq,
        cutoff: n.cutoff,
        replaced: n.replaced === 1,
        why: n.why,
        lastAlive: n.last_alive,
        ...(n.early_cutoff > 0 ? { earlier: { cutoff: n.early_cutoff, lastAlive: n.early_last_alive } } : {}),
      };
      // Retried on a retryable platform error (src/platform/retry.ts): applyStatus ignores news older than it has applied.
      // Bounded: a notice stuck on its way would otherwise hold every later run that waits for it.
      const sent = withTimeout(
        n.stream_key === VIEWER_SHARD_ENTRY.streamKey
          ? withRetry(() => viewerShard(this.env, n.server_id), (shard) => shard.applyStatus(news))
          : withRetry(() => streamObject(this.env, n.stream_key), (stream) => stream.applyStatus(news)),
        this.host.timeoutMs(),
      );
      this.delivering.set(id(n), sent);
      return sent;
    });
    // (A delivery elsewhere that fails sets its notice's next try itself.)
    const [results] = await Promise.all([Promise.allSettled(sends), Promise.allSettled(elsewhere)]);
    for (const n of batch) this.delivering.delete(id(n));
    results.forEach((result, i) => {
      const n = batch[i];
      if (result.status === "rejected") {
        console.error(JSON.stringify({ error: "notice did not reach a stream", server: n.server_id, stream: n.stream_key, detail: String(result.reason) }));
        // Sent again after NOTICE_RETRY_MS, doubling up to NOTICE_RETRY_MAX_MS (unless a newer notice replaced it meanwhile: that one is due at once).
        const wait = Math.min(NOTICE_RETRY_MAX_MS, NOTICE_RETRY_MS * 2 ** Math.min(n.failures, 10));
        this.sql.exec(
          "UPDATE notices SET failures = failures + 1, due = ? WHERE stream_key = ? AND server_id = ? AND service_id = ? AND seq = ? AND cutoff = ?",
          Date.now() + wait, n.stream_key, n.server_id, n.service_id, n.seq, n.cutoff,
        );
        return;
      }
      // A newer notice for the same stream and process may have replaced this one meanwhile.
      this.sql.exec(
        "DELETE FROM notices WHERE stream_key = ? AND server_id = ? AND service_id = ? AND seq = ? AND cutoff = ?",
        n.stream_key, n.server_id, n.service_id, n.seq, n.cutoff,
      );
      // Entries up to the cutoff go, but those of sessions the object still holds (on_close, a restart, an operator find
      // them): a stream names its sessions (keptClients); a shard's one entry stands for all it keeps (kept > 0).
      const { kept, keptClients } = result.value;
      if (n.cutoff > 0 && (keptClients || kept === 0)) {
        this.sql.exec(
          "DELETE FROM client_streams WHERE stream_key = ? AND server_id = ? AND service_id = ? AND tracked_at <= ? AND client_id NOT IN (SELECT value FROM json_each(?))",
          n.stream_key, n.server_id, n.service_id, n.cutoff, JSON.stringify(keptClients ?? []),
        );
      }
    });
  }

  /** When the next notice is due (null: none waits). */
  nextDue(): number | null {
    return this.sql.exec<{ at: number | null }>("SELECT MIN(due) AS at FROM notices").one().at;
  }

  /** Whether a notice about the server waits. */
  pendingFor(serverId: string): boolean {
    return this.sql.exec("SELECT 1 FROM notices WHERE server_id = ? LIMIT 1", serverId).toArray().length > 0;
  }
}
