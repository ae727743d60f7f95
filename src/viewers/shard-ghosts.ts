/**
 * A viewer shard's ghost checks (src/srs/ghosts.ts): asking its server's SRS API whether viewers it holds are
 * still there, and ending those SRS no longer has (ghosts of lost on_stop events). Asked before a refusal rests
 * on them (a full stream, a contested seat) and by the alarm's sweep, the streams taking turns; the sweep's
 * place is stored, and a repeat of an on_play counts as a new admission for the checks (repeated).
 */
import type { Env } from "../env";
import { HOOK_DEADLINE_MS, UNDO_WAIT_MS } from "../platform/retry";
import type { SessionId } from "../srs/hook";
import { GhostCheck, GHOST_REASON, GHOSTS_PER_CHECK } from "../srs/ghosts";
import type { ViewerCounts } from "./counts";
import type { EndCause } from "./shard";
import type { ShardTables } from "./tables";

/** An alarm's sweep for ghosts (sweepInTurn) begins no stream's check after this long. */
const SWEEP_BUDGET_MS = 4_000;
/**
 * SRS registers a WebRTC player only once the on_play answer reaches it, which may take the hook's whole time
 * (and its undo's), so a "not found" before then is about a client SRS is about to serve. No ghost check asks
 * about a WebRTC session admitted (or admitted again) less than this long ago, and the alarm's sweep about no
 * session that young: such a ghost waits for a later check.
 */
const YOUNG_MS = HOOK_DEADLINE_MS + UNDO_WAIT_MS;
/** The meta row that keeps the sweep's place (its last stream, and the walks through big streams) across restarts. */
const SWEEP_META_KEY = "ghost_sweep";
/** A seat object's question (it gives up at 2 s), or a stream's recall for a hook about to be refused, waits at most this long for the SRS API's word on ghosts. */
export const GHOST_WAIT_MS = 1_500;

/** A viewer session asked about, with the admission the answer is about. */
type AskedSession = SessionId & { since: number };

/** What the ghost checks need of their viewer shard. */
export interface GhostHost {
  readonly tables: ShardTables;
  readonly counts: Pick<ViewerCounts, "live" | "suspended" | "held">;
  /** The session's process is suspended (its server is silent): its viewers are not asked about. */
  isSuspended(serviceId: string): boolean;
  serverId(): string;
  /** Ends a viewer session here (`keepSlot`: its slot is not given back). */
  endViewer(streamKey: string, session: SessionId, cause: EndCause, keepSlot?: boolean): number;
  giveBackIfTight(streamKey: string): void;
}

export class ShardGhosts {
  private check: GhostCheck;
  /** Where the next ghost check of a stream starts among its viewers here. */
  private cursor = new Map<string, number>();
  /**
   * The stream the alarm's last ghost sweep asked about (the next sweep takes the one after it). Stored with the
   * cursors (SWEEP_META_KEY): a quiet shard is out of memory between two alarms, and would begin at the same place.
   */
  private swept = "";
  /** What the meta row SWEEP_META_KEY holds (not written again unchanged). */
  private sweepStored = "";
  /**
   * When a viewer session here was last admitted again by a repeat of its on_play (by seatKey): an HLS player back
   * with its hls_ctx after SRS let the session go. A ghost check's answer asked before then ("not found", true
   * when SRS gave it) is not about the client as SRS has it now: the session counts as admitted then (sinceOf).
   */
  private repeatedAt = new Map<string, number>();

  constructor(env: Env, private readonly host: GhostHost) {
    this.check = new GhostCheck(env);
  }

  /** SRS_API_URL is set: ghosts can be asked about. */
  get enabled(): boolean {
    return this.check.enabled;
  }

  /** The stream the alarm's last sweep asked about. */
  get sweptStream(): string {
    return this.swept;
  }

  /** A stored meta row of the shard: the sweep's place, if it is that one. */
  loadRow(key: string, value: string): void {
    if (key === SWEEP_META_KEY) this.loadSweep(value);
  }

  /** A repeat of the session's on_play admitted it again now (SRS has the client: it sent the hook). */
  repeated(seatKey: string): void {
    if (this.repeatedAt.size >= 10_000) this.repeatedAt.clear();
    this.repeatedAt.set(seatKey, Date.now());
  }

  /** The session ended here. */
  ended(seatKey: string): void {
    this.repeatedAt.delete(seatKey);
  }

  /** Ends the ghosts among this stream's viewers here (those admitted `minAgeMs` ago at least); their slots go back to a tight stream. */
  async endGivingBack(streamKey: string, minAgeMs = 0): Promise<number> {
    const ended = await this.endGhosts(streamKey, undefined, minAgeMs);
    if (ended > 0) this.host.giveBackIfTight(streamKey);
    return ended;
  }

  /**
   * With SRS_API_URL, each alarm (every 2 × SERVER_TIMEOUT_S while the shard holds viewers) asks the
   * server's API about up to GHOSTS_PER_CHECK of its viewers, the streams taking turns (on from the one
   * the last sweep reached), and ends those it no longer has: ghosts of lost on_stop events, which
   * HTTP-FLV and HLS viewers (no on_close) would otherwise leave counted, in the audience and the usage,
   * until their server restarts, on a stream no refusal reaches. Suspended viewers are not asked about
   * (endGhosts). No stream is begun after SWEEP_BUDGET_MS (an API that answers slowly).
   */
  async sweepInTurn(): Promise<void> {
    if (!this.check.enabled) return;
    const { counts } = this.host;
    const streams = [...counts.held().keys()].filter((k) => counts.live(k) > 0).sort();
    const from = streams.findIndex((k) => k > this.swept);
    const turn = from < 0 ? streams : [...streams.slice(from), ...streams.slice(0, from)];
    const until = Date.now() + SWEEP_BUDGET_MS;
    let questions = GHOSTS_PER_CHECK;
    for (const streamKey of turn) {
      const wanted = Math.min(counts.live(streamKey), GHOSTS_PER_CHECK);
      // A stream whose questions do not fit waits for the next alarm, which begins with it (at most 20 an alarm).
      if (wanted > questions || Date.now() >= until) break;
      questions -= wanted;
      this.swept = streamKey;
      await this.endGivingBack(streamKey, YOUNG_MS);
    }
    this.storeSweep();
  }

  /** Keeps the sweep's place (the last stream, the cursors of streams still held here) for the next alarm, in storage. */
  private storeSweep(): void {
    const { counts, tables } = this.host;
    const cursors = Object.fromEntries([...this.cursor].filter(([k]) => counts.live(k) + counts.suspended(k) > 0));
    const value = JSON.stringify({ stream: this.swept, cursors });
    if (value === this.sweepStored) return;
    tables.prepare();
    tables.sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", SWEEP_META_KEY, value);
    this.sweepStored = value;
  }

  private loadSweep(value: string): void {
    try {
      const { stream, cursors } = JSON.parse(value) as { stream: string; cursors: Record<string, number> };
      this.swept = typeof stream === "string" ? stream : "";
      for (const [k, n] of Object.entries(cursors ?? {})) if (Number.isInteger(n) && n > 0) this.cursor.set(k, n);
      this.sweepStored = value;
    } catch {
      // A row that cannot be read: the sweep begins again from the first stream.
    }
  }

  /**
   * Asks the server's SRS API about up to GHOSTS_PER_CHECK of this stream's
   * viewers here (all of them if they are no more; else walking through them,
   * oldest first and round again, from one check to the next) and ends the
   * live ones it no longer has. Returns how many ended.
   */
  async endGhosts(streamKey: string, budgetMs?: number, minAgeMs = 0): Promise<number> {
    const { counts } = this.host;
    const serverId = this.host.serverId();
    if (!this.check.enabled || !serverId || counts.live(streamKey) === 0) return 0;
    // Every row of the stream here, suspended ones too (they are read, then left out).
    const total = counts.live(streamKey) + counts.suspended(streamKey);
    const offset = total <= GHOSTS_PER_CHECK ? 0 : (this.cursor.get(streamKey) ?? 0) % total;
    const read = (limit: number, from: number) =>
      this.host.tables.sql
        .exec<{ service_id: string; client_id: string; since: number; webrtc: number }>(
          "SELECT service_id, client_id, since, webrtc_hook IS NOT NULL AS webrtc FROM viewers WHERE stream_key = ? ORDER BY since, client_id LIMIT ? OFFSET ?", streamKey, limit, from,
        )
        .toArray();
    const first = read(GHOSTS_PER_CHECK, offset);
    // Past the newest, on from the oldest (never one twice).
    const rest = offset > 0 && first.length < GHOSTS_PER_CHECK ? read(Math.min(GHOSTS_PER_CHECK - first.length, offset), 0) : [];
    const rows = [...first, ...rest].filter(
      (r) => !this.host.isSuspended(r.service_id) && this.askable({ at: this.admittedAt(streamKey, r.service_id, r.client_id, r.since), webrtc: !!r.webrtc }, minAgeMs),
    );
    // Only streams with more viewers here than one check reads keep a cursor (a busy shard is never evicted:
    // one entry per stream it ever checked would stay for good); losing one only restarts that walk.
    const cursor = total <= GHOSTS_PER_CHECK ? 0 : (offset + first.length + rest.length) % total;
    if (cursor === 0) this.cursor.delete(streamKey);
    else {
      if (this.cursor.size >= 10_000 && !this.cursor.has(streamKey)) this.cursor.clear();
      this.cursor.set(streamKey, cursor);
    }
    const gone = await this.check.gone(
      rows.map((r) => ({ serverId, serviceId: r.service_id, clientId: r.client_id, since: this.admittedAt(streamKey, r.service_id, r.client_id, r.since) })),
      budgetMs,
    );
    let ended = 0;
    for (const g of gone) {
      // Only the session asked about: one of the same client id admitted while the question was on its way stays.
      if (this.sinceOf(streamKey, g) !== g.since) continue;
      ended += this.host.endViewer(streamKey, { serverId: g.serverId, serviceId: g.serviceId, clientId: g.clientId }, { action: "ghost", reason: GHOST_REASON }, true);
    }
    return ended;
  }

  /**
   * Asks the server's SRS API about these live sessions of a stream (a refusal is about to rest on them), within
   * GHOST_WAIT_MS: those it no longer has, for endGone.
   */
  goneAmong(streamKey: string, live: SessionId[]): Promise<AskedSession[]> {
    const asked = live.flatMap((x) => {
      const admitted = this.admission(streamKey, x);
      return admitted && this.askable(admitted) ? [{ serverId: this.host.serverId() || x.serverId, serviceId: x.serviceId, clientId: x.clientId, since: admitted.at }] : [];
    });
    return this.check.gone(asked, GHOST_WAIT_MS);
  }

  /** Ends the sessions goneAmong found gone; not one `admitting` says is being admitted again, nor one admitted since it was asked. */
  endGone(streamKey: string, gone: AskedSession[], admitting: (s: SessionId) => boolean): void {
    for (const g of gone) {
      // Not while a hook of it runs (a repeat being admitted): its client is there. Nor one admitted since it was asked.
      if (admitting(g) || this.sinceOf(streamKey, g) !== g.since) continue;
      this.host.endViewer(streamKey, { serverId: g.serverId, serviceId: g.serviceId, clientId: g.clientId }, { action: "ghost", reason: GHOST_REASON });
    }
  }

  /**
   * When this viewer session here was last admitted, a repeat of its on_play included (undefined: it is not here):
   * a ghost check believes only answers asked after it.
   */
  private sinceOf(streamKey: string, s: { serviceId: string; clientId: string }): number | undefined {
    return this.admission(streamKey, s)?.at;
  }

  /** When this viewer session here was last admitted (as sinceOf), and whether it is a WebRTC player; undefined: it is not here. */
  private admission(streamKey: string, s: { serviceId: string; clientId: string }): { at: number; webrtc: boolean } | undefined {
    const row = this.host.tables.sql
      .exec<{ since: number; webrtc: number }>("SELECT since, webrtc_hook IS NOT NULL AS webrtc FROM viewers WHERE stream_key = ? AND service_id = ? AND client_id = ?", streamKey, s.serviceId, s.clientId)
      .toArray()[0];
    return row && { at: this.admittedAt(streamKey, s.serviceId, s.clientId, row.since), webrtc: !!row.webrtc };
  }

  /**
   * Whether a ghost check may ask SRS's API about a session admitted then: one admitted `minAgeMs` ago at least, and a
   * WebRTC player YOUNG_MS ago at least (SRS may not have it yet).
   */
  private askable(admitted: { at: number; webrtc: boolean }, minAgeMs = 0): boolean {
    const minAge = admitted.webrtc ? Math.max(minAgeMs, YOUNG_MS) : minAgeMs;
    return minAge === 0 || admitted.at <= Date.now() - minAge;
  }

  /** A session's admission time for ghost checks: its row's `since`, or the later repeat of its on_play (repeatedAt). */
  private admittedAt(streamKey: string, serviceId: string, clientId: string, since: number): number {
    return Math.max(since, this.repeatedAt.get(`${streamKey}\n${serviceId}\n${clientId}`) ?? 0);
  }
}
