/**
 * The lease protocol between a stream's object (the authority for its viewer
 * budget) and the viewer shards that admit its viewers. It is the demarcation
 * protocol (Barbará and Garcia-Molina, 1992): the stream grants each shard a
 * number of slots, the grants never add up to more than maxViewers, and a
 * shard admits on its own while it holds a free slot.
 *
 * Two rules keep it exact through lost answers, retries and restarts:
 * - A lease grows only at the stream first (stored), then at the shard, and
 *   shrinks only at the shard first (stored), then at the stream. So the
 *   shard's `granted` is never above the stream's record of it.
 * - Every message of a shard about one stream carries the shard's sequence
 *   number for that stream, which only the shard advances, one message at a
 *   time. The stream applies a message only if its sequence is newer than the
 *   last it applied, answers a repeat with the record it stored (a retried
 *   call grants nothing twice), and a shard applies an answer only if it
 *   answers its latest message. The stream's record after a message is the
 *   shard's own report plus what the stream added: a grant whose answer was
 *   lost is taken back by the shard's next message.
 */
import type { OnExtraViewerSession, PlayAuth } from "../stream/rules";

/** What a shard needs of the stream's policy to decide on a viewer. */
export interface ViewerPolicy {
  maxViewers: number | null;
  playAuth: PlayAuth;
  /** Live sessions one viewer id (token `sub`) may hold on the stream, on every edge together; null: no limit. */
  maxSessionsPerViewer: number | null;
  onExtraViewerSession: OnExtraViewerSession;
  /** The stream's active revocations (src/stream/revocations.ts). */
  revocations: Revocation[];
}

/**
 * Tokens issued (iat) before `before` (Unix seconds) stop verifying on the
 * stream: those of one viewer id (`sub`), or every token (`sub` null). A v1
 * token has no issue time: only a revocation of every token covers it, and
 * that one lasts for good (src/stream/revocations.ts).
 */
export interface Revocation {
  sub: string | null;
  before: number;
  /** When every token it covers has expired (Unix seconds): then it goes. Null: never (a revocation of every token). */
  expires: number | null;
}

/** Does one of the revocations cover a token of viewer `sub` issued at `issuedAt` (null: a v1 token)? */
export function isRevoked(revocations: Revocation[], sub: string | null, issuedAt: number | null): boolean {
  return revocations.some((r) => (r.sub === null || r.sub === sub) && (issuedAt === null ? r.sub === null : issuedAt < r.before));
}

/** Where a shard runs, as the platform tells the Worker (request.cf); empty when unknown. */
export interface Place {
  colo: string;
  country: string;
}

/** A shard's message about one stream: its lease as it stands, and what it asks for. */
export interface LeaseReport {
  streamKey: string;
  serverId: string;
  /** The shard's sequence number for this stream, advanced for every message. */
  seq: number;
  /** Slots the shard holds now. */
  granted: number;
  /** Admitted viewers that count (their process is not suspended). */
  live: number;
  /** Admitted viewers of a silent process: kept, not counted. */
  suspended: number;
  /** Slots wanted on top of `granted` (0: a report, or slots given back). */
  want: number;
  place: Place;
  /**
   * The shard gave back a slot for the viewer shard of this server (its session of a viewer id ended for that
   * viewer's newer session there, at a full stream: src/viewers/seats.ts hand-off): the stream moves one slot this
   * message frees to that shard's record, and that shard's next message is granted it (LeaseBook.apply).
   */
  handOff?: HandOff;
}

/** A slot handed from one viewer shard to another (LeaseReport.handOff), named so that the stream moves it once. */
export interface HandOff {
  /** The server whose viewer shard gets the slot. */
  to: string;
  id: string;
}

/** Holds no slot and no viewer (live or suspended) of the stream. */
export function holdsNothing(x: { granted: number; live: number; suspended: number }): boolean {
  return x.granted === 0 && x.live === 0 && x.suspended === 0;
}

/** A shard's message saying it holds nothing of the stream and wants nothing: it leaves (the stream forgets it). */
export function isLeave(report: LeaseReport): boolean {
  return report.want === 0 && holdsNothing(report);
}

/** The stream's answer. */
export interface LeaseAnswer {
  /** Null: the stream does not exist (or no longer). */
  policy: ViewerPolicy | null;
  /** The policy's version: a shard never replaces a policy by an older one. */
  version: number;
  /** The message answered: the shard ignores an answer to an older one. */
  seq: number;
  /** The lease, in slots, as the stream recorded it. */
  granted: number;
  /**
   * The stream has no free slot: the shard gives back every slot it stops
   * using at once, instead of keeping some for its next viewers.
   */
  tight: boolean;
  /**
   * The answer refuses the shard's ask for the cap and the stream counts the shard among those waiting
   * for slots: it tells the shard when slots are free, so the shard may hold its viewers' questions
   * meanwhile (WAIT_HOLD_MS). Absent (a stream object of an older version): as if true.
   */
  waiting?: boolean;
  /** Of `granted`, the slots other shards handed to this one (LeaseReport.handOff): kept here for the admissions they were handed for. */
  handed?: number;
}

/**
 * What a recalled shard checks before it answers: nothing ("none": the slots
 * it does not use go back at once, so a hook admitted on them waits on no
 * one), whether its server's processes still live ("liveness": a silent
 * server's viewers stop holding slots; the registry is asked), or that and,
 * through its server's SRS API, which of its viewers are ghosts of lost
 * on_stop events ("ghosts": only for a hook that would otherwise be refused).
 */
export type RecallCheck = "none" | "liveness" | "ghosts";

/** A shard's answer to a recall: it kept only the slots its live viewers use. */
export interface RecallAnswer {
  seq: number;
  granted: number;
  live: number;
  suspended: number;
  place: Place;
  /** Slots this shard handed over in a message still on its way (this answer may overtake it): moved by whichever arrives first. */
  handOffs?: HandOff[];
  /** The sequence number of a message of the shard on its way: the answer to it will be void here (this answer's is newer). */
  askingSeq?: number;
}

/** A slot handed to a shard (LeaseReport.handOff) waits this long for that shard's next message; then it is an ordinary unused slot of its record. */
export const HAND_OFF_KEPT_MS = 10_000;

/** First lease a shard asks for; each further one doubles what it holds, up to LEASE_MAX_CHUNK. */
export const LEASE_FIRST_CHUNK = 128;
export const LEASE_MAX_CHUNK = 4096;

/** Slots to ask for when a shard's lease is used up. */
export function leaseWant(granted: number): number {
  return Math.min(LEASE_MAX_CHUNK, Math.max(LEASE_FIRST_CHUNK, granted));
}

/**
 * A shard refused for want of slots waits until the stream tells it that
 * slots are free (slotsFree). Meanwhile the stream runs rounds of recalls
 * itself, which take back slots unused elsewhere and have the shards check
 * for ghosts of silent servers: RECALL_GAP_MS after the refusal, then doubling
 * while shards wait, up to RECALL_GAP_MAX_MS (a stream watched through many
 * servers spaces them out more: ROUND_SHARDS_PER_S, src/stream/slot-rounds.ts). A shard asks again after
 * WAIT_HOLD_MS anyway, in case the stream's word was lost.
 */
export const RECALL_GAP_MAX_MS = 8_000;
export const WAIT_HOLD_MS = 30_000;
/** Slots unused this long after a shard's last admission of a stream go back to the stream. */
export const LEASE_IDLE_MS = 30_000;
/**
 * A shard re-reads the policy of a stream this often. Changes are pushed to
 * every shard the stream knows at once, and a push that did not reach a shard
 * is tried again every 5 s (PUSH_RETRY_MS, src/stream/shard-policy.ts) until it
 * does: this is the last resort, long enough that a shard serving a stream's
 * viewers does not ask the stream again for each of them.
 */
export const POLICY_TTL_MS = 10 * 60_000;
/** The stream recalls unused slots from the shards at most this often (less often when many shards hold them: ROUND_SHARDS_PER_S). */
export const RECALL_GAP_MS = 1_000;

/** The registry's client-index entry that stands for a server's viewer shard: one per process, not per viewer. */
export const VIEWER_SHARD_ENTRY = { clientId: "", streamKey: "*viewer-shard*" } as const;

/** Seat objects per stream: one viewer id always maps to the same one. */
export const SEAT_BUCKETS = 16;
/** The seat object of a viewer id on a stream. */
export function seatBucket(sub: string): number {
  let h = 2166136261;
  for (let i = 0; i < sub.length; i++) h = Math.imul(h ^ sub.charCodeAt(i), 16777619);
  return (h >>> 0) % SEAT_BUCKETS;
}

/**
 * A 53-bit hash of a viewer id: the shards report these, and the admin API
 * counts distinct viewer ids over the shards with them (a collision among
 * 10^5 ids has odds near 10^-6).
 */
export function viewerIdHash(sub: string): number {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < sub.length; i++) {
    const c = sub.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}

