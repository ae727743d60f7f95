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
import { apiCallSlots, kickClient, NOT_ASKED, NOT_SRS, TOO_SLOW, UNREACHABLE, type ApiTarget, type KickResult } from "./api";
import { CALLS_PER_SERVER, ServerCallSlots } from "./ghosts";
import { KICK_BACKOFF_FIRST_MS, KICK_BACKOFF_MAX_MS, KICK_RETRY_MS, REFUSED_KICKS_MAX, type Kick } from "./kicks";

/** Kicks run per alarm run (each one to three API calls of at most 2 s, one after the other). */
const KICKS_PER_RUN = 20;
/** Kicks of one server per run: two turns of its CALLS_PER_SERVER slots, so a slow edge does not hold a run for long. */
const KICKS_PER_SERVER_RUN = 2 * CALLS_PER_SERVER;

/** What the outbox needs of the registry: where each server's API is, and a record of whether a call to it worked. */
export interface KickServers {
  apiTarget(serverId: string, serviceId: string): ApiTarget | null;
  apiCalled(serverId: string, ok: boolean): void;
}

type KickKey = { server_id: string; service_id: string; client_id: string; stream_key: string; role: string };
type DueKick = KickKey & { why: string; attempt: number; until: number; unless_admitted: number; retry_ms: number };

const kickId = (k: KickKey) => [k.server_id, k.service_id, k.client_id, k.stream_key, k.role].join("\n");
/**
 * A kick's try (its one to three API calls of at most 2 s, and waits for call slots) is over well within this,
 * unless many calls to edges that hang are ahead of it for the shard's places (API_CALLS_IN_FLIGHT): the alarm
 * then looks again meanwhile, and leaves the kick to the run trying it.
 */
const TRYING_RECHECK_MS = 15_000;

export class KickOutbox {
  /** At most CALLS_PER_SERVER kicks at a time go to one server (each makes its calls one after the other). */
  private slots = new ServerCallSlots();
  /**
   * The registry shard's places for API calls, all servers together (its outbox is its only caller of the API): the runs
   * that overlap (the alarm's, those started by queueing) share them, and a call's 2 s start once it has one.
   */
  private apiCalls = apiCallSlots();
  /** Kicks being tried: a run that overlaps another (the alarm's and one started by queueing) leaves them to it. */
  private trying = new Set<string>();
  /** When each server was last heard from again: a try in flight then that fails goes again at once (serverBack). */
  private backAt = new Map<string, number>();

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
    addColumns(sql, "kicks", { unless_admitted: "INTEGER NOT NULL DEFAULT 0", retry_ms: `INTEGER NOT NULL DEFAULT ${KICK_RETRY_MS}` });
  }

  /**
   * The server is heard from again: its kicks waiting for a retry are due now, and one being tried at this
   * moment (against a frozen or cut-off edge each try waits out its 2 s) goes again at once if that try fails,
   * not after its backoff. Returns whether any are due now.
   */
  serverBack(serverId: string): boolean {
    const now = Date.now();
    for (const [id, at] of this.backAt) if (now - at > TRYING_RECHECK_MS) this.backAt.delete(id);
    this.backAt.set(serverId, now);
    return this.sql.exec("UPDATE kicks SET next_at = ? WHERE server_id = ? AND next_at > ?", now, serverId, now).rowsWritten > 0;
  }

  /** Queues kicks; returns when the first is due (null: none queued), for the registry's alarm. */
  queue(kicks: Kick[]): number | null {
    const now = Date.now();
    let first = Infinity;
    let refusedWaiting = -1;
    for (const k of kicks) {
      const at = now + Math.max(0, Math.min(k.delayMs ?? 0, KICK_BACKOFF_MAX_MS));
      const retryMs = k.retryForMs ?? KICK_RETRY_MS;
      const row = [k.serverId, k.serviceId, k.clientId, k.streamKey, k.role, k.why, at, at + retryMs, retryMs] as const;
      if (k.unlessAdmitted) {
        if (refusedWaiting < 0) refusedWaiting = this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM kicks WHERE unless_admitted = 1").one().n;
        if (refusedWaiting >= REFUSED_KICKS_MAX) {
          console.error(JSON.stringify({ error: "kick of a refused client not queued: too many waiting", server: k.serverId, client: k.clientId, stream: k.streamKey }));
          continue;
        }
        // Never in place of an operator's kick already waiting for that client: it stays as it is. A refused client's kick
        // waiting (its edge's API could not be reached, its backoff up to 30 s) is for an earlier session of that id, which SRS
        // let go since (it sent this on_play): this refusal's kick is a new one, due now, its backoff afresh.
        const added = this.sql.exec(
          `INSERT INTO kicks (server_id, service_id, client_id, stream_key, role, why, attempt, next_at, until, retry_ms, unless_admitted) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?, 1)
           ON CONFLICT DO UPDATE SET why = excluded.why, attempt = 0, next_at = MIN(next_at, excluded.next_at), until = MAX(until, excluded.until), retry_ms = excluded.retry_ms
           WHERE unless_admitted = 1`,
          ...row,
        ).rowsWritten;
        if (added > 0) refusedWaiting++;
      } else {
        // An operator's kick replaces a refused client's kick of the same session: it is sent whatever happens to the client.
        // A new kick (attempt 0): its backoff starts afresh and its first failure is told (kick-wait), not the replaced one's.
        this.sql.exec(
          `INSERT INTO kicks (server_id, service_id, client_id, stream_key, role, why, attempt, next_at, until, retry_ms, unless_admitted) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?, 0)
           ON CONFLICT DO UPDATE SET why = excluded.why, attempt = 0, next_at = excluded.next_at, until = excluded.until, retry_ms = excluded.retry_ms, unless_admitted = 0`,
          ...row,
        );
      }
      first = Math.min(first, at);
    }
    return first < Infinity ? first : null;
  }

  /** Runs the kicks that are due, KICKS_PER_RUN at most; each outcome goes to the stream's decision log. */
  async run(now: number, again = true): Promise<void> {
    const due = this.sql
      .exec<DueKick>(
        // Operators' kicks first: a flood of refused clients never holds one back. Then the servers take turns (each
        // server's kicks never tried before its retried ones): a flood of kicks waiting for one edge, whose API may be
        // down, does not hold back another edge's.
        `SELECT server_id, service_id, client_id, stream_key, role, why, attempt, until, unless_admitted, retry_ms FROM (
           SELECT *, ROW_NUMBER() OVER (PARTITION BY server_id ORDER BY unless_admitted, attempt, next_at) AS server_turn,
             ROW_NUMBER() OVER (PARTITION BY unless_admitted, server_id ORDER BY attempt, next_at) AS turn FROM kicks WHERE next_at <= ?)
         WHERE server_turn <= ? ORDER BY unless_admitted, turn, next_at LIMIT ?`,
        now, KICKS_PER_SERVER_RUN, KICKS_PER_RUN + this.trying.size,
      )
      .toArray()
      .filter((k) => !this.trying.has(kickId(k)))
      .slice(0, KICKS_PER_RUN);
    for (const k of due) this.trying.add(kickId(k));
    const replaced = await Promise.all(
      due.map(async (k) => {
        try {
          return await this.attempt(k);
        } finally {
          this.trying.delete(kickId(k));
        }
      }),
    );
    // A kick queued again while its client's earlier one was tried (an operator's) goes now, not at a later alarm.
    if (replaced.includes(true) && again) await this.run(Date.now(), false);
  }

  /** One try of one kick; the outcome to the stream's decision log, or a later try. True: the kick was queued again meanwhile. */
  private async attempt(k: DueKick): Promise<boolean> {
    const startedAt = Date.now();
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
            ? (await this.slots.run(k.server_id, () => kickClient(this.env, this.apiCalls, target, k.client_id)))!
            : { outcome: "no api" };
    const outcome = result.outcome;
    if (target && admitted === false && outcome !== "unaddressable") this.servers.apiCalled(k.server_id, outcome !== "failed");
    // The row as it was tried: a kick queued again meanwhile for the same client (an operator's in place of a refused
    // client's, say) replaced it, and is left for a later run, not deleted or delayed with this one.
    const tried = [k.server_id, k.service_id, k.client_id, k.stream_key, k.role, k.until, k.unless_admitted, k.why] as const;
    const sameRow = "server_id = ? AND service_id = ? AND client_id = ? AND stream_key = ? AND role = ? AND until = ? AND unless_admitted = ? AND why = ?";
    // Past the usual KICK_RETRY_MS (a kick kept for a long silence) it is tried every few minutes, the server's return
    // bringing it forward; only while the edge cannot be reached: one that answers (credentials refused...) is not waited for.
    const longer = Date.now() - (k.until - k.retry_ms) > KICK_RETRY_MS;
    // Not SRS's own answer (no connection, a timeout, a proxy or tunnel in front of a cut-off edge: 5xx, a page that is not SRS's).
    const unreachable = result.problem === undefined || [UNREACHABLE, TOO_SLOW, NOT_ASKED, NOT_SRS].includes(result.problem) || /^edge answered HTTP 5\d\d$/.test(result.problem);
    // Its server heard from again during this try: tried again at once, also past its deadline (it is reachable now).
    const heardSince = (this.backAt.get(k.server_id) ?? -Infinity) >= startedAt;
    if (outcome === "failed" && (Date.now() < k.until || heardSince) && (!longer || unreachable)) {
      const wait = heardSince ? 0 : longer ? KICK_RETRY_MS / 2 : Math.min(KICK_BACKOFF_MAX_MS, KICK_BACKOFF_FIRST_MS * 2 ** k.attempt);
      const replaced = this.sql.exec(`UPDATE kicks SET attempt = attempt + 1, next_at = ? WHERE ${sameRow}`, Date.now() + wait, ...tried).rowsWritten === 0;
      // Its first failure is told once (action "kick-wait"; the outcome comes later as "kick"): an operator watching the
      // decision log sees a kick that waits for its edge, not nothing until it lands or is given up.
      if (k.attempt === 0 && !replaced) {
        const line = `kick waiting: ${result.problem ?? "edge unreachable"}; tried again until ${new Date(k.until).toISOString()}, at once when the server is heard from again (${k.why})`;
        // In the Worker's logs too, as the outcome is: a deleted stream's decision log cannot be read (its kicks wait all the same).
        console.log(JSON.stringify({ event: "kick-wait", stream: k.stream_key, server: k.server_id, client: k.client_id, role: k.role, outcome: line }));
        await withRetry(() => streamObject(this.env, k.stream_key), (s) => s.recordKickWaiting(k.server_id, k.client_id, line)).catch(() => {});
      }
      return replaced;
    }
    const replaced = this.sql.exec(`DELETE FROM kicks WHERE ${sameRow}`, ...tried).rowsWritten === 0;
    const reason = {
      kicked: `kicked (${k.why})`,
      gone: `kick: the client was already gone (${k.why})`,
      // What stopped the last try: the edge unreachable, or what it answered (its credentials refused, another server...).
      failed: `kick failed: ${result.problem ?? "edge unreachable"} for ${longer && Date.now() < k.until ? `more than ${KICK_RETRY_MS / 1000}` : k.retry_ms / 1000} s (${k.why})`,
      "no api": `kick failed: no SRS API for server ${k.server_id} (${k.why})`,
      unaddressable: `kick failed: client id ${JSON.stringify(k.client_id)} cannot be named in SRS's API (${k.why})`,
      admitted: `kick not sent: the client was admitted since (${k.why})`,
    }[outcome];
    console.log(JSON.stringify({ event: "kick", stream: k.stream_key, server: k.server_id, client: k.client_id, role: k.role, outcome: reason }));
    // A publisher's outcome answers for the operators' actions that queued its kick; one whose row was replaced
    // meanwhile (an action queued it again) leaves them to the replacing row's, unless it let the client go.
    const answers = k.role === "publisher" && (!replaced || outcome === "kicked");
    await withRetry(() => streamObject(this.env, k.stream_key), (s) => s.recordKick(k.server_id, k.client_id, reason, answers ? { serviceId: k.service_id, kicked: outcome === "kicked" } : undefined)).catch(() => {});
    return replaced;
  }

  /**
   * When the next kick is due (null: none waits). One a run is trying, or of a server whose kicks a run is
   * trying, counts only from TRYING_RECHECK_MS on: that run re-arms the alarm when it is done, and the alarm must not fire again and again meanwhile
   * (if the object is evicted mid-try, the alarm then finds the kick still waiting).
   */
  nextAt(): number | null {
    let next: number | null = null;
    const tryingUntil = Date.now() + TRYING_RECHECK_MS;
    // A server with kicks being tried takes no more until those end (their run re-arms then): its other kicks wait too.
    const busy = new Set([...this.trying].map((id) => id.slice(0, id.indexOf("\n"))));
    for (const k of this.sql.exec<KickKey & { next_at: number }>("SELECT server_id, service_id, client_id, stream_key, role, next_at FROM kicks ORDER BY next_at")) {
      const at = busy.has(k.server_id) ? Math.max(k.next_at, tryingUntil) : k.next_at;
      if (next === null || at < next) next = at;
      if (at === k.next_at) break; // rows come in next_at order: none later is due earlier
    }
    return next;
  }
}
