import { addColumns } from "../platform/sql";
import { HAND_OFF_KEPT_MS, holdsNothing, isLeave, WAIT_HOLD_MS, type HandOff, type LeaseReport, type Place, type RecallAnswer } from "../viewers/lease";

/**
 * A shard refused for want of slots counts as waiting this long after its last refusal: its own hold
 * (WAIT_HOLD_MS, from when the refusal reached it) is over by then, with the hook deadline to spare.
 */
export const WAITING_KEPT_MS = WAIT_HOLD_MS + 10_000;

/** How a grant counts suspended viewers (see LeaseBook.apply). */
export type GrantMode = "strict" | "cautious";

/** The stream's record of one viewer shard's lease. */
export interface LeaseRecord {
  serverId: string;
  granted: number;
  /** The newest message of the shard applied. */
  seq: number;
  /** As the shard last reported them. */
  live: number;
  suspended: number;
  colo: string;
  country: string;
  /** When the shard last told the stream anything. */
  reportedAt: number;
  /**
   * A recall or a policy push could not reach the shard: how many viewers it
   * holds is unknown, so no slot is granted to anyone until it is heard
   * from (a refusal too many, never a viewer too many).
   */
  unreached: boolean;
}

interface LeaseRow extends Record<string, SqlStorageValue> {
  server_id: string;
  granted: number;
  seq: number;
  live: number;
  suspended: number;
  colo: string;
  country: string;
  reported_at: number;
  unreached: number;
}

/**
 * A shard whose record of a capped stream shows nothing here, silent this long, is forgotten. A
 * shard leaves a stream itself (a message saying it holds nothing) when it has neither viewers nor
 * slots of it; this catches records whose shard never said so. Longer than POLICY_TTL_MS: a shard
 * whose record is gone re-reads the policy (and so is recorded again) before it admits anyone on
 * its cached one. A record showing viewers or slots is never forgotten, and an unlimited stream's
 * records (which never show viewers: shards tell such a stream nothing but that they read its
 * policy or leave) only when their shard leaves.
 */
export const IDLE_LEASE_FORGOTTEN_MS = 15 * 60_000;
/** The ids of hand-offs moved are kept this long (far past a message's or a recall answer's way). */
const HAND_OFF_IDS_KEPT_MS = 10 * 60_000;

/** Shards that left, remembered for their decision logs. */
const LEFT_SHARDS_KEPT = 20;

/**
 * The stream's side of the lease protocol (src/viewers/lease.ts): what it
 * granted each viewer shard, so that the grants never add up to more than
 * maxViewers. Every shard that asked for the policy has a row, so a change of
 * policy can be pushed to all of them. Synchronous, like the rest of a
 * decision in the stream object.
 */
export class LeaseBook {
  static schema = `
    CREATE TABLE IF NOT EXISTS leases (
      server_id TEXT PRIMARY KEY, granted INTEGER NOT NULL, seq INTEGER NOT NULL,
      live INTEGER NOT NULL, suspended INTEGER NOT NULL, colo TEXT NOT NULL, country TEXT NOT NULL,
      reported_at INTEGER NOT NULL, unreached INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS left_shards (server_id TEXT PRIMARY KEY, at INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS lease_waiting (server_id TEXT PRIMARY KEY, since INTEGER NOT NULL, until INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS lease_handed (server_id TEXT PRIMARY KEY, n INTEGER NOT NULL, until INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS lease_hand_offs (id TEXT PRIMARY KEY, at INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS lease_handed_last (server_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, n INTEGER NOT NULL) WITHOUT ROWID;`;

  private records = new Map<string, LeaseRecord>();
  /** Shards last told the stream was tight, by an answer or a recall (memory only: mayHoldUnseen). */
  private tight = new Set<string>();
  /**
   * Slots handed to a shard by another (LeaseReport.handOff), in its record already, that its next message is
   * granted: until then that message's own report (which does not know of them) must not take them back. Stored
   * (table lease_handed, a row only while a hand-off waits): a stream restarted meanwhile still owes them.
   */
  private handedTo = new Map<string, { n: number; until: number }>();
  /** The message of a shard last applied, if it was granted slots handed to it: its sequence number, and how many (stored). */
  private lastHanded = new Map<string, { seq: number; n: number }>();

  constructor(
    private sql: SqlStorage,
    /** A shard's record went (it left, or was forgotten holding nothing): it holds no viewer of the stream until its next message. */
    private forgotten: (serverId: string) => void = () => {},
  ) {
    // Waiting shards of a version that kept them until told: kept as if just refused.
    addColumns(sql, "lease_waiting", { until: "INTEGER NOT NULL DEFAULT 0" });
    sql.exec("UPDATE lease_waiting SET until = ? WHERE until = 0", Date.now() + WAITING_KEPT_MS);
    for (const r of sql.exec<{ server_id: string; n: number; until: number }>("SELECT * FROM lease_handed")) {
      this.handedTo.set(r.server_id, { n: r.n, until: r.until });
    }
    for (const r of sql.exec<{ server_id: string; seq: number; n: number }>("SELECT * FROM lease_handed_last")) {
      this.lastHanded.set(r.server_id, { seq: r.seq, n: r.n });
    }
    for (const r of sql.exec<LeaseRow>("SELECT * FROM leases")) {
      this.records.set(r.server_id, {
        serverId: r.server_id, granted: r.granted, seq: r.seq, live: r.live, suspended: r.suspended,
        colo: r.colo, country: r.country, reportedAt: r.reported_at, unreached: r.unreached === 1,
      });
    }
  }

  /**
   * Shards refused for want of slots, oldest first: they hold their viewers'
   * questions until told that slots are free, or for WAIT_HOLD_MS (stored, so
   * that a restarted stream still tells them). One refused no more for
   * WAITING_KEPT_MS is not waiting any more: its hold is over, its next viewer
   * asks again, and the stream's rounds for it stop (a full stream nobody
   * tries to join costs no round of recalls, nor its edges' APIs a question,
   * every 8 s for as long as it stays full).
   */
  waiting(): string[] {
    return this.sql
      .exec<{ server_id: string }>("SELECT server_id FROM lease_waiting WHERE until > ? ORDER BY since, server_id", Date.now())
      .toArray()
      .map((r) => r.server_id);
  }

  /** A shard refused for want of slots (again): waiting since its first refusal, until WAITING_KEPT_MS after this one. */
  wait(serverId: string): void {
    const now = Date.now();
    this.sql.exec("DELETE FROM lease_waiting WHERE until <= ?", now);
    this.sql.exec(
      "INSERT INTO lease_waiting (server_id, since, until) VALUES (?, ?, ?) ON CONFLICT (server_id) DO UPDATE SET until = excluded.until",
      serverId, now, now + WAITING_KEPT_MS,
    );
  }

  /** Is the shard among those waiting (see waiting())? */
  isWaiting(serverId: string): boolean {
    return this.sql.exec("SELECT 1 FROM lease_waiting WHERE server_id = ? AND until > ?", serverId, Date.now()).toArray().length > 0;
  }

  woken(serverIds: string[]): void {
    for (const id of serverIds) this.sql.exec("DELETE FROM lease_waiting WHERE server_id = ?", id);
  }

  /** Slots granted to every shard. */
  get granted(): number {
    let n = 0;
    for (const r of this.records.values()) n += r.granted;
    return n;
  }

  /** Slots no shard holds (negative after a heal brought back more viewers than the cap; 0 while a shard is unreached). */
  free(cap: number): number {
    return this.anyUnreached() ? Math.min(0, cap - this.granted) : cap - this.granted;
  }

  shards(): LeaseRecord[] {
    return [...this.records.values()];
  }

  /** What the stream's answer to a message of the shard said: tight (it gives back each slot it frees) or not. */
  toldTight(serverId: string, tight: boolean): void {
    if (tight) this.tight.add(serverId);
    else this.tight.delete(serverId);
  }

  /**
   * The shard may hold unused slots its record does not show: told last that the stream was not tight, it keeps the
   * slots its viewers free for its next viewers, and says so only at its next message (its alarm's report, minutes
   * later). A stream restarted since knows no shard as tight.
   */
  mayHoldUnseen(r: LeaseRecord): boolean {
    return r.granted > 0 && !this.tight.has(r.serverId);
  }

  /**
   * Slots free for the shard of `report` (null: for anyone), counting every
   * shard's suspended viewers as holding slots: their servers may come back,
   * and then every connected viewer counts.
   */
  strictFree(report: LeaseReport | null, cap: number): number {
    if (this.anyUnreached(report?.serverId)) return 0;
    let held = report ? Math.max(report.granted, report.live + report.suspended) + this.handed(report.serverId) : 0;
    for (const r of this.records.values()) {
      if (r.serverId !== report?.serverId) held += Math.max(r.granted, r.live + r.suspended);
    }
    return cap - held;
  }

  /** Slots that would be free if every shard held only its viewers (live or suspended), by their last reports. */
  freeIfShrunk(cap: number): number {
    let held = 0;
    for (const r of this.records.values()) held += r.live + r.suspended;
    return cap - held;
  }

  anyUnreached(besides?: string): boolean {
    for (const r of this.records.values()) if (r.unreached && r.serverId !== besides) return true;
    return false;
  }

  /** A new policy not pushed yet: no shard has it (see LeaseRecord.unreached). */
  allUnreached(): void {
    for (const r of [...this.records.values()]) if (!r.unreached) this.store({ ...r, unreached: true });
  }

  /** A recall or push did not reach the shard (see LeaseRecord.unreached). */
  unreached(serverId: string): void {
    const r = this.records.get(serverId);
    if (r && !r.unreached) this.store({ ...r, unreached: true });
  }

  /**
   * Would a grant to this shard need slots that are free only because other
   * shards' viewers are suspended (their servers silent, by the shards' last
   * reports)? Then the stream checks those servers first, and grants one
   * slot at most (one admission resting on them), never a chunk.
   */
  restsOnSuspended(report: LeaseReport, cap: number | null): boolean {
    if (cap === null) return false;
    return this.strictFree(report, cap) <= 0 && this.looseFree(report, cap) > 0;
  }

  /**
   * Applies a shard's message and grants what it asks for, as far as `cap`
   * allows (null: unlimited, nothing to grant): "strict" from the slots free
   * even if every suspended viewer came back, "cautious" one slot of those
   * free now. A repeat or an older message changes nothing and gets the
   * record as it stands. Slots for the shard's live viewers are always
   * granted (the grant comes on top of them), beyond the cap if need be: after a heal every connected viewer
   * counts (README, "Viewers over the cap after a heal all count"), and no
   * new one is admitted until the total is under it.
   */
  apply(report: LeaseReport, cap: number | null, mode: GrantMode): { record: LeaseRecord; applied: boolean } {
    const known = this.records.get(report.serverId);
    // Answered with the record as it stands (the answer leaves out the slots still owed to the shard: granted()).
    if (known && report.seq <= known.seq) return { record: known, applied: false };
    if (isLeave(report) && this.handed(report.serverId) === 0) {
      // The shard leaves: nothing here, and it forgets the policy, so no push needs to reach it.
      if (known) this.forget(report.serverId);
      if (report.handOff) this.handOver([report.handOff], known ? known.granted : 0, cap);
      return { record: { ...report, colo: "", country: "", reportedAt: Date.now(), unreached: false }, applied: true };
    }
    // Slots another shard handed to this one since its last message: granted now (on top of what it reports).
    const handed = this.handed(report.serverId);
    this.dropHanded(report.serverId);
    this.setLastHanded(report.serverId, handed > 0 ? { seq: report.seq, n: handed } : null);
    const holding = handed > 0 ? { ...report, granted: Math.max(report.granted, report.live) + handed } : report;
    const grant = cap === null ? 0 : this.grant(holding, cap, mode);
    // The grant is of slots free above what the shard holds, its live viewers included (strictFree, looseFree): a
    // lease below them (a cap set on a stream that was unlimited, a heal) grows by it from them, not from the lease.
    const granted = cap === null ? 0 : Math.max(holding.granted, report.live) + grant;
    const record = this.store({
      serverId: report.serverId, granted, seq: report.seq, live: report.live, suspended: report.suspended,
      ...placeOf(report.place, known), reportedAt: Date.now(), unreached: false,
    });
    if (report.handOff && report.handOff.to !== report.serverId) this.handOver([report.handOff], known ? known.granted - granted : 0, cap);
    this.forgetIdle(cap);
    return { record, applied: true };
  }

  /**
   * A shard's message that hands a slot to another shard (LeaseReport.handOff: the session it ended made way for its
   * viewer's newer session there, at a full stream): one of the slots this message gave back moves to that shard's
   * record, so no other shard is granted it meanwhile, and that shard's next message is granted it. The slot
   * changes hands, the total the stream counts does not: at or over the cap, a viewer replacing its own session is
   * admitted in its place. A message that gave nothing back (its slot went back with an earlier one) moves nothing.
   */
  private handOver(handOffs: HandOff[], freed: number, cap: number | null): void {
    if (cap === null) return;
    for (const { to, id } of handOffs) {
      // Named: the message and a recall's answer that overtook it (which names the hand-offs on their way) move it once.
      if (freed < 1 || this.sql.exec("SELECT 1 FROM lease_hand_offs WHERE id = ?", id).toArray().length > 0) continue;
      this.sql.exec("DELETE FROM lease_hand_offs WHERE at < ?", Date.now() - HAND_OFF_IDS_KEPT_MS);
      this.sql.exec("INSERT INTO lease_hand_offs (id, at) VALUES (?, ?)", id, Date.now());
      freed--;
      const r = this.records.get(to);
      this.store(r ? { ...r, granted: r.granted + 1 } : { serverId: to, granted: 1, seq: 0, live: 0, suspended: 0, colo: "", country: "", reportedAt: Date.now(), unreached: false });
      this.owe(to, 1);
    }
  }

  /** Notes (or forgets) the shard's last applied message that was granted handed slots (a recall crossing its answer owes them again). */
  private setLastHanded(serverId: string, last: { seq: number; n: number } | null): void {
    if (last) {
      this.lastHanded.set(serverId, last);
      this.sql.exec("INSERT OR REPLACE INTO lease_handed_last (server_id, seq, n) VALUES (?, ?, ?)", serverId, last.seq, last.n);
    } else if (this.lastHanded.delete(serverId)) {
      this.sql.exec("DELETE FROM lease_handed_last WHERE server_id = ?", serverId);
    }
  }

  /** `n` slots in the shard's record that its next message is granted (see handedTo). */
  private owe(serverId: string, n: number): void {
    const h = { n: this.handed(serverId) + n, until: Date.now() + HAND_OFF_KEPT_MS };
    this.handedTo.set(serverId, h);
    this.sql.exec("INSERT OR REPLACE INTO lease_handed (server_id, n, until) VALUES (?, ?, ?)", serverId, h.n, h.until);
  }

  /** The slots handed to the shard are granted (or gone): no longer owed. */
  private dropHanded(serverId: string): void {
    if (this.handedTo.delete(serverId)) this.sql.exec("DELETE FROM lease_handed WHERE server_id = ?", serverId);
  }

  /** Slots handed to this shard that its next message is granted (none once HAND_OFF_KEPT_MS passed). */
  private handed(serverId: string): number {
    const h = this.handedTo.get(serverId);
    if (h && h.until > Date.now()) return h.n;
    if (h) this.dropHanded(serverId);
    return 0;
  }

  /**
   * The lease an answer to the shard carries: its record but the slots still owed to it (handed over, not granted yet
   * by an applied message). An answer to a message not applied (a repeat, or one a recall crossed) may be adopted by the
   * shard; carrying them, its next message would be granted them a second time, and leaving them out of the record
   * instead would lose them to a late duplicate nobody adopts. Owed, the shard's next message is granted them.
   */
  answered(record: LeaseRecord): number {
    return Math.max(0, record.granted - this.handed(record.serverId));
  }

  /** The slots handed to the shard that its message `seq`, the last applied, was granted (0: none, or not that message). */
  handedIn(serverId: string, seq: number): number {
    const last = this.lastHanded.get(serverId);
    return last && last.seq === seq ? last.n : 0;
  }

  /** A new policy: slots handed between shards and not granted yet go back to the pool (its cap holds for them too). */
  dropHandOffs(): void {
    if (this.lastHanded.size > 0) {
      // Nor is one a push's recall voided owed again past the new cap.
      this.lastHanded.clear();
      this.sql.exec("DELETE FROM lease_handed_last");
    }
    if (this.handedTo.size === 0) return;
    this.handedTo.clear();
    this.sql.exec("DELETE FROM lease_handed");
  }

  /** Adds free slots to a record whose answer has not left yet (after a recall freed some). */
  topUp(report: LeaseReport, cap: number, mode: GrantMode): LeaseRecord {
    const r = this.records.get(report.serverId)!;
    const grant = this.grant({ ...report, granted: r.granted }, cap, mode);
    return grant === 0 ? r : this.store({ ...r, granted: r.granted + grant });
  }

  private grant(report: LeaseReport, cap: number, mode: GrantMode): number {
    const want = report.want;
    if (mode === "strict") return share(want, this.strictFree(report, cap), report.granted, cap, this.holders(report.serverId));
    return Math.min(1, share(report.want, this.looseFree(report, cap), report.granted, cap, this.holders(report.serverId)));
  }

  /** Shards holding slots or viewers of the stream, the one asking included. */
  private holders(asking: string): number {
    let n = 1;
    for (const r of this.records.values()) if (r.serverId !== asking && !holdsNothing(r)) n++;
    return n;
  }

  /**
   * Slots free for the shard of `report` (null: for anyone), not counting suspended viewers (0 while
   * another shard is unreached): a grant resting on suspended viewers' slots is one slot, after their
   * shards checked their servers.
   */
  looseFree(report: LeaseReport | null, cap: number): number {
    if (this.anyUnreached(report?.serverId)) return 0;
    // Live viewers hold their slots whatever their lease says (after a heal, or a cap set on an unlimited stream).
    let held = report ? Math.max(report.granted, report.live) + this.handed(report.serverId) : 0;
    for (const r of this.records.values()) if (r.serverId !== report?.serverId) held += Math.max(r.granted, r.live);
    return cap - held;
  }

  /** A shard's answer to a recall: applied if newer than what the stream has of it. `tightens`: the recall left it tight. */
  recalled(serverId: string, answer: RecallAnswer, cap: number | null = null, tightens = true): void {
    const known = this.records.get(serverId);
    if (known && answer.seq <= known.seq) return;
    if (tightens) this.tight.add(serverId);
    // A push that leaves the slots says nothing of how full the stream is, and voids the answer to a message of the
    // shard on its way (asking): that answer's `tight` never reached the shard, which may still hold unseen slots.
    else if (answer.askingSeq !== undefined) this.tight.delete(serverId);
    // Handed slots granted to the shard's message still on its way: this recall voids that answer there (its sequence
    // number is older), so they are owed again to its next message, not freed for another shard.
    const last = this.lastHanded.get(serverId);
    this.setLastHanded(serverId, null);
    if (last && known && last.seq === known.seq && answer.askingSeq === last.seq) this.owe(serverId, last.n);
    // A slot handed to the shard and not granted yet stays in its record (the shard does not hold it yet).
    const granted = answer.granted + this.handed(serverId);
    this.store({
      serverId, granted, seq: answer.seq, live: answer.live, suspended: answer.suspended,
      ...placeOf(answer.place, known), reportedAt: Date.now(), unreached: false,
    });
    // Slots it handed to other shards in a message this answer overtook: moved now (the message, older, moves nothing).
    if (answer.handOffs?.length) this.handOver(answer.handOffs, known ? known.granted - granted : 0, cap);
  }

  /** Shards that hold nothing here and said nothing for IDLE_LEASE_FORGOTTEN_MS: their records go. */
  private forgetIdle(cap: number | null): void {
    // An unlimited stream hears from a shard only when it reads the policy and when it leaves, so its
    // records never show the shard's viewers: they go when the shard leaves, never for silence.
    if (cap === null) return;
    const before = Date.now() - IDLE_LEASE_FORGOTTEN_MS;
    for (const r of [...this.records.values()]) {
      if (holdsNothing(r) && !r.unreached && r.reportedAt < before) this.forget(r.serverId);
    }
  }

  /**
   * Drops a shard's record; the shard is remembered apart (the most recent
   * LEFT_SHARDS_KEPT), because its decision log still holds this stream's
   * viewer decisions (GET …/events).
   */
  private forget(serverId: string): void {
    this.records.delete(serverId);
    this.tight.delete(serverId);
    this.setLastHanded(serverId, null);
    this.dropHanded(serverId);
    this.sql.exec("DELETE FROM leases WHERE server_id = ?", serverId);
    this.sql.exec("DELETE FROM lease_waiting WHERE server_id = ?", serverId);
    this.sql.exec("INSERT OR REPLACE INTO left_shards (server_id, at) VALUES (?, ?)", serverId, Date.now());
    this.sql.exec("DELETE FROM left_shards WHERE server_id NOT IN (SELECT server_id FROM left_shards ORDER BY at DESC LIMIT ?)", LEFT_SHARDS_KEPT);
    this.forgotten(serverId);
  }

  /** Every shard whose log may hold this stream's decisions: those with a record, and those that left lately. */
  logSources(): string[] {
    const left = this.sql.exec<{ server_id: string }>("SELECT server_id FROM left_shards").toArray().map((r) => r.server_id);
    return [...new Set([...this.records.keys(), ...left])];
  }

  private store(r: LeaseRecord): LeaseRecord {
    this.records.set(r.serverId, r);
    this.sql.exec(
      "INSERT OR REPLACE INTO leases (server_id, granted, seq, live, suspended, colo, country, reported_at, unreached) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
      r.serverId, r.granted, r.seq, r.live, r.suspended, r.colo, r.country, r.reportedAt, r.unreached ? 1 : 0,
    );
    return r;
  }
}

/**
 * What one request gets of the free slots: what it wants, but no more than it
 * takes to bring the shard to an even split of the cap among the shards that
 * hold slots or viewers (`holders`, the one asking included; if it holds that
 * much already, a share of what is free as if split evenly among them); and a
 * shard holding nothing yet gets at most half of what is free (at least one),
 * since more shards may be about to ask. So near the cap one early shard does
 * not hold the last slots while the others must wait for a recall, a crowd
 * spread over many edges is served with about two requests per edge (a first
 * chunk, then the rest of its even split) instead of grants that halve as the
 * stream fills, and a big pool is unaffected (a flash crowd's shards get their
 * chunks whole).
 */
export function share(want: number, free: number, held = 0, cap = Infinity, holders = 1): number {
  if (free <= 0 || want <= 0) return 0;
  const even = Math.ceil(cap / holders) - held;
  const fair = even > 0 ? even : Math.ceil(free / holders);
  const first = held === 0 ? Math.ceil(free / 2) : free;
  return Math.max(1, Math.min(want, first, fair));
}

function placeOf(place: Place, known: LeaseRecord | undefined): { colo: string; country: string } {
  return place.colo ? { colo: place.colo, country: place.country } : { colo: known?.colo ?? "", country: known?.country ?? "" };
}
