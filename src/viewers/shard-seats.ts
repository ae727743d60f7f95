/**
 * A viewer shard's side of seats (src/viewers/seats.ts: each viewer id's sessions on a stream, counted in one
 * place): the admissions under way here with a seat taken, where the sessions the seats object asks about stand,
 * ending a session for the viewer's newer one (and handing its slot over at a full stream), and giving seats back,
 * one call per seat object for a bulk end. The seats admitted sessions take after a limit is set are
 * src/viewers/unseated.ts.
 */
import type { Env } from "../env";
import { KeptAnswers } from "../platform/kept-answers";
import { withRetry, withTimeout } from "../platform/retry";
import { viewerSeats } from "../object-access";
import type { SessionId } from "../srs/hook";
import { seatBucket } from "./lease";
import type { SeatState } from "./seats";
import type { ViewerCounts } from "./counts";
import type { PlayRequest } from "./admission";
import type { EndCause } from "./shard";
import type { ShardGhosts } from "./shard-ghosts";
import type { ShardLeases } from "./shard-leases";
import type { ShardLiveness } from "./shard-liveness";
import type { ShardTables } from "./tables";
import { logError } from "./shard-log";

/** A seat's hand-off waits at most this long for its stream's message lock (the seats object waits 2 s for the answer). */
const HAND_OFF_LOCK_WAIT_MS = 1_000;
/** How long a seat's question waits for the registry's word on its sessions' servers. */
const SEAT_LIVENESS_WAIT_MS = 300;

/** A viewer session's key here (its stream, process and client id): of its row, its seat, its pending admission. */
export function seatKey(streamKey: string, session: SessionId): string {
  return `${streamKey}\n${session.serviceId}\n${session.clientId}`;
}

/** What the seats need of their viewer shard. */
export interface SeatsHost {
  readonly env: Env;
  readonly tables: ShardTables;
  readonly counts: Pick<ViewerCounts, "live">;
  readonly leases: ShardLeases;
  readonly ghosts: Pick<ShardGhosts, "enabled" | "goneAmong" | "endGone">;
  readonly liveness: Pick<ShardLiveness, "refresh">;
  /** Answers of the calls that end sessions by hand, for their retries. */
  readonly kept: KeptAnswers;
  isSuspended(serviceId: string): boolean;
  serverId(): string;
  /** The session is a viewer here (live or suspended). */
  isViewing(streamKey: string, session: SessionId): boolean;
  /** Ends a viewer session here (`keepSlot`: its slot is not given back). */
  endViewer(streamKey: string, session: SessionId, cause: EndCause, keepSlot?: boolean): number;
  waitUntil(work: Promise<unknown>): void;
}

export class ShardSeats {
  /**
   * Viewers being admitted with a seat taken (src/viewers/seats.ts): they count as live when the seats
   * object asks; `cancelled` when it ended the session meanwhile (onExtraViewerSession "replace").
   */
  private pending = new Map<string, { hooks: number; cancelled: string | null }>();
  /** The on_play hooks waiting for a seat here, by hook id: the seats object asks whether each still stands (hookLive). */
  private hooks = new Map<string, PlayRequest>();
  /** While a bulk end runs (batched): the seats it frees, per seat object. */
  private batch: Map<string, { streamKey: string; sub: string; releases: { sub: string; sessions: SessionId[] }[] }> | null = null;
  /** A seat's hand-off messages on their way to the stream, by the seats object's call id: a retry of the call waits for its attempt's. */
  private handing = new Map<string, Promise<boolean>>();

  constructor(private readonly host: SeatsHost) {}

  // --- the admissions under way with a seat -----------------------------------------------------

  /** An on_play asks for a seat for the session `key` (`first`: its first ask, counted once per hook). */
  asking(key: string, first: boolean): void {
    const entry = this.pending.get(key) ?? { hooks: 0, cancelled: null };
    // Once per hook (asked again after a lowered limit, it is still the one hook the finally counts).
    if (first) entry.hooks++;
    this.pending.set(key, entry);
  }

  /** The on_play `req` waits for a seat here (the seats object asks whether it still stands). */
  hookWaits(req: PlayRequest): void {
    this.hooks.set(req.hookId, req);
  }

  /** The on_play waiting under that hook id, if it still waits. */
  waitingHook(hookId: string): PlayRequest | undefined {
    return this.hooks.get(hookId);
  }

  /** The on_play no longer waits for a seat. */
  hookDone(hookId: string): void {
    this.hooks.delete(hookId);
  }

  /** A hook that asked for the session's seat is done. */
  askDone(key: string): void {
    const entry = this.pending.get(key);
    if (entry && --entry.hooks === 0) this.pending.delete(key);
  }

  /** The session is being admitted with a seat. */
  isAdmitting(key: string): boolean {
    return this.pending.has(key);
  }

  /** Why the seats object ended the session while it was being admitted (null, undefined: it did not). */
  cancelled(key: string): string | null | undefined {
    return this.pending.get(key)?.cancelled;
  }

  // --- the seats object's questions -------------------------------------------------------------

  /** Where each of these sessions stands here: being admitted or admitted (live), of a silent server (suspended), or gone. */
  async stateOf(streamKey: string, sessions: SessionId[], askApi: boolean): Promise<SeatState[]> {
    // The seat object is about to refuse a viewer, or end a session, on this answer (a seat is contested: rare):
    // whether their server is silent is the registry's word, not what its notices have told this shard so far
    // (one may be on its way), as for a refusal under the cap. An unreachable registry leaves the shard's view.
    // Briefly: the seat object waits 2 s for this whole answer (ghost checks included); a slow registry leaves the shard's view.
    if (sessions.some((x) => this.host.isViewing(streamKey, x))) await withTimeout(this.host.liveness.refresh(null), SEAT_LIVENESS_WAIT_MS).catch(() => {});
    const state = (session: SessionId): SeatState => {
      if (this.pending.has(seatKey(streamKey, session))) return "live";
      if (!this.host.isViewing(streamKey, session)) return "gone";
      return this.host.isSuspended(session.serviceId) ? "suspended" : "live";
    };
    // A refusal is about to rest on the live ones: they may be ghosts of lost on_stop events, which the server's
    // SRS API no longer has (as for a publisher, or a viewer under a cap); else a viewer whose on_stop was lost
    // stayed locked out until its server restarted. Bounded (the seat object waits 2 s for this answer).
    // Only when the seat object says a refusal rests on them (`askApi`): never for an admission.
    const live = sessions.filter((x) => state(x) === "live" && !this.pending.has(seatKey(streamKey, x)));
    if (askApi && this.host.ghosts.enabled && live.length > 0) {
      const gone = await this.host.ghosts.goneAmong(streamKey, live);
      this.host.ghosts.endGone(streamKey, gone, (g) => this.pending.has(seatKey(streamKey, g)));
    }
    return sessions.map(state);
  }

  /** endSeat (src/viewers/shard.ts): ends a viewer session for the seats object, handing its slot to `handOffFor` if given. */
  async end(streamKey: string, session: SessionId, why: string, callId?: string, handOffFor?: SessionId): Promise<boolean | "kept"> {
    const { kept, leases } = this.host;
    if (handOffFor === undefined) return kept.once(callId, () => this.endNow(streamKey, session, why));
    /** Whether this attempt ended it (not an earlier attempt of the same call, whose answer is kept). */
    let endedNow = false;
    const end = () =>
      kept.once<boolean | "kept">(callId, () => {
        endedNow = true;
        return this.endHandingOff(streamKey, session, why, handOffFor);
      }, (a) => a !== true);
    if (handOffFor.serverId === (this.host.serverId() || session.serverId)) return end();
    // Another edge: ended only with the stream's message lock held, so that the slot's message leaves at once, before
    // the seats object's answer lets the newer session's shard ask for it (a retry of this call, its first answer
    // lost, waits for the first attempt's message behind the lock). A lock busy too long (a message of this shard on
    // its way for a second): nobody ends, the newer session is refused for the cap ("kept").
    // A retry whose first attempt's message is on its way waits for it (the lock, which that attempt holds, may not come in time).
    const first = callId === undefined ? undefined : this.handing.get(callId);
    if (first) {
      await first;
      return kept.once<boolean | "kept">(callId, () => "kept", () => true);
    }
    const done = await leases.locked(streamKey, HAND_OFF_LOCK_WAIT_MS, async () => {
      const answer = end();
      // The stream has moved the slot when this returns; a message that did not arrive moved nothing: the newer
      // session finds no slot and is refused for the cap.
      if (answer === true && endedNow) {
        const sending = leases.sendHandOff(streamKey, handOffFor.serverId);
        if (callId !== undefined) {
          this.handing.set(callId, sending);
          void sending.finally(() => this.handing.delete(callId));
        }
        await sending;
      }
      return answer;
    });
    if (done !== null) return done;
    const late = callId === undefined ? undefined : this.handing.get(callId);
    if (late) await late;
    return kept.once<boolean | "kept">(callId, () => "kept", () => true);
  }

  /** The synchronous part of endSeat's hand-off: ends the session if its slot can go to `newer`'s edge. */
  private endHandingOff(streamKey: string, session: SessionId, why: string, newer: SessionId): boolean | "kept" {
    const { leases } = this.host;
    if (!this.host.isViewing(streamKey, session)) {
      // Still being admitted (the viewer's screen before, itself perhaps on a slot handed to it): it holds no slot of its
      // own to hand over, and cancelled it would leave the viewer no screen at all. It goes on; the newer one is refused
      // for the cap. Gone: nothing to end.
      if (this.pending.has(seatKey(streamKey, session))) return "kept";
      return this.endNow(streamKey, session, why);
    }
    if (this.host.isSuspended(session.serviceId) || !leases.canHandOff(streamKey)) return "kept";
    const pending = this.pending.get(seatKey(streamKey, session));
    if (pending) pending.cancelled = why;
    // Its slot stays in the lease (keepSlot) for the newer session: here, or through the stream on another edge.
    this.host.endViewer(streamKey, session, { action: "seat", reason: why }, true);
    if (newer.serverId !== (this.host.serverId() || session.serverId)) return true;
    // The same edge: the slot is reserved here for the newer session's admission, which is under way (else it goes
    // back as any freed slot): no other viewer arriving here meanwhile takes it.
    const key = seatKey(streamKey, newer);
    if (this.pending.has(key)) leases.reserve(key, streamKey);
    else leases.giveBackIfTight(streamKey);
    return true;
  }

  private endNow(streamKey: string, session: SessionId, why: string): boolean {
    const { counts, leases } = this.host;
    const pending = this.pending.get(seatKey(streamKey, session));
    if (pending) pending.cancelled = why;
    // A session both live and pending (a repeated on_play of it still running) ends too: its seat is gone.
    // Its slot stays here while another viewer of the stream is being admitted here (the newer session
    // it makes way for, on the same edge, counts on that slot); else it goes back as usual.
    const admitting = [...this.pending.keys()].some((k) => k.startsWith(`${streamKey}\n`));
    const live = counts.live(streamKey);
    const ended = this.host.endViewer(streamKey, session, { action: "seat", reason: why }, admitting) > 0;
    // Only the slots of the admissions under way stay: the ended session's own (if it counted) goes back to a tight
    // stream (it may have covered it over a lowered cap).
    if (admitting && counts.live(streamKey) < live) leases.giveBackOneIfTight(streamKey);
    return ended;
  }

  // --- seats kept and given back -----------------------------------------------------------------

  /** The session is live here: it holds the seat just taken for it (false: it is not, the seat goes back). */
  keep(streamKey: string, session: SessionId): boolean {
    if (!this.host.isViewing(streamKey, session)) return false;
    this.host.tables.sql.exec("UPDATE viewers SET seat = 1 WHERE stream_key = ? AND service_id = ? AND client_id = ?", streamKey, session.serviceId, session.clientId);
    return true;
  }

  /** Seats given back (background: a lost one is found gone by the seats object's next check). */
  release(streamKey: string, sub: string, sessions: SessionId[], grant?: string): void {
    if (this.batch && grant === undefined) {
      const key = `${streamKey}#${seatBucket(sub)}`;
      const batch = this.batch.get(key) ?? { streamKey, sub, releases: [] };
      batch.releases.push({ sub, sessions });
      this.batch.set(key, batch);
      return;
    }
    this.host.waitUntil(
      withRetry(() => viewerSeats(this.host.env, streamKey, sub), (s) => s.release(streamKey, sub, sessions, grant)).catch((err) => logError("seat not given back", streamKey, err)),
    );
  }

  /**
   * Runs an end of many viewers at once (synchronous: a fence, an operator's end, a revocation): the seats
   * it frees go back in one call per seat object (a stream's viewer ids fall in SEAT_BUCKETS of them), not
   * one per viewer, so a restart of an edge with thousands of seated viewers costs a few calls, not thousands.
   */
  batched<T>(end: () => T): T {
    if (this.batch) return end();
    this.batch = new Map();
    try {
      return end();
    } finally {
      const batches = [...this.batch.values()];
      this.batch = null;
      for (const b of batches) {
        this.host.waitUntil(
          withRetry(() => viewerSeats(this.host.env, b.streamKey, b.sub), (s) => s.releaseAll(b.streamKey, b.releases)).catch((err) => logError("seats not given back", b.streamKey, err)),
        );
      }
    }
  }
}
