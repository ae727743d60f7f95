/**
 * The outbox of kicks in a registry shard (src/srs/kicks.ts says what a kick
 * is and who queues one): kicks wait here, stored, and the shard's alarm runs
 * those due, KICKS_PER_RUN at a time, retrying an edge whose API cannot be
 * reached with backoff for KICK_RETRY_MS. Each outcome goes to the stream's
 * decision log.
 */
import type { Env } from "../env";
import { streamObject, viewerShard } from "../object-access";
import { withRetry } from "../platform/retry";
import { addColumns } from "../platform/sql";
import { kickClient, type KickResult } from "./api";
import { CALLS_PER_SERVER, ServerCallSlots } from "./ghosts";
import { KICK_BACKOFF_FIRST_MS, KICK_BACKOFF_MAX_MS, KICK_RETRY_MS, REFUSED_KICKS_MAX, type Kick } from "./kicks";

/** Kicks run per alarm run (each one to three API calls of at most 2 s, one after the other). */
const KICKS_PER_RUN = 20;
/** Kicks of one server per run: two turns of its CALLS_PER_SERVER slots, so a slow edge does not hold a run for long. */
const KICKS_PER_SERVER_RUN = 2 * CALLS_PER_SERVER;

/** What the outbox needs of the registry: where each server's API is, and a record of whether a call to it worked. */
export interface KickServers {
  apiTarget(serverId: string, serviceId: string): { base: string; serverId: string; serviceId: string } | null;
  apiCalled(serverId: string, ok: boolean): void;
}

type DueKick = { server_id: string; service_id: string; client_id: string; stream_key: string; role: string; why: string; attempt: number; until: number; unless_admitted: number };

const kickId = (k: DueKick) => [k.server_id, k.service_id, k.client_id, k.stream_key, k.role].join("\n");

export class KickOutbox {
  /** At most CALLS_PER_SERVER kicks at a time go to one server (each makes its calls one after the other). */
  private slots = new ServerCallSlots();
  /** Kicks being tried: a run that overlaps another (the alarm's and one started by queueing) leaves them to it. */
  private trying = new Set<string>();

  constructor(
    private sql: SqlStorage,
    private env: Env,
    private servers: KickServers,
  ) {
    sql.exec(`
      CREATE TABLE IF NOT EXISTS kicks (
        server_id TEXT NOT NULL, service_id TEXT NOT NULL, client_id TEXT NOT NULL, stream_key TEXT NOT NULL, role TEXT NOT NULL,
        why TEXT NOT NULL, attempt INTEGER NOT NULL, next_at INTEGER NOT NULL, until INTEGER NOT NULL,
        PRIMARY KEY (server_id, service_id, client_id, stream_key, role)) WITHOUT ROWID;`);
    // unless_admitted: the kick of a refused client (Kick.unlessAdmitted).
    addColumns(sql, "kicks", { unless_admitted: "INTEGER NOT NULL DEFAULT 0" });
  }

  /** Queues kicks; returns when the first is due (null: none queued), for the registry's alarm. */
  queue(kicks: Kick[]): number | null {
    const now = Date.now();
    let first = Infinity;
    let refusedWaiting = -1;
    for (const k of kicks) {
      const at = now + Math.max(0, Math.min(k.delayMs ?? 0, KICK_BACKOFF_MAX_MS));
      const row = [k.serverId, k.serviceId, k.clientId, k.streamKey, k.role, k.why, at, at + KICK_RETRY_MS] as const;
      if (k.unlessAdmitted) {
        if (refusedWaiting < 0) refusedWaiting = this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM kicks WHERE unless_admitted = 1").one().n;
        if (refusedWaiting >= REFUSED_KICKS_MAX) {
          console.error(JSON.stringify({ error: "kick of a refused client not queued: too many waiting", server: k.serverId, client: k.clientId, stream: k.streamKey }));
          continue;
        }
        // Never in place of a kick already waiting for that client (an operator's, say): it stays as it is.
        const added = this.sql.exec(
          `INSERT INTO kicks (server_id, service_id, client_id, stream_key, role, why, attempt, next_at, until, unless_admitted) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, 1)
           ON CONFLICT DO NOTHING`,
          ...row,
        ).rowsWritten;
        if (added > 0) refusedWaiting++;
      } else {
        // An operator's kick replaces a refused client's kick of the same session: it is sent whatever happens to the client.
        this.sql.exec(
          `INSERT INTO kicks (server_id, service_id, client_id, stream_key, role, why, attempt, next_at, until, unless_admitted) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, 0)
           ON CONFLICT DO UPDATE SET why = excluded.why, next_at = excluded.next_at, until = excluded.until, unless_admitted = 0`,
          ...row,
        );
      }
      first = Math.min(first, at);
    }
    return first < Infinity ? first : null;
  }

  /** Runs the kicks that are due, KICKS_PER_RUN at most; each outcome goes to the stream's decision log. */
  async run(now: number): Promise<void> {
    const due = this.sql
      .exec<DueKick>(
        // Operators' kicks first: a flood of refused clients never holds one back. Then the servers take turns (each
        // server's kicks never tried before its retried ones): a flood of kicks waiting for one edge, whose API may be
        // down, does not hold back another edge's.
        `SELECT server_id, service_id, client_id, stream_key, role, why, attempt, until, unless_admitted FROM (
           SELECT *, ROW_NUMBER() OVER (PARTITION BY server_id ORDER BY unless_admitted, attempt, next_at) AS server_turn,
             ROW_NUMBER() OVER (PARTITION BY unless_admitted, server_id ORDER BY attempt, next_at) AS turn FROM kicks WHERE next_at <= ?)
         WHERE server_turn <= ? ORDER BY unless_admitted, turn, next_at LIMIT ?`,
        now, KICKS_PER_SERVER_RUN, KICKS_PER_RUN,
      )
      .toArray()
      .filter((k) => !this.trying.has(kickId(k)));
    for (const k of due) this.trying.add(kickId(k));
    await Promise.all(
      due.map(async (k) => {
        try {
          await this.attempt(k);
        } finally {
          this.trying.delete(kickId(k));
        }
      }),
    );
  }

  /** One try of one kick; the outcome to the stream's decision log, or a later try. */
  private async attempt(k: DueKick): Promise<void> {
    const target = this.servers.apiTarget(k.server_id, k.service_id);
    // A refused client admitted since, on any stream here (SRS forgot the refused session, the player came back with its id), keeps playing.
    // (A shard that cannot be asked: tried again like an edge that cannot be reached, never kicked blind.)
    const admitted =
      k.unless_admitted === 1
        ? await withRetry(() => viewerShard(this.env, k.server_id), (s) => s.holdsClient(k.service_id, k.client_id)).catch(() => null)
        : false;
    const result: KickResult | { outcome: "admitted" | "no api"; problem?: undefined } =
      admitted === null
        ? { outcome: "failed", problem: "viewer shard unreachable" }
        : admitted
          ? { outcome: "admitted" }
          : target
            ? (await this.slots.run(k.server_id, () => kickClient(this.env, target, k.client_id)))!
            : { outcome: "no api" };
    const outcome = result.outcome;
    if (target && admitted === false && outcome !== "unaddressable") this.servers.apiCalled(k.server_id, outcome !== "failed");
    const key = [k.server_id, k.service_id, k.client_id, k.stream_key, k.role] as const;
    if (outcome === "failed" && Date.now() < k.until) {
      const wait = Math.min(KICK_BACKOFF_MAX_MS, KICK_BACKOFF_FIRST_MS * 2 ** k.attempt);
      this.sql.exec(
        "UPDATE kicks SET attempt = attempt + 1, next_at = ? WHERE server_id = ? AND service_id = ? AND client_id = ? AND stream_key = ? AND role = ?",
        Date.now() + wait, ...key,
      );
      return;
    }
    this.sql.exec("DELETE FROM kicks WHERE server_id = ? AND service_id = ? AND client_id = ? AND stream_key = ? AND role = ?", ...key);
    const reason = {
      kicked: `kicked (${k.why})`,
      gone: `kick: the client was already gone (${k.why})`,
      // What stopped the last try: the edge unreachable, or what it answered (its credentials refused, another server...).
      failed: `kick failed: ${result.problem ?? "edge unreachable"} for ${KICK_RETRY_MS / 1000} s (${k.why})`,
      "no api": `kick failed: no SRS API for server ${k.server_id} (${k.why})`,
      unaddressable: `kick failed: client id ${JSON.stringify(k.client_id)} cannot be named in SRS's API (${k.why})`,
      admitted: `kick not sent: the client was admitted since (${k.why})`,
    }[outcome];
    console.log(JSON.stringify({ event: "kick", stream: k.stream_key, server: k.server_id, client: k.client_id, role: k.role, outcome: reason }));
    await withRetry(() => streamObject(this.env, k.stream_key), (s) => s.recordKick(k.server_id, k.client_id, reason)).catch(() => {});
  }

  /** When the next kick is due (null: none waits). */
  nextAt(): number | null {
    return this.sql.exec<{ at: number | null }>("SELECT MIN(next_at) AS at FROM kicks").one().at;
  }
}
