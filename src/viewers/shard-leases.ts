/**
 * A viewer shard's side of the lease protocol (src/viewers/lease.ts): for
 * each stream its server's viewers watch, the slots the shard holds, the
 * policy the stream last told it, and the messages that ask for slots, give
 * them back and report the audience, one message per stream at a time. The
 * stream's side is src/stream/leases.ts.
 *
 * The shard admits a viewer of a capped stream only while it holds a free
 * slot (hasSlot); everything here keeps `granted` at or below the stream's
 * record of it: a lease grows at the stream first, shrinks here first.
 */
import type { Env } from "../env";
import { nested } from "../platform/retry";
import { streamObject } from "../object-access";
import { holdsNothing, isLeave, LEASE_IDLE_MS, type HandOff, POLICY_TTL_MS, WAIT_HOLD_MS, leaseWant, type LeaseAnswer, type LeaseReport, type Place, type RecallAnswer, type ViewerPolicy } from "./lease";
import type { ViewerCounts } from "./counts";
import { logError } from "./shard-log";
import type { ShardTables } from "./tables";

interface Lease {
  granted: number;
  seq: number;
  tight: boolean;
  /** Refused for want of slots: no new request to the stream before this (0: none), unless told that slots are free. */
  fullUntil: number;
  /** slotsFree calls received: one arriving while a refused message is on its way back voids that refusal's hold. */
  wakes: number;
  lastAdmission: number;
  /** When the shard last sent the stream a message. */
  lastMessage: number;
  /** The viewers, live and suspended, the stream last heard of from here ("" after a restart: unknown). */
  told: string;
  /** A message to the stream is on its way (its answer is adopted as the lease). */
  asking: boolean;
  /** Its sequence number. */
  askingSeq: number;
  /** A slot was freed on the tight lease while that message was on its way: its answer must not hand it out again. */
  freedWhileAsking: boolean;
}

/** What the leases need of the shard that holds them. */
export interface LeaseHost {
  readonly counts: Pick<ViewerCounts, "live" | "suspended">;
  /** The shard's server and where it runs, as known now. */
  whereabouts(): { serverId: string; place: Place };
  armAlarm(at: number): void;
  /** The stream's policy as told here changed (or was told again). */
  policyChanged(streamKey: string, policy: ViewerPolicy | null): void;
  waitUntil(work: Promise<unknown>): void;
}

/** A capped stream whose viewers here changed hears from the shard at most this often, besides lease messages. */
const REPORT_EVERY_MS = 5 * 60_000;

export class ShardLeases {
  private leases = new Map<string, Lease>();
  private policies = new Map<string, { policy: ViewerPolicy | null; version: number; at: number }>();
  /** One lease message per stream at a time. */
  private locks = new Map<string, Promise<unknown>>();
  /**
   * The highest sequence number of a lease this shard dropped (it left the stream): a lease begun
   * again starts above it. The stream may keep its record of the shard (it was deleted meanwhile,
   * or a recall crossed the message that left), and ignores any message or recall answer not newer
   * than that record: restarting at 0 left it unreached after the next push, refusing every edge.
   */
  private seqFloor = 0;
  /**
   * Slots kept in a lease for one admission under way here (by its seat key): the slot of a session this shard ended
   * for its viewer's newer session on this same edge, at a full stream (handOff). No other viewer here takes them,
   * nothing gives them back; the admission uses its own (hasSlot's `own`) and drops it (unreserve).
   */
  private reserved = new Map<string, string>();
  /** Admissions under way here waiting for a slot another shard hands over (by seat key): an answer carrying one reserves it for them. */
  private expecting = new Map<string, string>();
  /** Hand-off messages on their way to the stream, per stream: a recall's answer names them (it may overtake them). */
  private handing = new Map<string, HandOff[]>();
  /** Streams with a report queued behind their lock that has not left yet (reportSoon). */
  private reportQueued = new Set<string>();

  constructor(
    private env: Env,
    private tables: ShardTables,
    private host: LeaseHost,
  ) {}

  /** Reads the stored leases (the tables exist). */
  load(): void {
    for (const r of this.tables.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'lease_seq_floor'")) this.seqFloor = Number(r.value);
    for (const r of this.tables.sql.exec<{ stream_key: string; granted: number; seq: number; tight: number }>("SELECT * FROM leases")) {
      this.leases.set(r.stream_key, fresh(r.granted, r.seq, r.tight === 1));
    }
  }

  /** The policy last told for the stream (undefined: none told, or forgotten), without asking the stream. */
  policy(streamKey: string): ViewerPolicy | null | undefined {
    return this.policies.get(streamKey)?.policy;
  }

  /** The cached policy is stale: the next hook asks the stream. */
  forgetPolicy(streamKey: string): void {
    this.policies.delete(streamKey);
  }

  /** Slots the shard holds of a stream (0 for an unlimited one). */
  granted(streamKey: string): number {
    return this.leases.get(streamKey)?.granted ?? 0;
  }

  /** A viewer was admitted: the lease's unused slots are idle from this moment. */
  admitted(streamKey: string, at: number): void {
    const lease = this.leases.get(streamKey);
    if (lease) lease.lastAdmission = at;
  }

  /**
   * A recall (or a push) from the stream: it takes back the slots not in
   * use but `keep` (it ran short), or all of them (its policy changed:
   * `policy` is the new one); "all" leaves every slot (a push of revocations).
   */
  recalled(streamKey: string, policy: ViewerPolicy | null, version: number, keep: number | "all"): RecallAnswer {
    // Not behind this shard's one-message-at-a-time lock: the stream may be holding this shard's own
    // message while it waits for this answer. Safe without it: the answer carries a newer sequence number than any message in
    // flight, so the stream applies whichever is newer and the shard ignores the older message's answer.
    this.setPolicy(streamKey, policy, version);
    const current = this.policies.get(streamKey)!.policy;
    const lease = this.leaseOf(streamKey);
    // Everything unused goes back, but `keep` slots for the next viewers here (a recall for slots, not a push);
    // "all": a push of revocations, which leaves every slot.
    if (current?.maxViewers === null) lease.granted = 0;
    else if (keep !== "all") lease.granted = Math.min(lease.granted, this.inUse(streamKey) + keep);
    lease.seq++;
    // A push that leaves the slots (new revocations) says nothing about how full the stream is.
    if (keep !== "all") lease.tight = true;
    // A refused shard keeps its hold: the stream tells it when slots are free (slotsFree), else 50 shards
    // recalled at the cap would all ask again at once.
    this.storeLease(streamKey, lease);
    const { place } = this.host.whereabouts();
    const handOffs = this.handing.get(streamKey);
    return {
      seq: lease.seq, granted: lease.granted, live: this.host.counts.live(streamKey), suspended: this.host.counts.suspended(streamKey), place,
      ...(handOffs?.length ? { handOffs: [...handOffs] } : {}),
      ...(lease.asking ? { askingSeq: lease.askingSeq } : {}),
    };
  }

  /** The stream has free slots again: a shard refused for want of them may ask at once. */
  slotsFree(streamKey: string): void {
    const lease = this.leases.get(streamKey);
    if (lease) {
      lease.fullUntil = 0;
      lease.wakes++;
    }
  }

  /** The alarm's first part: gives back the slots idle since LEASE_IDLE_MS after a stream's last admission here. */
  async giveBackIdle(now: number): Promise<void> {
    for (const [streamKey, lease] of this.leases) {
      if (lease.granted > this.inUse(streamKey) && now >= lease.lastAdmission + LEASE_IDLE_MS) {
        await this.giveBack(streamKey).catch((err) => logError("lease not given back", streamKey, err));
      }
    }
  }

  /**
   * The alarm's second part. A capped stream whose viewers here changed since it last heard hears from
   * the shard now and then (its record of this shard, which lease grants count on, stays fresh); an
   * unlimited stream counts on nothing of it (the admin API asks the shards). A stream without viewers
   * or slots here is left (its record there goes: src/stream/leases.ts); the record of a shard with
   * viewers stays, however long it is silent.
   */
  async reportChanged(now: number): Promise<void> {
    for (const [streamKey, lease] of [...this.leases]) {
      const live = this.host.counts.live(streamKey);
      const suspended = this.host.counts.suspended(streamKey);
      const held = live + suspended;
      const capped = this.policies.get(streamKey)?.policy?.maxViewers != null;
      const changed = lease.told !== `${live}/${suspended}`;
      if ((held > 0 && capped && changed && now - lease.lastMessage >= REPORT_EVERY_MS) || (held === 0 && lease.granted === 0)) {
        await this.reportToStream(streamKey, 0).catch((err) => logError("audience not reported", streamKey, err));
      }
    }
  }

  /** Slots unused somewhere (`idle`: the alarm gives them back), and a stream this shard still has to leave (`leaving`). */
  pendingWork(): { idle: boolean; leaving: boolean } {
    const c = this.host.counts;
    return {
      idle: [...this.leases].some(([k, l]) => l.granted > c.live(k)),
      // A stream this shard could not leave (the message failed) is left at a later alarm: else an unlimited
      // stream, which forgets no shard for its silence, would keep its record for good.
      leaving: [...this.leases].some(([k, l]) => l.granted === 0 && c.live(k) + c.suspended(k) === 0),
    };
  }

  /** A slot free for a viewer of this capped stream here (`own`: the admission's seat key, whose reserved slot counts as free for it). */
  hasSlot(streamKey: string, own?: string): boolean {
    const mine = own !== undefined && this.reserved.get(own) === streamKey ? 1 : 0;
    return this.inUse(streamKey) - mine < (this.leases.get(streamKey)?.granted ?? 0);
  }

  /** Slots in use: by live viewers, and reserved for admissions under way. */
  private inUse(streamKey: string): number {
    let n = this.host.counts.live(streamKey);
    for (const k of this.reserved.values()) if (k === streamKey) n++;
    return n;
  }

  /** Keeps a freed slot of the lease for the admission with this seat key (see `reserved`). */
  reserve(key: string, streamKey: string): void {
    this.reserved.set(key, streamKey);
  }

  /** The admission with this seat key was decided (its viewer counts now, or it was refused): its reserved slot is free. */
  unreserve(key: string): void {
    this.reserved.delete(key);
    this.expecting.delete(key);
  }

  /**
   * The admission with this seat key waits for a slot another shard hands over: whichever message of this shard's
   * is granted it (LeaseAnswer.handed), the slot is reserved for the admission, not taken by another viewer here.
   */
  expectHandOff(key: string, streamKey: string): void {
    this.expecting.set(key, streamKey);
  }

  /** The stream's policy for this stream, from the cache (changes are pushed; read again after POLICY_TTL_MS) or the stream. */
  async policyOf(streamKey: string): Promise<ViewerPolicy | null> {
    const cached = this.policies.get(streamKey);
    if (cached && cached.policy !== null && Date.now() - cached.at < POLICY_TTL_MS) return cached.policy;
    // Asking anyway: a capped stream's first slots come with the policy (an unlimited stream ignores `want`).
    await this.reportToStream(streamKey, this.hasSlot(streamKey) ? 0 : leaseWant(this.leases.get(streamKey)?.granted ?? 0));
    return this.policies.get(streamKey)?.policy ?? null;
  }

  /** The lease is used up: asks for more, once for all the hooks waiting (a second caller finds slots, or the hold). */
  async askForSlots(streamKey: string): Promise<void> {
    const lease = this.leaseOf(streamKey);
    if (Date.now() < lease.fullUntil) return;
    await this.exclusive(streamKey, async () => {
      if (this.hasSlot(streamKey) || Date.now() < lease.fullUntil) return;
      const wakes = lease.wakes;
      // The hold counts from when the message left, not from when its answer came back: the stream counts this
      // shard as waiting for WAITING_KEPT_MS from its refusal, which came later, however late the answer
      // arrives (this call has no deadline of its own). An answer later than WAIT_HOLD_MS sets no hold.
      const sent = Date.now();
      // A recall that reached this shard while the answer was on its way voids the answer (null: its grant
      // taken back); the stream did not count this shard as waiting then, so no hold: the next viewer asks again.
      const answer = await this.sendLeaseReport(streamKey, leaseWant(lease.granted));
      // Refused: the stream keeps this shard among those waiting, checks for slots itself (ghosts of silent
      // servers, slots unused elsewhere) and says when some are free; asking again meanwhile would only
      // cost it a call per waiting edge. The hold is there in case that word is lost. Only a shard the stream
      // counts as waiting holds: one it did not refuse (an unlimited stream, or a grant that covered this
      // shard's viewers when it was made and not since: its server's silent process came back meanwhile)
      // would hear of no free slot there, and refuse on its own for WAIT_HOLD_MS while slots were free.
      const waiting = answer !== null && answer.waiting !== false && answer.policy?.maxViewers != null;
      if (waiting && !this.hasSlot(streamKey) && lease.wakes === wakes) lease.fullUntil = sent + WAIT_HOLD_MS;
    });
  }

  /** Gives back every slot no live viewer uses. */
  private async giveBack(streamKey: string): Promise<void> {
    await this.exclusive(streamKey, async () => {
      const lease = this.leaseOf(streamKey);
      const live = this.inUse(streamKey);
      if (lease.granted <= live) return;
      // Shrinks here first (stored), then tells the stream: never above the stream's record.
      lease.granted = live;
      // The stream has these slots free now: a viewer here that needs one may ask at once (a hook being
      // decided while its restart's fence gave its old process's slots back would otherwise be held off).
      lease.fullUntil = 0;
      this.storeLease(streamKey, lease);
      await this.sendLeaseReport(streamKey, 0);
    });
  }

  /** A tight stream (no free slot) gets back at once each slot freed here. */
  giveBackIfTight(streamKey: string): void {
    const lease = this.leases.get(streamKey);
    if (lease?.tight && lease.granted > this.inUse(streamKey)) {
      // The give-back waits for a message on its way; that message's answer takes the slot back at once (sendLeaseReport).
      if (lease.asking) lease.freedWhileAsking = true;
      this.host.waitUntil(this.giveBack(streamKey).catch((err) => logError("lease not given back", streamKey, err)));
    } else if (lease?.tight && this.host.counts.live(streamKey) >= lease.granted) {
      // The viewer that ended was over the lease (admitted before the stream had a cap, or kept under a cap lowered
      // beneath it): the stream counts this shard by its viewers, so their count goes to it now, as a slot would.
      // Else that slot stays taken there until this shard's next message (its alarm's report, minutes later).
      this.reportSoon(streamKey);
    }
  }

  /**
   * A report of the lease and the audience, in the background, sent once for every change made before it leaves:
   * viewers ending in one batch (an operator's end of every session, a revocation) or slots taken back one by one cost
   * the stream one message, not one each, all queued behind this stream's lock (this shard's admissions waiting behind
   * them). The report reads the lease and the counts when it leaves.
   */
  private reportSoon(streamKey: string, failure = "lease not given back"): void {
    if (this.reportQueued.has(streamKey)) return;
    this.reportQueued.add(streamKey);
    const report = this.exclusive(streamKey, () => {
      this.reportQueued.delete(streamKey);
      return this.sendLeaseReport(streamKey, 0);
    });
    this.host.waitUntil(report.catch((err) => logError(failure, streamKey, err)));
  }

  /**
   * Slots a viewer waiting here freed by ending ghosts (kept for it: endViewer's keepSlot) go back if the lease is
   * tight, here first: they may have covered viewers over the cap (a cap lowered under them, a heal), which only the
   * stream can tell. True if some went: the viewer asks for slots again (that message tells the stream), and is
   * granted one only if the stream has one free. Kept, the viewer was admitted on a ghost's slot past the cap.
   */
  returnIfTight(streamKey: string): boolean {
    const lease = this.leases.get(streamKey);
    const live = this.inUse(streamKey);
    if (!lease?.tight || lease.granted <= live) return false;
    lease.fullUntil = 0;
    this.shrink(streamKey, lease, live, false);
    return true;
  }

  /**
   * One slot freed on a tight lease while a viewer is being admitted here (a session ended for its newer one: the
   * seats object's "replace") goes back, here first; the unused slots beside it stay for the admissions under way.
   * The freed slot may have covered its viewer over a cap lowered under it (the push took the unused ones): kept, the
   * newer session was admitted on it past the cap.
   */
  giveBackOneIfTight(streamKey: string): void {
    const lease = this.leases.get(streamKey);
    if (!lease?.tight || lease.granted <= this.inUse(streamKey)) return;
    this.shrink(streamKey, lease, lease.granted - 1, true);
  }

  /**
   * Can a session of this capped stream ending here hand its slot to its viewer's newer session on another edge
   * (handOff)? Only if the lease holds that slot: not a session of a stream this shard holds no lease of, nor one
   * over its lease (live viewers a heal or a lowered cap left beyond it: their slots are the stream's cover). Read
   * from the lease alone, which is stored (an unlimited stream's is 0): the policy is not, and a shard restarted
   * since its stream's last hook has none cached.
   */
  canHandOff(streamKey: string): boolean {
    const lease = this.leases.get(streamKey);
    return lease !== undefined && lease.granted > 0 && lease.granted >= this.inUse(streamKey);
  }

  /**
   * Runs `step` holding this stream's message lock (no message of this shard to the stream on its way, and none sent
   * until it is done), if the lock comes within `waitMs`; else null, and `step` never runs.
   */
  async locked<T>(streamKey: string, waitMs: number, step: () => Promise<T>): Promise<T | null> {
    let started = false;
    let abandoned = false;
    const run = this.exclusive(streamKey, () => {
      if (abandoned) return null;
      started = true;
      return step();
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, waitMs)));
    await Promise.race([run.catch(() => {}), late]);
    clearTimeout(timer);
    if (!started) {
      abandoned = true;
      return null;
    }
    return run;
  }

  /**
   * The slot of a session that just ended here (endViewer's keepSlot) goes to the viewer shard of server `to`, where
   * the session's viewer is being admitted at a full stream: taken back here first, then this message tells the
   * stream, which moves it to that shard (src/stream/leases.ts handOver). The caller holds the lock (locked) and ended
   * the session in the same step: no message of this shard crosses it, and a recall that overtakes it names it
   * (RecallAnswer.handOffs). False: the message did not arrive.
   */
  async sendHandOff(streamKey: string, to: string): Promise<boolean> {
    const lease = this.leaseOf(streamKey);
    this.shrink(streamKey, lease, Math.max(0, lease.granted - 1), false);
    const handOff = { to, id: crypto.randomUUID() };
    this.handing.set(streamKey, [...(this.handing.get(streamKey) ?? []), handOff]);
    try {
      await this.sendLeaseReport(streamKey, 0, handOff);
      return true;
    } catch (err) {
      logError("slot not handed over", streamKey, err);
      return false;
    } finally {
      const left = (this.handing.get(streamKey) ?? []).filter((h) => h !== handOff);
      if (left.length > 0) this.handing.set(streamKey, left);
      else this.handing.delete(streamKey);
    }
  }

  /**
   * Takes slots back here first (a lease shrinks here before the stream hears of it); a message on its way must
   * then not hand them out again (sendLeaseReport). `tell`: the stream hears of it now (else the caller's next
   * message tells it).
   */
  private shrink(streamKey: string, lease: Lease, granted: number, tell: boolean): void {
    if (lease.asking) lease.freedWhileAsking = true;
    lease.granted = granted;
    this.storeLease(streamKey, lease);
    if (tell) this.reportSoon(streamKey);
  }

  /** A returning process may hold more viewers than the lease: the stream must count them (they all count after a heal). */
  coverHealed(): void {
    for (const [streamKey, lease] of this.leases) {
      const policy = this.policies.get(streamKey)?.policy;
      if (policy?.maxViewers != null && this.host.counts.live(streamKey) > lease.granted) {
        this.reportSoon(streamKey, "healed viewers not reported");
      }
    }
  }

  /** A message about the stream (asking for `want` more slots, or none), in turn with the others. */
  private async reportToStream(streamKey: string, want: number): Promise<void> {
    await this.exclusive(streamKey, () => this.sendLeaseReport(streamKey, want));
  }

  /** One message to the stream (the caller holds the stream's lock); its answer, or null if void (it answered an older message). */
  private async sendLeaseReport(streamKey: string, want: number, handOff?: HandOff): Promise<LeaseAnswer | null> {
    const lease = this.leaseOf(streamKey);
    const { serverId, place } = this.host.whereabouts();
    lease.seq++;
    lease.lastMessage = Date.now();
    const report: LeaseReport = {
      streamKey,
      serverId,
      seq: lease.seq,
      granted: lease.granted,
      live: this.host.counts.live(streamKey),
      suspended: this.host.counts.suspended(streamKey),
      want,
      place,
      ...(handOff ? { handOff } : {}),
    };
    // The sequence number is stored before the message leaves (the output gate holds the call until it is):
    // a restarted shard never reuses one. A stream that never granted anything here needs no row.
    const stored = lease.granted > 0 || this.hasLeaseRow(streamKey);
    if (stored) this.storeLease(streamKey, lease);
    // A message saying the shard holds nothing makes the stream forget it (it leaves): the policy goes here
    // first, so a viewer arriving meanwhile asks the stream again, behind this message, and is recorded
    // there before it is admitted (else an unlimited stream's shard admitted it on the cached policy,
    // unknown to the stream: not in its totals, and missed by the push of a cap set later).
    if (isLeave(report)) this.policies.delete(streamKey);
    lease.asking = true;
    lease.askingSeq = report.seq;
    lease.freedWhileAsking = false;
    let answer: LeaseAnswer;
    try {
      answer = await nested("stream object", () => streamObject(this.env, streamKey), (s) => s.viewerLease(report));
    } finally {
      lease.asking = false;
    }
    lease.told = `${report.live}/${report.suspended}`;
    if (answer.policy === null && lease.granted === 0 && !stored) {
      // No such stream (a typo, a flood of made-up names): nothing kept.
      this.leases.delete(streamKey);
      this.policies.delete(streamKey);
      return answer;
    }
    this.setPolicy(streamKey, answer.policy, answer.version);
    // An answer to an older message is void; a newer record than this shard's means the shard lost its own: adopted.
    if (answer.seq < lease.seq) {
      // A recall or push crossed it (it left the lease as it answered, tight). A slot freed on that tight lease since
      // goes back here first, as below: kept, the caller (a viewer waiting for slots) was admitted on it before the
      // give-back queued behind this message ran, past a cap the push lowered to 0.
      const liveNow = this.inUse(streamKey);
      // The queued give-back finds nothing to give back then: the stream hears of it from this report.
      if (lease.freedWhileAsking && lease.tight && lease.granted > liveNow) this.shrink(streamKey, lease, liveNow, true);
      return null;
    }
    lease.seq = answer.seq;
    // Stored with the lease when it changes: a shard restarted (evicted) while its slots cover viewers over a lowered
    // cap must still give each back as its viewer leaves, not keep it for the next viewer, past the cap.
    const tightChanged = lease.tight !== answer.tight;
    lease.tight = answer.tight;
    // Slots granted to cover viewers live here when the message left, beyond the lease (a heal, a cap lowered under
    // them: LeaseBook.apply), are never free slots: those of viewers that ended while the answer was on its way (a
    // restart's fence) go at once, here first, and the stream hears of it; kept, the next viewer here was admitted
    // on one, past the cap.
    const cover = Math.max(0, Math.min(answer.granted, report.live) - report.granted);
    // A slot reserved here since the message left (its session ended for the viewer's newer one here) is in use.
    const liveNow = this.inUse(streamKey);
    // Slots freed on a tight lease while the message was on its way go back as giveBackIfTight would have sent them
    // (its give-back waits behind this message): only the slots this answer grants anew stay free. Kept, the next
    // viewer here took the slot of one that ended, past a cap lowered under them (an operator ending every session).
    const grantedAnew = Math.max(0, answer.granted - Math.max(report.granted, report.live));
    const freed = lease.freedWhileAsking && answer.tight ? Math.max(0, answer.granted - Math.min(answer.granted, liveNow + grantedAnew)) : 0;
    const uncovered = Math.max(freed, Math.min(cover, Math.max(0, report.live - liveNow)));
    if (answer.granted - uncovered !== lease.granted || (!stored && answer.policy !== null) || (tightChanged && (stored || lease.granted > 0))) {
      lease.granted = answer.granted - uncovered;
      this.storeLease(streamKey, lease);
    }
    if (uncovered > 0) this.reportSoon(streamKey);
    // Slots handed over for admissions under way here: reserved for them (after the lease took this answer: they are in it).
    for (let n = answer.handed ?? 0, keys = [...this.expecting]; n > 0 && keys.length > 0; ) {
      const [key, of] = keys.shift()!;
      if (of === streamKey && !this.reserved.has(key)) {
        this.reserve(key, streamKey);
        n--;
      }
    }
    if (lease.granted > this.host.counts.live(streamKey)) this.host.armAlarm(Date.now() + LEASE_IDLE_MS);
    if (isLeave(report) && holdsNothing({ granted: lease.granted, live: this.inUse(streamKey), suspended: this.host.counts.suspended(streamKey) })) {
      // The shard left the stream (it forgot this shard): the policy is read again with the next viewer.
      this.policies.delete(streamKey);
      this.leases.delete(streamKey);
      if (this.tables.ready) {
        this.tables.sql.exec("DELETE FROM leases WHERE stream_key = ?", streamKey);
        if (lease.seq > this.seqFloor) {
          this.seqFloor = lease.seq;
          this.tables.sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES ('lease_seq_floor', ?)", String(lease.seq));
        }
      }
    }
    return answer;
  }

  /** One message per stream at a time: a step runs after the stream's previous one settled. */
  private exclusive<T>(streamKey: string, step: () => T | Promise<T>): Promise<T> {
    const before = this.locks.get(streamKey) ?? Promise.resolve();
    const run = before.catch(() => {}).then(step);
    const tail = run.catch(() => {});
    this.locks.set(streamKey, tail);
    void tail.then(() => {
      if (this.locks.get(streamKey) === tail) this.locks.delete(streamKey);
    });
    return run;
  }

  private leaseOf(streamKey: string): Lease {
    let lease = this.leases.get(streamKey);
    if (!lease) {
      const row = this.tables.rows<{ granted: number; seq: number; tight: number }>("SELECT granted, seq, tight FROM leases WHERE stream_key = ?", streamKey)[0];
      lease = fresh(row?.granted ?? 0, row?.seq ?? this.seqFloor, row?.tight === 1);
      this.leases.set(streamKey, lease);
    }
    return lease;
  }

  /** Keeps the newest policy told (a recall and an answer may arrive out of order). */
  private setPolicy(streamKey: string, policy: ViewerPolicy | null, version: number): void {
    const cached = this.policies.get(streamKey);
    if (cached && cached.version > version) return;
    this.policies.set(streamKey, { policy, version, at: Date.now() });
    this.host.policyChanged(streamKey, policy);
  }

  private hasLeaseRow(streamKey: string): boolean {
    return this.tables.rows("SELECT 1 AS x FROM leases WHERE stream_key = ?", streamKey).length > 0;
  }

  private storeLease(streamKey: string, lease: Lease): void {
    this.tables.prepare();
    this.tables.sql.exec("INSERT OR REPLACE INTO leases (stream_key, granted, seq, tight) VALUES (?, ?, ?, ?)", streamKey, lease.granted, lease.seq, lease.tight ? 1 : 0);
  }
}

function fresh(granted: number, seq: number, tight = false): Lease {
  return { granted, seq, tight, fullUntil: 0, wakes: 0, lastAdmission: 0, lastMessage: 0, told: "", asking: false, askingSeq: 0, freedWhileAsking: false };
}
