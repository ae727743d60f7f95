/**
 * Seats: the sessions each viewer id (play token `sub`) holds on a stream
 * with maxSessionsPerViewer, counted in one place so that the limit holds
 * across edges and shards: 50 simultaneous on_play of one `sub` with a limit
 * of 1 admit exactly one, wherever they arrive.
 *
 * The authority for one viewer id is one ViewerSeats object, named by the
 * stream and a hash of the id (SEAT_BUCKETS objects per stream), so a flash
 * crowd of distinct viewers spreads over SEAT_BUCKETS objects instead of
 * queueing at the stream's. A viewer shard takes a seat before it admits a
 * viewer with a `sub` on such a stream (a second object call for those plays
 * only), and gives it back when the session ends.
 *
 * A seat is a claim, the shard's viewer row the truth: a seat whose release
 * was lost (a shard restart mid-hook, a failed call) would block its viewer
 * forever, so before a refusal rests on seats, the object asks their shards
 * where each session stands (seatState): gone (the seat goes), suspended (its
 * server is silent: it does not count, as for the cap), or live (a session
 * being admitted counts as live). Admissions that fit never ask.
 *
 * Exactness: a seat is granted synchronously after the count (no other call
 * interleaves), a viewer row with a seat exists only while its seat does
 * (the seat goes only after its shard ended the session or said it is gone),
 * so live sessions per viewer id never exceed the limit. A suspended session
 * does not count; when its viewer plays again elsewhere it is ended first
 * (its viewer moved), so the limit still holds when the silent server returns.
 */
import { DurableObject } from "cloudflare:workers";
import type { Env } from "../env";
import { sessionGraceMs } from "../config";
import { viewerShard } from "../object-access";
import { NoAnswer, withRetry, withTimeout } from "../platform/retry";
import type { SessionId } from "../srs/hook";
import { KICK_RETRY_MS, queueKicks } from "../srs/kicks";
import { Denials, type Denial, type OnExtraViewerSession } from "../stream/rules";

/** A question to a shard about its sessions, or an order to end one, waits at most this long. */
const SHARD_TIMEOUT_MS = 2_000;
/** Rounds of checking and ending before a refusal stands (each may find the state changed meanwhile). */
const ROUNDS = 3;

export type SeatState = "live" | "suspended" | "gone";

export interface SeatRequest {
  streamKey: string;
  sub: string;
  session: SessionId;
  limit: number;
  mode: OnExtraViewerSession;
  /** The on_play asking (its shard says whether the Worker undid it before other sessions end for it). */
  hookId?: string;
  /**
   * When the session was admitted, for a seat taken for a session admitted before its stream limited sessions
   * per viewer (src/viewers/unseated.ts): seats are ordered by it, and "replace" ends the oldest first.
   */
  since?: number;
  /**
   * The asking shard has no slot for the session (its stream is full): only a session of the viewer's that
   * ends here in its place can make room, by handing its slot over (src/viewers/shard.ts endSeat). Nothing
   * ends, and the answer is `full`, unless exactly one live session is to end and its shard can hand its slot.
   */
  handOff?: boolean;
}

/**
 * `grant`: this grant of the seat; a seat given back for this take names it (a later grant of the same seat stays).
 * `full` (a hand-off take): no session of the viewer's could make room at the full stream; nobody ended.
 */
export type SeatAnswer = { ok: true; grant: string } | { ok: false; denial: Denial; full?: true };

/** The answer of a hand-off take that found no session of the viewer's to take the slot of: the stream's cap refuses. */
const FULL: SeatAnswer = { ok: false, denial: Denials.viewerSessionLimit, full: true };

interface Seat extends Record<string, SqlStorageValue> {
  server_id: string;
  service_id: string;
  client_id: string;
  since: number;
  grant_id: string;
  leaving: number;
}

/**
 * `leaving` of a seat inserted by a take that is still ending the sessions it makes room for: not granted
 * until they ended (a repeat of its on_play waits for that take; after a restart, which ended that take, the
 * next take of the viewer drops it: the repeat takes the seat anew).
 */
const JOINING = 2;

/** How long a session ended for a newer one is refused a seat again (a late repeat of its on_play). */
const ENDED_KEPT_MS = 60_000;
/** The refusal of a session ended for a newer one (or being ended), when its on_play comes again. */
const ENDED_FOR_A_NEWER_ONE: Denial = { ...Denials.viewerSessionLimit, reason: `${Denials.viewerSessionLimit.reason}: this session was ended for a newer one` };

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS seats (
    stream_key TEXT NOT NULL, sub TEXT NOT NULL, server_id TEXT NOT NULL, service_id TEXT NOT NULL, client_id TEXT NOT NULL,
    since INTEGER NOT NULL, grant_id TEXT NOT NULL,
    -- 1: being ended for a newer session (it still counts until its shard confirms);
    -- 2: not granted yet: the take that inserted it is still ending the sessions it replaces (JOINING)
    leaving INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (stream_key, sub, server_id, service_id, client_id)) WITHOUT ROWID;
  -- Sessions ended for newer ones, and when: a late repeat of their on_play must not take a seat back (ENDED_KEPT_MS).
  -- In storage, not memory: an object restarted meanwhile (a deploy, an eviction) must not forget them.
  CREATE TABLE IF NOT EXISTS ended (key TEXT PRIMARY KEY, at INTEGER NOT NULL) WITHOUT ROWID;
  CREATE INDEX IF NOT EXISTS ended_at ON ended (at);`;

export class ViewerSeats extends DurableObject<Env> {
  private sql: SqlStorage;
  /** The seats table exists (reads and releases need nothing more). */
  private ready = false;
  /** Every table of SCHEMA exists (an object from before the newest one was added gets it at its next take). */
  private prepared = false;
  /** Takes that inserted a seat and are still ending the sessions it replaces, by that seat: a repeat of its on_play waits for them. */
  private taking = new Map<string, Promise<void>>();
  /**
   * Seats a hand-off take is asking their shard to end (their slot to go to the newer session): the shard may answer
   * "kept" (a session still being admitted plays on), so a repeat of such a session's on_play waits for that take.
   */
  private handingOff = new Map<string, Promise<void>>();
  /**
   * Sessions the takes running here are ending, by seat key, and by how many takes: a take that could not end one (its
   * shard kept it, or could not be reached) unmarks it only if no other take is still ending it (whose call may yet).
   */
  private ending = new Map<string, number>();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    const tables = new Set(this.sql.exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table'").toArray().map((t) => t.name));
    this.ready = tables.has("seats");
    this.prepared = tables.has("ended");
  }

  private prepare(): void {
    if (!this.prepared) this.sql.exec(SCHEMA);
    this.ready = this.prepared = true;
  }

  /**
   * A seat for `session`, if its viewer id has fewer than `limit` sessions
   * that count; with mode "replace", the viewer's oldest sessions are ended
   * to make room. The seat of a session that has one already is kept.
   */
  async take(req: SeatRequest): Promise<SeatAnswer> {
    this.prepare();
    const { streamKey, sub, session, limit } = req;
    let suspended: Set<string> | null = null;
    // The shards are asked first without SRS's API: only a refusal may rest on its word (src/srs/ghosts.ts).
    let askedApi = false;
    const ownKey = `${streamKey}\n${sub}\n${keyOf(seatOf(session))}`;
    const handing = this.handingOff.get(ownKey);
    if (handing) {
      await handing;
      return this.take(req);
    }
    // A late repeat of a session ended for a newer one is refused. A seat for a session that exists (src/viewers/unseated.ts:
    // a limit set over sessions admitted without one), admitted after that end, is not such a repeat: the client played
    // again (as a new session under no limit), and without its seat it would never count.
    const endedAt = this.endedAt(ownKey);
    if (endedAt !== undefined && !(req.since !== undefined && req.since > endedAt)) return { ok: false, denial: ENDED_FOR_A_NEWER_ONE };
    for (let round = 0; round <= ROUNDS + 1; round++) {
      // Synchronous from the read to the write: no other call interleaves.
      const held = this.withoutOrphans(streamKey, sub, this.seatsOf(streamKey, sub));
      const own = held.find((s) => same(s, session));
      // Inserted by a take of this session (another on_play of it) that is still ending the sessions it
      // replaces: not granted yet. Granted now, it would play beside a session whose end may still fail.
      const running = own ? this.taking.get(ownKey) : undefined;
      if (running) {
        await running;
        return this.take(req);
      }
      // Its seat is leaving: the session is being ended for a newer one (a repeat of its on_play came meanwhile).
      if (own?.leaving === 1) {
        return { ok: false, denial: ENDED_FOR_A_NEWER_ONE };
      }
      if (own) {
        // A new grant id: a check of this seat already running must not take it for gone, nor the release of
        // an earlier grant (an attempt of this on_play that was not admitted) the seat this one plays on.
        const grant = crypto.randomUUID();
        this.sql.exec("UPDATE seats SET grant_id = ? WHERE stream_key = ? AND sub = ? AND server_id = ? AND service_id = ? AND client_id = ?",
          grant, streamKey, sub, session.serverId, session.serviceId, session.clientId);
        return { ok: true, grant };
      }
      if (held.length < limit) {
        // A seat is free, but no slot: nobody ends for this session, the cap refuses it.
        if (req.handOff) return FULL;
        return { ok: true, grant: this.insert(streamKey, sub, session, req.since ?? Date.now()) };
      }
      if (suspended === null) {
        // A refusal would rest on these seats: their shards say where each session stands (gone ones go).
        suspended = await this.check(streamKey, sub, held, false);
        continue;
      }
      // Sessions of silent servers do not count, but end (oldest first) before a new one is admitted, so that
      // the limit still holds when their servers return: their viewer plays here now. With "replace", the
      // viewer's oldest live sessions end too.
      const quiet = held.filter((s) => suspended!.has(keyOf(s)));
      const live = held.filter((s) => !suspended!.has(keyOf(s)));
      if (live.length >= limit && req.mode !== "replace") {
        if (askedApi) break;
        // A refusal would rest on live sessions: they may be ghosts of lost on_stop events, which their
        // servers' SRS APIs no longer have. "replace" never asks: it admits either way.
        askedApi = true;
        suspended = await this.check(streamKey, sub, held, true);
        continue;
      }
      const ends = [...quiet, ...live].slice(0, held.length + 1 - limit);
      // At a full stream the newer session plays in the place of one live session of the viewer's (its slot); a
      // session of a silent server holds no slot its shard could hand over, and more than one (a lowered limit)
      // would end sessions for one slot: the cap refuses, and nobody ends.
      if (req.handOff && (ends.length !== 1 || quiet.length > 0 || req.mode !== "replace")) return FULL;
      const why = live.length >= limit
        ? `replaced by a newer session of viewer ${sub} (client ${session.clientId} on server ${session.serverId}; onExtraViewerSession: replace)`
        : `viewer ${sub} plays again on server ${session.serverId} while this session's server is silent`;
      // This session takes its seat at once (synchronously) and the old ones are marked leaving: a request
      // arriving meanwhile counts all of them (a leaving session still plays until its shard ends it) and, to
      // replace, ends the oldest first, so of many racing plays the last one stays.
      for (const e of ends) this.setLeaving(streamKey, sub, e, 1);
      // Not granted until the old sessions ended: a repeat of this session's on_play arriving meanwhile waits.
      const grant = this.insert(streamKey, sub, session, Date.now(), JOINING);
      let done!: () => void;
      const mine = new Promise<void>((resolve) => (done = resolve));
      this.taking.set(ownKey, mine);
      const handedKeys = req.handOff ? ends.map((e) => `${streamKey}\n${sub}\n${keyOf(e)}`) : [];
      for (const k of handedKeys) this.handingOff.set(k, mine);
      try {
        // The checks above took a while: an on_play the Worker undid meanwhile (SRS refused its client) ends nobody.
        if (req.hookId && !(await this.stillWanted(session, req.hookId))) {
          for (const e of ends) this.setLeaving(streamKey, sub, e, 0);
          this.drop(streamKey, sub, session, grant);
          return { ok: false, denial: { ...Denials.viewerSessionLimit, reason: `${Denials.viewerSessionLimit.reason}: its on_play could not be confirmed` } };
        }
        const { failed, kept } = await this.endSeats(streamKey, sub, ends, why, req.handOff ? session : undefined);
        if (failed.length === 0 && kept.length === 0) {
          // Granted (unless a newer session is ending it meanwhile: then it stays leaving).
          // Only this take's grant: a seat of the same session inserted since by another take is that take's to grant.
          this.sql.exec("UPDATE seats SET leaving = 0 WHERE stream_key = ? AND sub = ? AND server_id = ? AND service_id = ? AND client_id = ? AND leaving = ? AND grant_id = ?",
            streamKey, sub, session.serverId, session.serviceId, session.clientId, JOINING, grant);
          return { ok: true, grant };
        }
        // An old session could not be ended (its shard unreachable): it keeps its seat, this one is refused. One
        // whose slot could not be handed over (a hand-off take) plays on: the cap refuses this one.
        for (const e of [...failed, ...kept]) this.setLeaving(streamKey, sub, e, 0);
        this.drop(streamKey, sub, session, grant);
        if (failed.length === 0) return FULL;
      } catch (err) {
        // Failed part-way (a reset ends the object and this take with it: then the seat stays JOINING, and a
        // repeat of this on_play takes it anew): nothing granted, nobody left marked leaving by this take.
        for (const e of ends) this.setLeaving(streamKey, sub, e, 0);
        this.drop(streamKey, sub, session, grant);
        throw err;
      } finally {
        // Only its own entry: another take of this session may have started since (its seat found gone meanwhile).
        if (this.taking.get(ownKey) === mine) this.taking.delete(ownKey);
        for (const k of handedKeys) if (this.handingOff.get(k) === mine) this.handingOff.delete(k);
        done();
      }
      break;
    }
    return { ok: false, denial: Denials.viewerSessionLimit };
  }

  /**
   * The seats less those JOINING with no take running here: their take ended with the object (a reset), so they
   * were never granted, and their session is admitted only through a take of its own made anew (which finds its
   * seat gone and counts the others as they are then). They go: neither counted for another session, nor marked
   * leaving by one (whose failure would give them back as granted: a seat its session's next on_play then plays
   * on, beside the session it never ended).
   */
  private withoutOrphans(streamKey: string, sub: string, seats: Seat[]): Seat[] {
    return seats.filter((s) => {
      if (s.leaving !== JOINING || this.taking.has(`${streamKey}\n${sub}\n${keyOf(s)}`)) return true;
      this.drop(streamKey, sub, sessionOf(s), s.grant_id);
      return false;
    });
  }

  /** Whether the asking shard still wants the seat for this hook (not undone); one that cannot say: no (nobody ends). */
  private async stillWanted(session: SessionId, hookId: string): Promise<boolean> {
    try {
      return await withTimeout(withRetry(() => viewerShard(this.env, session.serverId), (shard) => shard.hookLive(hookId)), SHARD_TIMEOUT_MS);
    } catch {
      return false;
    }
  }

  /** When this session (its seat's key) was ended for a newer one, if within ENDED_KEPT_MS. */
  private endedAt(key: string): number | undefined {
    const at = this.sql.exec<{ at: number }>("SELECT at FROM ended WHERE key = ?", key).toArray()[0]?.at;
    return at !== undefined && Date.now() - at < ENDED_KEPT_MS ? at : undefined;
  }

  /** Remembered before its shard is asked to end it; those older than ENDED_KEPT_MS go. */
  private markEnded(key: string): void {
    const now = Date.now();
    this.sql.exec("DELETE FROM ended WHERE at <= ?", now - ENDED_KEPT_MS);
    this.sql.exec("INSERT OR REPLACE INTO ended (key, at) VALUES (?, ?)", key, now);
  }

  /**
   * Not ended after all (its shard kept it, or could not be reached): its on_play may take a seat again. Unless another
   * take running here is ending it too (it marked it again since, and its call may yet end it).
   */
  private unmarkEnded(key: string): void {
    if ((this.ending.get(key) ?? 0) > 1) return;
    this.sql.exec("DELETE FROM ended WHERE key = ?", key);
  }

  /** A seat for the session (kept if it has one); returns its grant id. */
  private insert(streamKey: string, sub: string, session: SessionId, since = Date.now(), leaving = 0): string {
    const grant = crypto.randomUUID();
    this.sql.exec(
      "INSERT OR IGNORE INTO seats (stream_key, sub, server_id, service_id, client_id, since, grant_id, leaving) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
      streamKey, sub, session.serverId, session.serviceId, session.clientId, since, grant, leaving,
    );
    return grant;
  }

  /** The seat this take inserted goes (not one granted since). */
  private drop(streamKey: string, sub: string, session: SessionId, grant: string): void {
    this.sql.exec("DELETE FROM seats WHERE stream_key = ? AND sub = ? AND server_id = ? AND service_id = ? AND client_id = ? AND grant_id = ?",
      streamKey, sub, session.serverId, session.serviceId, session.clientId, grant);
  }

  /**
   * The sessions ended: their seats go (idempotent). With `grant`, the seat taken by one take that was not
   * admitted goes only if it was not granted again since (a repeat of that on_play plays on it).
   */
  release(streamKey: string, sub: string, sessions: SessionId[], grant?: string): void {
    this.releaseSeats(streamKey, sub, sessions, grant);
  }

  /** release() for the sessions of many viewer ids of this object at once (a bulk end in one viewer shard). */
  releaseAll(streamKey: string, releases: { sub: string; sessions: SessionId[] }[]): void {
    for (const r of releases) this.releaseSeats(streamKey, r.sub, r.sessions);
  }

  private releaseSeats(streamKey: string, sub: string, sessions: SessionId[], grant?: string): void {
    if (!this.ready) return;
    for (const s of sessions) {
      if (grant === undefined) {
        this.sql.exec("DELETE FROM seats WHERE stream_key = ? AND sub = ? AND server_id = ? AND service_id = ? AND client_id = ?",
          streamKey, sub, s.serverId, s.serviceId, s.clientId);
      } else {
        this.drop(streamKey, sub, s, grant);
      }
    }
  }

  /** The seats of a stream's viewers here (for tests: the admin API asks the viewer shards). */
  seats(streamKey: string): { sub: string; serverId: string; serviceId: string; clientId: string }[] {
    if (!this.ready) return [];
    return this.sql
      .exec<Seat & { sub: string }>("SELECT * FROM seats WHERE stream_key = ? ORDER BY sub, since", streamKey)
      .toArray()
      .map((s) => ({ sub: s.sub, serverId: s.server_id, serviceId: s.service_id, clientId: s.client_id }));
  }

  /** Marks a seat leaving (1), or not (0: back to JOINING if the take that inserted it still runs). */
  private setLeaving(streamKey: string, sub: string, s: Seat, leaving: 0 | 1): void {
    const value = leaving === 0 && this.taking.has(`${streamKey}\n${sub}\n${keyOf(s)}`) ? JOINING : leaving;
    this.sql.exec("UPDATE seats SET leaving = ? WHERE stream_key = ? AND sub = ? AND server_id = ? AND service_id = ? AND client_id = ?",
      value, streamKey, sub, s.server_id, s.service_id, s.client_id);
  }

  /** Whether the session of this seat still holds a seat (granted again since, or not). */
  private holds(streamKey: string, sub: string, s: Seat): boolean {
    return this.sql.exec("SELECT 1 FROM seats WHERE stream_key = ? AND sub = ? AND server_id = ? AND service_id = ? AND client_id = ?",
      streamKey, sub, s.server_id, s.service_id, s.client_id).toArray().length > 0;
  }

  private seatsOf(streamKey: string, sub: string): Seat[] {
    return this.sql.exec<Seat>("SELECT server_id, service_id, client_id, since, grant_id, leaving FROM seats WHERE stream_key = ? AND sub = ? ORDER BY since, client_id", streamKey, sub).toArray();
  }

  /**
   * Asks the shards holding these seats where each session stands (with
   * `askApi`, a refusal is about to rest on them: the live ones' SRS APIs
   * are asked about ghosts of lost on_stop events too). Gone:
   * the seat goes (unless it was granted again meanwhile: a new grant id).
   * Returns the suspended ones. A shard that cannot be reached: its seats
   * count (a refusal too many, never a session too many).
   */
  private async check(streamKey: string, sub: string, seats: Seat[], askApi: boolean): Promise<Set<string>> {
    const byServer = new Map<string, Seat[]>();
    for (const s of seats) byServer.set(s.server_id, [...(byServer.get(s.server_id) ?? []), s]);
    const suspended = new Set<string>();
    await Promise.all(
      [...byServer].map(async ([serverId, of]) => {
        try {
          const states = await withTimeout(
            withRetry(() => viewerShard(this.env, serverId), (shard) => shard.seatState(streamKey, of.map(sessionOf), askApi)),
            SHARD_TIMEOUT_MS,
          );
          of.forEach((s, i) => {
            if (states[i] === "suspended") suspended.add(keyOf(s));
            if (states[i] === "gone") {
              this.drop(streamKey, sub, sessionOf(s), s.grant_id);
            }
          });
        } catch (err) {
          console.error(JSON.stringify({ error: "viewer seats not checked: shard unreachable", server: serverId, stream: streamKey, detail: String(err) }));
        }
      }),
    );
    return suspended;
  }

  /**
   * Ends these sessions in their shards (kicked through the SRS API when it is
   * configured); the seats of those ended or gone go. Returns those whose
   * shard could not be reached (`failed`), and with `handOffFor` (the newer session,
   * at a full stream) those whose shard could not hand their slot to it and
   * so did not end them (`kept`): the caller gives them back their seats and refuses.
   */
  private async endSeats(streamKey: string, sub: string, seats: Seat[], why: string, handOffFor?: SessionId): Promise<{ failed: Seat[]; kept: Seat[] }> {
    const failed: Seat[] = [];
    const kept: Seat[] = [];
    const kicks: Seat[] = [];
    // A kick is kept as long as the ended session's server may come back with it (SESSION_GRACE_S): it must not play uncounted then.
    const kick = (of: Seat[]) => queueKicks(this.env, of.map((s) => ({ ...sessionOf(s), streamKey, role: "viewer" as const, why, retryForMs: Math.max(KICK_RETRY_MS, sessionGraceMs(this.env)) })));
    await Promise.all(
      seats.map(async (s) => {
        // Remembered before its shard is asked: a repeat of its on_play arriving meanwhile is refused.
        const endedKey = `${streamKey}\n${sub}\n${keyOf(s)}`;
        this.markEnded(endedKey);
        this.ending.set(endedKey, (this.ending.get(endedKey) ?? 0) + 1);
        try {
          // One call id for its retries (src/platform/kept-answers.ts): a lost answer must not cost the kick.
          const callId = crypto.randomUUID();
          const ending = withRetry(() => viewerShard(this.env, s.server_id), (shard): Promise<boolean | "kept"> => shard.endSeat(streamKey, sessionOf(s), why, callId, handOffFor));
          try {
            const ended = await withTimeout(ending, SHARD_TIMEOUT_MS);
            if (ended === "kept") {
              this.unmarkEnded(endedKey);
              kept.push(s);
              return;
            }
            // Only the seat this end was for (the one granted then), never one granted since.
            this.drop(streamKey, sub, sessionOf(s), s.grant_id);
            if (ended) kicks.push(s);
          } catch (err) {
            // A call that timed out goes on: if its shard ends the session after all (a lost answer too), the
            // session is kicked, else it plays on with no seat and no count (the shard's accounting let it go).
            // Whether or not its seat is still here: a shard that ended it gives its seat back at once, so a call
            // that landed but answered late finds the seat gone, and the session still connected to its SRS.
            if (err instanceof NoAnswer) {
              this.ctx.waitUntil(
                ending
                  .then((late) => (late === true ? kick([s]) : undefined))
                  .catch(() => {}),
              );
            }
            // Its seat went meanwhile (another take racing this one ended it, its stop gave it back, or this very
            // call ended it and its answer is late): the session no longer plays with a seat, so this call's failure
            // refuses nobody (the newer session then found no screen).
            if (!this.holds(streamKey, sub, s)) return;
            this.unmarkEnded(endedKey);
            console.error(JSON.stringify({ error: "viewer session not ended: shard unreachable", server: s.server_id, stream: streamKey, detail: String(err) }));
            failed.push(s);
          }
        } finally {
          const left = (this.ending.get(endedKey) ?? 1) - 1;
          if (left > 0) this.ending.set(endedKey, left);
          else this.ending.delete(endedKey);
        }
      }),
    );
    if (kicks.length > 0) this.ctx.waitUntil(kick(kicks).catch(() => {}));
    return { failed, kept };
  }

}

function seatOf(session: SessionId): Pick<Seat, "server_id" | "service_id" | "client_id"> {
  return { server_id: session.serverId, service_id: session.serviceId, client_id: session.clientId };
}

function sessionOf(s: Seat): SessionId {
  return { serverId: s.server_id, serviceId: s.service_id, clientId: s.client_id };
}

function same(s: Seat, session: SessionId): boolean {
  return s.server_id === session.serverId && s.service_id === session.serviceId && s.client_id === session.clientId;
}

function keyOf(s: Pick<Seat, "server_id" | "service_id" | "client_id">): string {
  return `${s.server_id}\n${s.service_id}\n${s.client_id}`;
}

