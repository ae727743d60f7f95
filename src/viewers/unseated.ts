/**
 * Seats for the sessions a viewer shard admitted before their stream limited sessions per viewer
 * (src/viewers/seats.ts). When a limit is set (or playAuth "token" comes back), those sessions
 * hold no seat: they take one in the background, so that they count from then on; else a viewer
 * watching on two screens when the limit was set would be admitted on a third. Nobody is ended:
 * the viewer's next on_play is refused until it is under the limit (or, with "replace", ends its
 * oldest sessions).
 *
 * The work is stored (a meta row per stream) before the seats are asked for and goes once they
 * are taken or no longer needed: a shard restarted meanwhile (a deploy) takes them from its stored
 * alarm, asking the stream for the policy it no longer knows. A take that fails is tried again
 * every SEAT_RETRY_MS.
 */
import type { Env } from "../env";
import { viewerSeats } from "../object-access";
import { withRetry, withTimeout } from "../platform/retry";
import type { SessionId } from "../srs/hook";
import type { ViewerPolicy } from "./lease";
import type { SeatAnswer } from "./seats";
import type { ShardTables } from "./tables";
import { logError } from "./shard-log";

/** A seat for such a session that could not be taken is tried again this long after. */
export const SEAT_RETRY_MS = 5_000;
/** One such seat is taken within this (else tried again). */
const SEAT_TAKE_TIMEOUT_MS = 5_000;
/** Their meta rows: this prefix, then the stream key. */
const META_KEY = "seat_retry\n";
/** Seats asked for at once. */
const TAKES_AT_ONCE = 50;

/** What the seats of unseated sessions need of their viewer shard. */
export interface UnseatedHost {
  env: Env;
  tables: ShardTables;
  serverId(): string;
  /** The policy the shard knows for the stream (undefined: none known, as after a restart). */
  policy(streamKey: string): ViewerPolicy | null | undefined;
  /** Asks the stream for its policy; the answer comes back through policyChanged. */
  askPolicy(streamKey: string): Promise<unknown>;
  /** The session is still live here: it now holds the seat taken for it (false: the seat goes back). */
  keepSeat(streamKey: string, session: SessionId): boolean;
  releaseSeats(streamKey: string, sub: string, sessions: SessionId[], grant?: string): void;
  armAlarm(at: number): void;
  waitUntil(work: Promise<unknown>): void;
}

type Unseated = { service_id: string; client_id: string; sub: string; since: number };

export class UnseatedSeats {
  /** Streams with a session limit whose sessions admitted here without a seat have taken one (or are taking it). */
  private seated = new Set<string>();
  /** Streams whose seats could not all be taken: the alarm tries again. */
  private retry = new Set<string>();
  /** Streams whose seats are stored as still to be taken (a meta row each). */
  private stored = new Set<string>();

  constructor(private readonly host: UnseatedHost) {}

  /** A stored meta row of the shard: one of these (after a restart, the alarm takes its seats). */
  loadRow(key: string): boolean {
    if (!key.startsWith(META_KEY)) return false;
    const streamKey = key.slice(META_KEY.length);
    this.retry.add(streamKey);
    this.stored.add(streamKey);
    return true;
  }

  /** Some seats wait for the alarm. */
  pending(): boolean {
    return this.retry.size > 0;
  }

  /**
   * The stream's policy as the shard learns it: one that limits sessions per viewer has the sessions
   * admitted here without a seat take one (once per stream while the limit lasts, and after a restart).
   */
  policyChanged(streamKey: string, policy: ViewerPolicy | null): void {
    if (!policy || policy.playAuth !== "token" || policy.maxSessionsPerViewer === null) {
      this.seated.delete(streamKey);
      this.done(streamKey);
      return;
    }
    if (this.seated.has(streamKey)) return;
    // Bounded (a busy shard is never evicted, and learns the policy of every stream it ever served): forgetting
    // costs only a look for sessions without a seat, which are then none.
    if (this.seated.size >= 10_000) this.seated.clear();
    this.seated.add(streamKey);
    const rows = this.host.tables.rows<Unseated>("SELECT service_id, client_id, sub, since FROM viewers WHERE stream_key = ? AND sub != '' AND seat = 0", streamKey);
    if (rows.length === 0) return this.done(streamKey);
    // Stored before the seats are asked for, not only once a take failed: a restart of the shard while they are
    // on their way (a deploy) would drop them, and the viewer would keep one screen more than the limit.
    this.store(streamKey);
    this.host.waitUntil(
      this.take(streamKey, rows).then(
        () => {
          // Taken: a retry still due from an earlier failure has nothing left to do (its stored row goes now).
          this.retry.delete(streamKey);
          this.done(streamKey);
        },
        (err) => this.failed(streamKey, err),
      ),
    );
  }

  /** The alarm: the seats to be tried again (the stored row stays until they are taken, or not needed). */
  async runDue(): Promise<void> {
    for (const streamKey of [...this.retry]) {
      this.retry.delete(streamKey);
      const policy = this.host.policy(streamKey);
      if (policy !== undefined) {
        this.policyChanged(streamKey, policy);
        continue;
      }
      // Not known here since a restart: the stream's answer sets it, and that takes the seats (policyChanged).
      try {
        await this.host.askPolicy(streamKey);
        // No answer set a policy (the stream is gone): nothing to take.
        if (this.host.policy(streamKey) === undefined) this.policyChanged(streamKey, null);
      } catch (err) {
        this.failed(streamKey, err);
      }
    }
  }

  /** The stream's seats are taken (or none are needed): its stored row goes. */
  private done(streamKey: string): void {
    if (this.retry.has(streamKey) || !this.stored.delete(streamKey)) return;
    this.host.tables.sql.exec("DELETE FROM meta WHERE key = ?", META_KEY + streamKey);
  }

  /** Seats not taken: tried again from the alarm (and by the next policy message); until then these sessions do not count. */
  private failed(streamKey: string, err: unknown): void {
    this.seated.delete(streamKey);
    this.retry.add(streamKey);
    this.store(streamKey);
    logError("seats not taken for sessions admitted before the limit", streamKey, err);
  }

  /** The stream's seats are to be taken: stored, with an alarm that takes them should the shard restart first. */
  private store(streamKey: string): void {
    if (!this.stored.has(streamKey)) {
      this.host.tables.prepare();
      this.host.tables.sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES (?, '')", META_KEY + streamKey);
      this.stored.add(streamKey);
    }
    this.host.armAlarm(Date.now() + SEAT_RETRY_MS);
  }

  private async take(streamKey: string, rows: Unseated[]): Promise<void> {
    let failed: unknown = null;
    for (let i = 0; i < rows.length; i += TAKES_AT_ONCE) {
      await Promise.all(
        rows.slice(i, i + TAKES_AT_ONCE).map(async (r) => {
          const session = { serverId: this.host.serverId(), serviceId: r.service_id, clientId: r.client_id };
          let seat: SeatAnswer;
          try {
            // No limit for these: the sessions exist already; the seat only makes them count. Dated from the
            // session's admission, not from now: "replace" ends a viewer's oldest sessions first (README).
            seat = await withTimeout(
              withRetry(() => viewerSeats(this.host.env, streamKey, r.sub), (s): Promise<SeatAnswer> =>
                s.take({ streamKey, sub: r.sub, session, limit: Number.MAX_SAFE_INTEGER, mode: "deny", since: r.since }),
              ),
              SEAT_TAKE_TIMEOUT_MS,
            );
          } catch (err) {
            failed = err;
            return;
          }
          // Ended meanwhile (it had no seat to give back then): the seat goes.
          if (!this.host.keepSeat(streamKey, session)) this.host.releaseSeats(streamKey, r.sub, [session], seat.ok ? seat.grant : undefined);
        }),
      );
    }
    if (failed) throw failed;
  }
}
