/**
 * Where a viewer is admitted: a viewer shard's answer to an on_play (decide), step by step, each step named for
 * what it decides: the stream's policy and the hook's process first, then a failed token (the stream counts it),
 * a slot of the stream's lease (src/viewers/shard-leases.ts), a seat for a viewer id with a session limit
 * (src/viewers/shard-seats.ts), then the checks again and the write, synchronously. A repeat of a session live
 * here is answered "already live" whatever the step; every answer is a line in the shard's decision log.
 */
import type { Env } from "../env";
import { nested, NestedCallFailed, type Unreachable } from "../platform/retry";
import { streamObject, viewerSeats } from "../object-access";
import type { SessionId } from "../srs/hook";
import type { VoidedHooks } from "../session/voided-hooks";
import { Denials, viewerCapReached, type Decision, type Denial, type PlayToken } from "../stream/rules";
import type { ShardActivity } from "../usage/shard-activity";
import type { ViewerCounts } from "./counts";
import { LEASE_IDLE_MS, isRevoked, type Place, type ViewerPolicy } from "./lease";
import type { ShardProcesses } from "./processes";
import type { SeatAnswer } from "./seats";
import type { ShardGhosts } from "./shard-ghosts";
import type { ShardLeases } from "./shard-leases";
import type { ShardLiveness } from "./shard-liveness";
import type { ShardLog } from "./shard-log";
import { seatKey, type ShardSeats } from "./shard-seats";
import type { ShardTables } from "./tables";

/** What the Worker tells the shard about an on_play, beyond the session. */
export interface PlayRequest {
  streamKey: string;
  session: SessionId;
  ip: string;
  token: PlayToken;
  /** AUTH_FAILURES_PER_MINUTE as the Worker read it (for a failed token: counted by the stream). */
  guessLimit: number;
  /** Names the hook, so the Worker's undo voids attempts of it still running (src/viewers/shard.ts stop and endViewer). */
  hookId: string;
  place: Place;
  /** A WebRTC player (src/srs/hook.ts isWebrtc): no ghost check asks SRS's API about it for YOUNG_MS (src/viewers/shard-ghosts.ts) after its admission. */
  webrtc?: boolean;
}

/** What admitting a viewer needs of its viewer shard. */
export interface AdmissionShard {
  readonly env: Env;
  readonly tables: ShardTables;
  readonly counts: Pick<ViewerCounts, "add">;
  readonly processes: Pick<ShardProcesses, "isReplaced" | "knows">;
  readonly leases: ShardLeases;
  readonly liveness: Pick<ShardLiveness, "knowProcess">;
  readonly ghosts: Pick<ShardGhosts, "endGhosts" | "repeated">;
  readonly seats: ShardSeats;
  /** The start hooks the Worker undid: their attempts still running admit nothing. */
  readonly voidHooks: VoidedHooks;
  readonly log: Pick<ShardLog, "record">;
  readonly activity: Pick<ShardActivity, "capRefused">;
  serverId(): string;
  /** The shard learns its server's id and place from its first hook (and the place again if it changes). */
  identify(serverId: string, place: Place): void;
  /** The session is a viewer here (live or suspended). */
  isViewing(streamKey: string, session: SessionId): boolean;
  armAlarm(at: number): void;
}

export class ViewerAdmission {
  constructor(private readonly shard: AdmissionShard) {}

  /** on_play: where a viewer is admitted. */
  async play(req: PlayRequest): Promise<Decision | Unreachable> {
    try {
      let decision = await this.decide(req);
      // A WebRTC twin (webrtcTwin) is refused before anything else, and by repeat(); one decided alongside the session it
      // shares its id with (its hook waited while that one was admitted) may still have been answered "already live".
      if (decision.allow && !decision.admit) decision = this.webrtcTwin(req) ?? decision;
      if (decision.allow) this.shard.voidHooks.confirm(seatKey(req.streamKey, req.session), req.hookId);
      return decision;
    } catch (err) {
      // The registry, the stream or the seats could not be reached: the Worker's answer names it,
      // unless the session is live here (a repeat needs none of them: it must not fail for them).
      if (err instanceof NestedCallFailed) return this.repeat(req) ?? err.unreachable;
      throw err;
    }
  }

  /**
   * The one place a viewer is admitted, step by step: each step may answer, or have the decision read the stream's
   * state again (at most 3 rounds). Every wait is here, in this order; the steps between them are synchronous named
   * methods. What runs after a wait, up to the next one or the write, runs before anything else: a step awaited as
   * an async function of its own would give back the turn on its return, and other continuations of the same answer
   * (a lease message's, a stop's) would run between its wait and the checks after it.
   */
  private async decide(req: PlayRequest): Promise<Decision> {
    const { streamKey, session } = req;
    const attempt = newAttempt(req);
    // A repeat of a session already live here (an earlier attempt of this on_play admitted it) is
    // answered "already live": by the insert below, which then writes nothing, by logged() for a
    // refusal, or by repeat() before any call to another object (none of which it needs), so that a
    // fresh session admitted within the lease (nearly every on_play) costs no read for it.
    const twin = this.webrtcTwin(req);
    if (twin) return twin;
    try {
      for (let round = 1; ; round++) {
        // First the policy: a hook naming a stream that does not exist leaves nothing behind, here or in the registry.
        const policy = await this.shard.leases.policyOf(streamKey);
        if (!policy) return this.unknownStream(req);
        // An attempt of a hook the Worker undid (it gave up waiting) asks nothing more of anyone: a seat taken
        // with "replace" would end the viewer's other session. Checked again after each wait below.
        if (this.shard.voidHooks.has(req.hookId)) return this.undone(req);
        this.shard.identify(session.serverId, req.place);
        if (!(await this.shard.liveness.knowProcess(session))) return this.refused(req, Denials.retiredProcess);
        if (policy.playAuth === "token" && !req.token.ok) {
          const again = this.repeat(req);
          if (again) return again;
          const refusal = await this.failedTokenCounted(req);
          if (!refusal.allow) return refusal;
          // The stream no longer asks for tokens: the cached policy was stale.
          this.shard.leases.forgetPolicy(streamKey);
          if (round < 3) continue;
          return this.unknownStream(req);
        }
        const refused = this.viewerRefusal(policy, req);
        if (refused) return this.refused(req, refused);
        if (this.shard.voidHooks.has(req.hookId)) return this.undone(req);
        // A capped stream with no slot free here: the stream is asked for one.
        if (policy.maxViewers !== null && !this.shard.leases.hasSlot(streamKey, attempt.key)) {
          const again = this.repeat(req);
          if (again) return again;
          await this.shard.leases.askForSlots(streamKey);
          if (this.endsGhostsForSlot(attempt, streamKey)) {
            if ((await this.shard.ghosts.endGhosts(streamKey)) > 0 && this.shard.leases.returnIfTight(streamKey)) await this.shard.leases.askForSlots(streamKey);
          }
        }
        // A viewer id with a session limit: a seat (src/viewers/seats.ts).
        const seatAsk = this.seatToTake(policy, attempt, streamKey);
        if (seatAsk) {
          const again = this.repeat(req);
          if (again) return again;
          if (this.shard.voidHooks.has(req.hookId)) return this.undone(req);
          this.waitForSeat(req, attempt, seatAsk);
          const seat = await this.takeSeat(req, attempt, policy, seatAsk);
          if (seatAsk.handOff) attempt.handOffAsked = true;
          // Full (no session of the viewer's made room, nobody ended): the cap refuses it below, unless a slot came meanwhile.
          if (!seat.ok && !seat.full) return this.refusedBySeats(req, seat.denial);
          if (seat.ok) {
            attempt.seated = true;
            attempt.seatedLimit = seatAsk.limit;
            attempt.seatGrant = seat.grant;
            const asks = slotAsksAfterSeat(policy, seatAsk);
            for (let ask = 0; ask < asks && !this.shard.leases.hasSlot(streamKey, attempt.key); ask++) {
              this.shard.leases.slotsFree(streamKey);
              await this.shard.leases.askForSlots(streamKey);
            }
          }
        }
        if (attempt.seated && this.seatLimitLowered(policy, attempt, streamKey)) {
          // The limit was lowered while the seat was being taken (a PUT's push): given back, and asked for
          // again under the new limit, which counts the viewer's other sessions as they are now.
          await this.giveBackSeat(req, attempt);
          attempt.seated = false;
          attempt.seatedLimit = Infinity;
          if (round < 3) continue;
          return this.refused(req, Denials.viewerSessionLimit);
        }
        // From here to the write everything is synchronous, so no other message interleaves: the checks
        // again, on the state as it is now (a policy pushed, a restart's notice, a voided hook, meanwhile).
        const checked = this.checkAgain(req, attempt, policy, round);
        if (checked === AGAIN) continue;
        if (checked) return checked;
        return this.admit(req, attempt);
      }
    } finally {
      this.endAttempt(req, attempt);
    }
  }

  /** A failed token on a stream that asks for tokens: the stream counts failed tokens per ip (brute-force limit) and logs them. */
  private failedTokenCounted(req: PlayRequest): Promise<Decision> {
    return nested("stream object", () => streamObject(this.shard.env, req.streamKey), (s): Promise<Decision> => s.refusePlay(req.session, req.ip, req.token, req.guessLimit));
  }

  /**
   * Still no slot after the stream was asked: this shard's own viewers may include ghosts of lost on_stop events
   * (src/srs/ghosts.ts). Their slots are kept for this viewer only while the stream has slots free: on a tight lease
   * they go back, and the viewer asks again (a ghost over a cap lowered under it leaves no slot for anyone).
   */
  private endsGhostsForSlot(attempt: Attempt, streamKey: string): boolean {
    return this.shard.leases.policy(streamKey)?.maxViewers != null && !this.shard.leases.hasSlot(streamKey, attempt.key);
  }

  /** The seat this viewer asks for now, if it has a session limit, and a slot is there for it (or may be handed over); else null. */
  private seatToTake(policy: ViewerPolicy, attempt: Attempt, streamKey: string): SeatAsk | null {
    const limit = seatLimit(policy, attempt.sub);
    const hasSlot = (): boolean => this.shard.leases.hasSlot(streamKey, attempt.key);
    // No slot, but the viewer replaces its own sessions: the one that ends for this one may hand its slot over
    // (seats.ts, SeatRequest.handOff), so a viewer moving from phone to TV at a full stream is not refused.
    const handOff = limit !== null && !attempt.seated && !attempt.handOffAsked && policy.maxViewers !== null && policy.onExtraViewerSession === "replace" && !hasSlot();
    if (limit !== null && !attempt.seated && (policy.maxViewers === null || hasSlot() || handOff)) return { limit, handOff };
    return null;
  }

  /** The hook waits for the seat: it counts as live when the seats object asks, and says whether it still stands (hookLive). */
  private waitForSeat(req: PlayRequest, attempt: Attempt, { handOff }: SeatAsk): void {
    // A viewer id with a session limit: the seats object counts its sessions on every edge.
    this.shard.seats.asking(attempt.key, !attempt.asked);
    attempt.asked = true;
    this.shard.seats.hookWaits(req);
    // The slot the replaced session hands over is reserved for this admission when it arrives (src/viewers/shard-leases.ts).
    if (handOff) this.shard.leases.expectHandOff(attempt.key, req.streamKey);
  }

  /** Asks the seats object of the viewer id for a seat. */
  private takeSeat(req: PlayRequest, attempt: Attempt, policy: ViewerPolicy, { limit, handOff }: SeatAsk): Promise<SeatAnswer> {
    const { streamKey, session } = req;
    const sub = attempt.sub!;
    return nested("viewer seats", () => viewerSeats(this.shard.env, streamKey, sub), (s): Promise<SeatAnswer> =>
      s.take({ streamKey, sub, session, limit, mode: policy.onExtraViewerSession, hookId: req.hookId, ...(handOff ? { handOff } : {}) }),
    );
  }

  /** The seats refused the viewer (its other sessions stand): logged, with the reason as it is now. */
  private refusedBySeats(req: PlayRequest, denial: Denial): Decision {
    // Undone meanwhile (the seat object then ended nobody for it): logged as such.
    if (this.shard.voidHooks.has(req.hookId)) return this.undone(req);
    // The stream was deleted, or the token revoked, meanwhile (the seat object then ended nobody for it, see
    // hookLive): that is the reason.
    const nowPolicy = this.shard.leases.policy(req.streamKey);
    if (nowPolicy === null) return this.unknownStream(req);
    const nowRefused = nowPolicy ? this.viewerRefusal(nowPolicy, req) : null;
    if (nowRefused) return this.refused(req, nowRefused);
    // Learnt meanwhile that its process was replaced: that is the reason, whatever the seats say.
    return this.refused(req, this.shard.processes.isReplaced(req.session.serviceId) ? Denials.retiredProcess : denial);
  }

  /** The viewer's session limit was lowered below the one its seat was taken under (a PUT's push meanwhile). */
  private seatLimitLowered(policy: ViewerPolicy, attempt: Attempt, streamKey: string): boolean {
    return (seatLimit(this.shard.leases.policy(streamKey) ?? policy, attempt.sub) ?? Infinity) < attempt.seatedLimit;
  }

  /** The seat taken by this attempt goes back (only its grant). */
  private giveBackSeat(req: PlayRequest, attempt: Attempt): Promise<void> {
    const { streamKey, session } = req;
    const sub = attempt.sub!;
    return nested("viewer seats", () => viewerSeats(this.shard.env, streamKey, sub), (s) => s.release(streamKey, sub, [session], attempt.seatGrant));
  }

  /**
   * The checks again, synchronously before the write, on the state as it is now (`policy`: as the round began).
   * AGAIN: what was read changed (another round reads it again); null: the viewer may be admitted.
   */
  private checkAgain(req: PlayRequest, attempt: Attempt, policy: ViewerPolicy, round: number): Decision | typeof AGAIN | null {
    const { streamKey, session } = req;
    const { key: pending, sub } = attempt;
    const now = this.shard.leases.policy(streamKey);
    if (!now) {
      if (round < 3) return AGAIN; // left meanwhile (no viewers here): read again
      return this.unknownStream(req);
    }
    if (this.shard.processes.isReplaced(session.serviceId)) return this.refused(req, Denials.retiredProcess);
    const cancelled = this.shard.seats.cancelled(pending);
    if (cancelled) return this.refused(req, { ...Denials.viewerSessionLimit, reason: `${Denials.viewerSessionLimit.reason}: ${cancelled}` });
    const nowRefused = this.viewerRefusal(now, req);
    if (nowRefused) return this.refused(req, nowRefused);
    const changed =
      !this.shard.processes.knows(session.serviceId) ||
      (now.playAuth === "token" && !req.token.ok) ||
      (now.maxViewers !== null && policy.maxViewers === null) ||
      (seatLimit(now, sub) !== null && !attempt.seated && (now.maxViewers === null || this.shard.leases.hasSlot(streamKey, pending)));
    if (changed && round < 3) return AGAIN;
    if (now.maxViewers !== null && !this.shard.leases.hasSlot(streamKey, pending)) {
      const decision = this.refused(req, viewerCapReached(now.maxViewers));
      if (!decision.allow) this.shard.activity.capRefused(streamKey, this.shard.serverId(), now.maxViewers);
      return decision;
    }
    if (changed) return this.unknownStream(req);
    if (this.shard.voidHooks.has(req.hookId)) return this.undone(req);
    // A twin on another stream admitted while this hook waited (the insert below would not meet its row).
    return this.webrtcTwin(req);
  }

  /** The write: the viewer's row, counted, on its slot. */
  private admit(req: PlayRequest, attempt: Attempt): Decision {
    const { streamKey, session, ip } = req;
    const at = Date.now();
    this.shard.tables.prepare();
    const iat = req.token.ok ? (req.token.issuedAt ?? 0) : null;
    // A repeat of this session admitted meanwhile (by an attempt of the same on_play) is already a row: nothing written.
    const written = this.shard.tables.sql.exec(
      "INSERT OR IGNORE INTO viewers (stream_key, service_id, client_id, ip, since, sub, iat, seat, webrtc_hook) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
      streamKey, session.serviceId, session.clientId, ip, at, attempt.sub ?? "", iat, attempt.seated ? 1 : 0, req.webrtc ? req.hookId : null,
    ).rowsWritten;
    if (written === 0) return this.logged(streamKey, session, ip, { allow: true, admit: false }, attempt.sub);
    attempt.admitted = true;
    this.shard.counts.add(streamKey, session.serviceId, 1);
    this.shard.leases.unreserve(attempt.key);
    this.shard.leases.admitted(streamKey, at);
    this.shard.armAlarm(at + LEASE_IDLE_MS);
    return this.logged(streamKey, session, ip, { allow: true, admit: true }, attempt.sub);
  }

  /** However decide ends: the hook no longer waits for a seat, and a slot reserved or a seat taken for it and unused goes. */
  private endAttempt(req: PlayRequest, attempt: Attempt): void {
    const { streamKey, session } = req;
    const { key: pending, sub } = attempt;
    this.shard.seats.hookDone(req.hookId);
    // A slot reserved for this admission (its viewer's replaced session's, on this edge) is free again if unused.
    if (!attempt.admitted) this.shard.leases.unreserve(pending);
    if (attempt.asked) this.shard.seats.askDone(pending);
    // A repeat of a session admitted meanwhile (by an attempt of the same on_play racing this one): the seat
    // this attempt took is that session's own seat (the seat object granted it again), so the session keeps it.
    // Else only this grant of it goes: an attempt still running here, or a repeat of this on_play admitted before
    // the release lands (an HLS player asking again), plays on a later grant of the same seat. An attempt still
    // running here keeps the seat for itself (given back by it, or found gone by the seat object's next check).
    if (attempt.seated && !attempt.admitted && !this.shard.seats.keep(streamKey, session) && !this.shard.seats.isAdmitting(pending)) this.shard.seats.release(streamKey, sub!, [session], attempt.seatGrant);
  }

  /**
   * What refuses a viewer whose token is valid, by the stream's viewer
   * policy: a revoked token, or no viewer id where sessions per viewer are
   * limited. Tokens matter only on playAuth "token" streams.
   */
  private viewerRefusal(policy: ViewerPolicy, req: PlayRequest): Denial | null {
    if (policy.playAuth !== "token" || !req.token.ok) return null;
    const sub = req.token.sub ?? null;
    if (isRevoked(policy.revocations, sub, req.token.issuedAt ?? null)) return Denials.tokenRevoked;
    if (policy.maxSessionsPerViewer !== null && sub === null) return Denials.noViewerId;
    return null;
  }

  /**
   * For the seats object, before it ends other sessions for this hook: false once the Worker undid it, or once
   * the policy pushed here since would refuse it anyway (the stream deleted, its token revoked, or a viewer id
   * wanted): the re-check before its admission would refuse it, and the sessions ended for it would have
   * ended for nothing.
   */
  hookLive(hookId: string): boolean {
    if (this.shard.voidHooks.has(hookId)) return false;
    const req = this.shard.seats.waitingHook(hookId);
    if (!req) return true;
    const policy = this.shard.leases.policy(req.streamKey);
    if (policy === null) return false;
    return !policy || this.viewerRefusal(policy, req) === null;
  }

  private logged(streamKey: string, session: SessionId, ip: string, decision: Decision, sub?: string | null): Decision {
    // Never a refusal for a session live here: a repeat of an admitted on_play (see decide).
    if (!decision.allow && this.shard.isViewing(streamKey, session)) decision = { allow: true, admit: false };
    return this.recorded(streamKey, session, ip, decision, sub);
  }

  /** The decision as it is, in the decision log. */
  private recorded(streamKey: string, session: SessionId, ip: string, decision: Decision, sub?: string | null): Decision {
    const viewer = sub ? ` (viewer ${sub})` : "";
    const reason = (decision.allow ? (decision.admit ? "admitted" : "already live") : decision.denial.reason) + viewer;
    this.shard.log.record(streamKey, "on_play", session.clientId, ip, decision.allow ? "allow" : "deny", reason);
    return decision;
  }

  /**
   * A second WebRTC session with the client id of one live here, from another hook (not an attempt of the same on_play): refused
   * (4007), logged; else null. SRS names a WebRTC player by its HTTP connection's id and answers every WHEP and RTC API call with
   * `Connection: Close`, so only a client that ignores that and posts again on the same connection gets a second session with the
   * same id. Its on_stop would carry that id too: it cannot be counted apart, and admitted as a repeat it would play uncounted
   * (past the cap, and past maxSessionsPerViewer), as many times as the client posts. On another stream too: SRS's API names a
   * client by id alone, and forgets it when either session ends (SrsStatistic::on_disconnect), so a ghost check would then end
   * the other one's row while it plays.
   */
  private webrtcTwin(req: PlayRequest): Decision | null {
    if (!req.webrtc) return null;
    const twin = this.shard.tables.rows(
      "SELECT 1 AS x FROM viewers WHERE service_id = ? AND client_id = ? AND webrtc_hook IS NOT NULL AND (stream_key != ? OR webrtc_hook != ?) LIMIT 1",
      req.session.serviceId, req.session.clientId, req.streamKey, req.hookId,
    );
    if (twin.length === 0) return null;
    // Not logged(): that answers "already live" for a session live here, which is what this one would pass for.
    return this.recorded(req.streamKey, req.session, req.ip, { allow: false, denial: Denials.webrtcTwin }, subOf(req));
  }

  /** An attempt of a hook the Worker undid: refused (4008), logged. */
  private undone(req: PlayRequest): Decision {
    return this.refused(req, Denials.admissionUndone);
  }

  /** The play refused for `denial`, logged ("already live" for a session live here: see logged). */
  private refused(req: PlayRequest, denial: Denial): Decision {
    return this.logged(req.streamKey, req.session, req.ip, { allow: false, denial }, subOf(req));
  }

  /** The stream does not exist (or no longer): refused, not logged (no log is kept for it), unless the session is live here. */
  private unknownStream(req: PlayRequest): Decision {
    return this.repeat(req) ?? { allow: false, denial: Denials.unknownStream };
  }

  /** A repeat of a session live here (an earlier attempt of this on_play admitted it): "already live", logged; else null. */
  private repeat(req: PlayRequest): Decision | null {
    if (!this.shard.isViewing(req.streamKey, req.session)) return null;
    const twin = this.webrtcTwin(req);
    if (twin) return twin;
    // SRS has the client now (it sent this hook): a ghost check's "not found" asked before is about an earlier moment.
    this.shard.ghosts.repeated(seatKey(req.streamKey, req.session));
    return this.logged(req.streamKey, req.session, req.ip, { allow: true, admit: false }, subOf(req));
  }
}

/** A step of decide found that what it read changed: the decision reads the stream's state again (another round). */
const AGAIN = "again";

/** One on_play's way through decide: the seat it took, and whether it was admitted. */
interface Attempt {
  /** The session's key here (seatKey). */
  readonly key: string;
  /** The viewer id of the play's token (subOf). */
  readonly sub: string | null;
  /** A seat taken for this viewer (src/viewers/seats.ts): given back unless the viewer is admitted. */
  seated: boolean;
  /** The limit the seat was taken under (a lower one pushed meanwhile means taking it again). */
  seatedLimit: number;
  /** The grant of that seat: given back, only that grant goes (a repeat of this on_play may play on a later one). */
  seatGrant: string;
  admitted: boolean;
  /** A seat was asked for (the hook counts once among the session's pending admissions). */
  asked: boolean;
  /** The seat was asked for at a full stream, to take the slot of a session of the viewer's it replaces (once per hook). */
  handOffAsked: boolean;
}

/** A seat to ask for: under the viewer's session limit, and whether the slot of a session it replaces may be handed over. */
interface SeatAsk {
  limit: number;
  handOff: boolean;
}

/**
 * With a hand-off, the replaced session's slot is this shard's at the stream now: its next message is
 * granted it, the hold of a refused shard notwithstanding (on this same edge it is reserved here), and it
 * is asked again once if a recall crossed the first answer (voided here: the stream owes the slot again).
 * Else the seat was taken on a slot free here, which a push (a PUT) may have taken back meanwhile with
 * every unused slot: asked again once, as the sessions ended for this one may have freed it.
 */
function slotAsksAfterSeat(policy: ViewerPolicy, { handOff }: SeatAsk): number {
  return policy.maxViewers === null ? 0 : handOff ? 2 : 1;
}

function newAttempt(req: PlayRequest): Attempt {
  return { key: seatKey(req.streamKey, req.session), sub: subOf(req), seated: false, seatedLimit: Infinity, seatGrant: "", admitted: false, asked: false, handOffAsked: false };
}

/** The viewer id of the play's token, if it has a valid one. */
function subOf(req: PlayRequest): string | null {
  return req.token.ok ? (req.token.sub ?? null) : null;
}

/** The seat limit of a viewer on a stream: only a viewer id on a playAuth "token" stream with maxSessionsPerViewer has one. */
function seatLimit(policy: ViewerPolicy, sub: string | null): number | null {
  return policy.playAuth === "token" && sub !== null ? policy.maxSessionsPerViewer : null;
}
