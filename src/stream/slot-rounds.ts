/**
 * The stream's side of viewer admission beyond its book of leases
 * (src/stream/leases.ts): answering a viewer shard's message, rounds of
 * recalls that take back slots the shards do not use (and push a new
 * policy), and the shards waiting for slots, told when some are free. The
 * shard's side is src/viewers/shard-leases.ts; the protocol, src/viewers/lease.ts.
 */
import type { Env } from "../env";
import { viewerShard } from "../object-access";
import { withRetry, withTimeout } from "../platform/retry";
import { holdsNothing, RECALL_GAP_MAX_MS, RECALL_GAP_MS, type LeaseAnswer, type LeaseReport, type RecallCheck, type Revocation, type ViewerPolicy } from "../viewers/lease";
import type { GrantMode, LeaseBook, LeaseRecord } from "./leases";

/** A recall waits this long for each shard: an unreachable one keeps its slots (a refusal too many, never a viewer too many). */
const RECALL_TIMEOUT_MS = 2_000;
/**
 * Shards that rounds of recalls reach per second, on average, at the most: each shard reached is a call
 * from this object and a write here. A stream watched through more servers than this spaces its rounds
 * out (500 servers: one round every 5 s), so that a full stream whose viewers come and go does not
 * cost its object a call and a write per server every second, beyond what one object sustains.
 */
export const ROUND_SHARDS_PER_S = 100;

/** What the rounds need of the stream object. */
export interface RoundsHost {
  /** The stream's cap now (null: unlimited); undefined once the stream is gone (deleted meanwhile). */
  cap(): number | null | undefined;
  /** The policy the shards are told (null: no such stream). */
  policy(): ViewerPolicy | null;
  /** The policy's version. */
  version(): number;
  /** The stream's alarm runs a round of checkWaiting at `at` or earlier. */
  armCheck(at: number): void;
  /** A shard a push reached late: the live sessions the active revocations cover end there. */
  endRevokedOn(key: string, serverId: string, revocations: Revocation[]): Promise<void>;
  waitUntil(work: Promise<unknown>): void;
}

export class SlotRounds {
  private recalling: Promise<void> | null = null;
  /** When the last round of recalls with a liveness check began. */
  private lastCheck = 0;
  /** While shards wait for slots: the gap to the next round of recalls (roundGap() at the least). */
  private checkGap = RECALL_GAP_MS;
  /** Rounds in a row that found free slots and woke waiting shards, none of which took them yet. */
  private wakeRounds = 0;
  /** The last wake told some waiting shards, not all. */
  private toldSome = false;
  /** When the last round began that had the shards of suspended viewers check their servers before a grant resting on them. */
  private lastSuspendedCheck = 0;

  constructor(
    private env: Env,
    private leases: LeaseBook,
    private host: RoundsHost,
  ) {}

  /**
   * What a shard's message is answered (StreamObject.viewerLease; the stream exists): its lease as
   * answer() leaves it, with the policy, its version and whether slots are tight. Null: the stream was
   * deleted meanwhile.
   */
  async lease(report: LeaseReport): Promise<LeaseAnswer | null> {
    const record = await this.answer(report);
    if (!record) return null;
    const policy = this.host.policy();
    // Slots other shards handed to this one, granted by this message (the shard reserves them for the screens they were handed for).
    const handed = record.seq === report.seq ? this.leases.handedIn(report.serverId, report.seq) : 0;
    const tight = policy?.maxViewers != null && this.leases.strictFree(null, policy.maxViewers) <= 0;
    this.leases.toldTight(report.serverId, tight);
    return {
      policy,
      version: this.host.version(),
      seq: record.seq,
      granted: this.leases.answered(record),
      tight,
      // Only a refusal: a grant leaves a waiting row of an older refusal as it was (it ends WAITING_KEPT_MS after
      // that one), so a shard told it waits on a grant a heal ate on its way would hold past the row's end.
      waiting: report.want > 0 && record.granted <= report.live && this.leases.isWaiting(report.serverId),
      ...(handed > 0 ? { handed } : {}),
    };
  }

  /**
   * A shard's message (the stream exists): its record updated, and slots
   * granted if it wants some and the cap allows. When none are free, the
   * stream first takes back the slots the other shards do not use, at once;
   * still none, it has them check their viewers (at most every
   * RECALL_GAP_MS: ghosts of a silent server, and through the SRS API of
   * lost on_stop events, give their slots back); a shard still without a
   * slot is told as soon as one is free. Null: the stream was deleted meanwhile.
   */
  private async answer(report: LeaseReport): Promise<LeaseRecord | null> {
    let mode: GrantMode = "strict";
    if (report.want > 0 && this.leases.restsOnSuspended(report, this.host.cap() ?? null)) {
      // Slots are free only because other shards' viewers are suspended: their servers may be back. Asked at most
      // once per roundGap(), as other rounds: each shard asking at the cap (one slot at a time, below) would
      // otherwise send a round to every shard of a silent server, one per admission (ROUND_SHARDS_PER_S).
      if (Date.now() - this.lastSuspendedCheck >= this.roundGap()) {
        this.lastSuspendedCheck = Date.now();
        await this.recall(report.streamKey, report.serverId, "liveness", "suspended");
      }
      if (this.host.cap() === undefined) return null;
      // Still suspended: one slot for the hook that asks (as one admission would rest on them), no more.
      if (this.leases.restsOnSuspended(report, this.host.cap() ?? null)) mode = "cautious";
    }
    const cap = this.host.cap() ?? null;
    let { record, applied } = this.leases.apply(report, cap, mode);
    if (!applied && cap !== null && report.want > 0 && record.seq > report.seq) {
      // A recall answered while this message waited here: the shard is at the recall's sequence number now
      // (its messages go one at a time), so the slots it asked for are granted on that record, once the
      // round that recalled it has brought back what it could.
      if (this.recalling) await this.recalling;
      const now = this.host.cap() ?? null;
      if (now !== null) record = this.leases.topUp(report, now, mode);
      if (record.granted <= record.live) this.waitForSlots(report.serverId);
    }
    if (applied && cap !== null && report.want > 0 && record.granted <= report.live) {
      // First a round of recalls takes back the slots other shards do not use (if another holds some its
      // viewers did not use at its last report), handed over at once: a hook admitted on them waits on no
      // one's SRS API. Still none: a refusal would rest on the viewers elsewhere, so (at most once per
      // RECALL_GAP_MS) a second round has the shards check them, for ghosts of silent servers and, through
      // their servers' SRS APIs, of lost on_stop events. A shard still refused waits: the stream runs the
      // next rounds itself while shards wait (their refusals cost no call meanwhile) and tells them when
      // slots are free.
      const unused = this.leases.shards().some((r) => r.serverId !== report.serverId && r.granted > r.live);
      if (unused) record = await this.recallFor(report, record, "none", "unused");
      if (record.granted <= report.live && Date.now() - this.lastCheck >= this.roundGap()) {
        this.lastCheck = Date.now();
        record = await this.recallFor(report, record, "ghosts", "holding");
      } else if (record.granted <= report.live && this.leases.shards().some((r) => r.serverId !== report.serverId && this.leases.mayHoldUnseen(r))) {
        // Too soon for that round: the shards that may hold slots their records do not show (not tight: their viewers
        // left since they last reported) are recalled at once, without checks; recalled, they are tight, so each costs
        // this once until the stream next tells it that it is not. Else a viewer was refused at a stream with slots free.
        record = await this.recallFor(report, record, "none", "unseen");
      }
      if (record.granted <= report.live) this.waitForSlots(report.serverId);
    }
    // Slots taken: the shards told of free slots had viewers for them.
    if (report.want > 0 && record.granted > report.granted) this.wakeRounds = 0;
    if (applied && report.want === 0) this.wakeWaiting(report.streamKey);
    if (applied && cap !== null && this.leases.free(cap) < 0) {
      // A heal brought back more viewers than the cap: slots unused elsewhere must not admit more.
      this.host.waitUntil(this.recall(report.streamKey, report.serverId, "none", "unused").catch(() => {}));
    }
    return record;
  }

  /** A round of recalls for a shard that asks for slots; its record topped up from what came back. */
  private async recallFor(report: LeaseReport, record: LeaseRecord, check: RecallCheck, which: "unused" | "holding" | "unseen"): Promise<LeaseRecord> {
    await this.recall(report.streamKey, report.serverId, check, which);
    const now = this.host.cap() ?? null;
    return now === null ? record : this.leases.topUp(report, now, this.leases.restsOnSuspended(report, now) ? "cautious" : "strict");
  }


  /** One round of recalls, shared by whoever needs it meanwhile; returns the shards it could not reach. */
  async recall(
    key: string,
    requester: string | null,
    check: RecallCheck,
    which: "all" | "unused" | "holding" | "suspended" | "unreached" | "unseen" = "all",
    keepSlots = false,
    endRevoked: "again" | "all" | "none" = "again",
  ): Promise<string[]> {
    // A shard asking while a round runs shares it (shards answer a recall at once, also while their own
    // message waits here, so the round never waits on the shard that waits on it).
    if (this.recalling && requester !== null) {
      await this.recalling;
      return [];
    }
    if (this.recalling) await this.recalling.catch(() => {});
    const policy = this.host.policy();
    const version = this.host.version();
    // A push of the policy goes to every shard; a recall for slots to those that may hold some unused
    // (or, checking for ghosts, any; or, before admitting on the slots of suspended viewers, those).
    const wanted = (r: LeaseRecord) =>
      which === "all" || r.unreached || (which === "unused" && r.granted > r.live) || (which === "holding" && !holdsNothing(r)) || (which === "suspended" && r.suspended > 0) ||
      (which === "unseen" && this.leases.mayHoldUnseen(r));
    const targets = this.leases.shards().filter((r) => r.serverId !== requester && wanted(r));
    if (targets.length === 0) {
      // The stream's own round ("") still tells the waiting shards of slots free already (none held elsewhere).
      if (requester === "") this.wakeWaiting(key);
      return [];
    }
    // A recall for slots leaves each shard a share of what would be free if every shard held only its
    // viewers (half of an even split, by their last reports): shards keep admitting on their own near
    // the cap instead of asking for every viewer. A push of the policy takes back everything unused.
    const cap = policy?.maxViewers ?? null;
    const keep = keepSlots ? ("all" as const) : requester === null || cap === null ? 0 : Math.floor(Math.max(0, this.leases.freeIfShrunk(cap)) / (2 * (targets.length + 1)));
    const unreached: string[] = [];
    const round = Promise.all(
      targets.map(async (r) => {
        try {
          const answer = await withTimeout(
            withRetry(() => viewerShard(this.env, r.serverId), (shard) => shard.recall(key, policy, version, check, keep)),
            RECALL_TIMEOUT_MS,
          );
          this.leases.recalled(r.serverId, answer, this.host.cap() ?? null, !keepSlots);
          // A shard that missed a push may still serve sessions the active revocations cover: they end now.
          if (policy && policy.revocations.length > 0 && (endRevoked === "all" || (endRevoked === "again" && r.unreached))) {
            this.host.waitUntil(this.host.endRevokedOn(key, r.serverId, policy.revocations));
          }
        } catch (err) {
          unreached.push(r.serverId);
          this.leases.unreached(r.serverId);
          console.error(JSON.stringify({ error: "lease recall failed", server: r.serverId, detail: String(err) }));
        }
      }),
    ).then(() => {});
    this.recalling = round;
    try {
      await round;
    } finally {
      if (this.recalling === round) this.recalling = null;
    }
    this.wakeWaiting(key);
    return unreached;
  }

  /** A shard refused for want of slots: told when some are free; meanwhile the stream checks for them. */
  private waitForSlots(serverId: string): void {
    this.leases.wait(serverId);
    this.host.armCheck(this.lastCheck + Math.max(this.checkGap, this.roundGap()));
  }

  /**
   * The shortest gap between two rounds of recalls that reach every shard holding slots or viewers:
   * RECALL_GAP_MS, or longer for a stream watched through more than ROUND_SHARDS_PER_S servers.
   */
  private roundGap(): number {
    const holding = this.leases.shards().filter((r) => !holdsNothing(r)).length;
    return RECALL_GAP_MS * Math.max(1, Math.ceil(holding / ROUND_SHARDS_PER_S));
  }

  /**
   * Free slots: shards refused for want of them may ask again. As many as
   * there are free slots are told (the longest waiting first), so one viewer
   * leaving a full stream costs one question, not one per waiting edge; if
   * the slots are still free at the next round (the shards told had no viewer
   * to admit), twice as many, and so on, so every waiting shard hears within
   * a few rounds.
   */
  private wakeWaiting(key: string): void {
    const cap = this.host.cap() ?? null;
    const waiting = this.leases.waiting();
    if (waiting.length === 0) return;
    // A slot free for real; else, free only because suspended viewers gave theirs back (they neither count nor
    // block), as one: the shard told asks, and the stream has their shards check their servers and grants it
    // one slot (answer()), as it would a shard that was not waiting. Not told, a waiting shard's viewers were
    // refused until its hold ran out (WAIT_HOLD_MS) while any other edge's were admitted.
    let free = cap === null ? waiting.length : this.leases.strictFree(null, cap);
    if (free <= 0 && cap !== null && this.leases.looseFree(null, cap) > 0) free = 1;
    if (free <= 0) {
      this.wakeRounds = 0;
      return;
    }
    const told = waiting.slice(0, Math.min(waiting.length, free * 2 ** Math.min(this.wakeRounds, 20)));
    this.wakeRounds++;
    this.leases.woken(told);
    for (const serverId of told) {
      this.host.waitUntil(
        withRetry(() => viewerShard(this.env, serverId), (shard) => shard.slotsFree(key)).catch(() => {
          // Not told: back among the waiting (the last), told at a next round, else it would hold WAIT_HOLD_MS.
          this.leases.wait(serverId);
          this.host.armCheck(Date.now() + this.checkGap);
        }),
      );
    }
    // Those still waiting hear at the next round, soon: a round of the word alone 1 s later (it calls only the
    // shards it tells), also when this word came from a give-back or another's round, not from the alarm (else
    // the next word waited for the next round of recalls, up to RECALL_GAP_MAX_MS later).
    this.toldSome = told.length < waiting.length;
    if (this.toldSome) this.host.armCheck(Date.now() + RECALL_GAP_MS);
  }

  /**
   * Shards still wait: each shard with viewers asks its server's SRS API
   * about them and gives back the slots its ghosts of lost on_stop events
   * held (the waiting shards hear of them as of any slot freed). In the
   * background, not in a round of recalls: a hook that shares a round would
   * wait on an edge's API.
   */
  private sweepGhosts(key: string): void {
    if (!this.env.SRS_API_URL) return;
    for (const r of this.leases.shards()) {
      if (r.live === 0) continue;
      this.host.waitUntil(withRetry(() => viewerShard(this.env, r.serverId), (shard) => shard.sweepGhosts(key)).catch(() => {}));
    }
  }

  /**
   * A round for the shards that wait (from the alarm). A round of recalls:
   * ghosts of silent servers and slots unused elsewhere come back, and the
   * waiting shards are told; these follow each other after 1 s, doubling
   * while shards wait, up to RECALL_GAP_MAX_MS (and never closer than
   * roundGap()). Slots free that only some waiting shards were told of: 1 s
   * later a round of the word alone tells more of them (twice as many), which
   * calls only the shards it tells.
   */
  async checkWaiting(key: string | null): Promise<void> {
    if (!key || this.leases.waiting().length === 0) {
      this.checkGap = RECALL_GAP_MS;
      return;
    }
    const now = Date.now();
    if (now >= this.lastCheck + Math.max(this.checkGap, this.roundGap())) {
      this.lastCheck = now;
      // "" is no shard: every shard holding slots or viewers is recalled, each keeping its share.
      await this.recall(key, "", "liveness", "holding");
      if (this.leases.waiting().length === 0) {
        this.checkGap = RECALL_GAP_MS;
        return;
      }
      this.sweepGhosts(key);
      this.checkGap = Math.min(RECALL_GAP_MAX_MS, this.checkGap * 2);
    } else {
      this.wakeWaiting(key);
      if (this.leases.waiting().length === 0) {
        this.checkGap = RECALL_GAP_MS;
        return;
      }
    }
    const nextRound = this.lastCheck + Math.max(this.checkGap, this.roundGap());
    this.host.armCheck(this.toldSome ? Math.min(nextRound, now + RECALL_GAP_MS) : nextRound);
    this.toldSome = false;
  }
}
