/**
 * Where a stream's publisher decisions use SRS's HTTP API (src/srs/api.ts),
 * to clear the way before the stream object (object.ts) decides again:
 * - a refusal "publisher busy" may rest on a ghost of a lost on_unpublish:
 *   the holder's server no longer has that client, so its session ends
 *   (src/srs/ghosts.ts);
 * - onDuplicatePublish "replace": the old publisher is kicked through its
 *   edge's API and confirmed gone before the new one is admitted, so two
 *   publishers are never admitted at once (fail closed).
 * Everything here fits in the time the hook has left (`answerBy`). It also
 * knows which publishers are being kicked, by a takeover or by an operator
 * (a rotated key, a deleted stream: src/srs/kicks.ts), so that the stop event
 * SRS sends for a kicked client ends its session for that reason.
 */
import type { Env } from "../env";
import { withRetry } from "../platform/retry";
import { serverRegistry } from "../object-access";
import { API_TIMEOUT_MS, CALLED_OFF, NOT_SRS, TOO_SLOW, UNREACHABLE, type KickOutcome } from "../srs/api";
import { CHECK_BUDGET_MS, GhostCheck, GHOST_REASON } from "../srs/ghosts";
import type { SessionId } from "../srs/hook";
import { Denials, takeoverFailed, type Decision } from "./rules";
import type { Recorder, SessionBook } from "./sessions";

/**
 * An operator's kick is sent at once (src/srs/kick-outbox.ts): a stop event of its client this long
 * after the admin call, or this long after its edge let the client go, counts as the kick's doing.
 * (A kick still failing by then, its edge unreachable, leaves the client's own stop its own.)
 */
const OPERATOR_KICK_WAIT_MS = 30_000;
const KICKED_STOP_WAIT_MS = 60_000;
/** The decision log's word on a publisher the sweep ended after an operator's kick let it go (its stop events lost). */
const KICKED_GONE_REASON = "ended: an operator's kick let this client go and its server's API no longer has it (its stop events were lost)";
/** Past this many marks, the expired ones are dropped. */
const OPERATOR_KICKS_KEPT = 100;

/**
 * Which admin action kicks a publisher: a rotation by the key hash it installed (the hash undoKeyChange
 * is given), a DELETE as STREAM_DELETED (a stream is deleted once per life).
 */
export type OperatorAction = string;
export const STREAM_DELETED: OperatorAction = "deleted";
/** The mark an edge's "kicked" sets (no action's own). */
const KICKED = "kicked";

/** After a takeover's kick, how long the old client may take to disappear from its edge (else the new one is refused, 4009). */
const TAKEOVER_WAIT_MS = 1_000;

/** What the stream object lends: its settings, its sessions and its decision log. */
export interface PublisherApiHost {
  env(): Env;
  sessions(): SessionBook;
  /** "vhost/app/stream"; null for a stream never created. */
  streamKey(): string | null;
  /** "vhost/app/stream" also once the stream is deleted (the object's name): where its sessions' index entries are. */
  name(): string | null;
  /** The refusal of a hook the Worker undid meanwhile (its client was refused: nobody is kicked for it). */
  voided(hookId: string): Decision | null;
  record: Recorder;
  waitUntil(work: Promise<unknown>): void;
}

export class PublisherApi {
  private ghosts: GhostCheck;
  /**
   * Holders a takeover is kicking now, by session, with how many takeovers kick each: SRS sends the
   * kicked client's on_unpublish before its API lets the client go, so that stop event, not the
   * takeover, usually ends the session. It ended because it was taken over (stream.ended says so).
   */
  private kicking = new Map<string, number>();
  /**
   * Publisher sessions an operator's kick is queued or was just sent for (server, service and client id; a
   * restarted process may reuse a client id) → their marks: the admin actions that kick the session (by
   * OperatorAction) and, once an edge let the client go, KICKED → until when. An action that kicks nobody
   * after all (undone, its kick not queued) takes back its own mark only, so a kick another action queued
   * keeps its. In memory: a restarted object forgets those queued, whose stop events then end them as "stop".
   */
  private operatorKicks = new Map<string, Map<string, number>>();

  constructor(private host: PublisherApiHost) {
    this.ghosts = new GhostCheck(host.env());
  }

  /**
   * Why a stop event of this publisher session ends it, if a kick is under way: "takeover" (a takeover
   * is kicking it), "operator" (an operator's kick is queued, or was sent a moment ago), else null.
   */
  kickedFor(s: SessionId): "takeover" | "operator" | null {
    const key = kickKey(s);
    if (this.kicking.has(key)) return "takeover";
    const marks = this.operatorKicks.get(key);
    if (marks === undefined) return null;
    if ([...marks.values()].some((until) => Date.now() < until)) return "operator";
    this.operatorKicks.delete(key);
    return null;
  }

  /** An operator's action (a rotated key, a deleted stream) is about to queue kicks of these publishers. */
  operatorKicking(publishers: SessionId[], action: OperatorAction): void {
    if (!this.host.env().SRS_API_URL) return;
    for (const p of publishers) this.marksOf(p).set(action, Date.now() + OPERATOR_KICK_WAIT_MS);
  }

  /**
   * The outcome of an operator's kick. Kicks of one session share one outbox row (a later action's
   * replaces the earlier one's), so an outcome answers for every action that queued it; one the row was
   * replaced under, the outbox does not report. Kicked, the client's stop event still counts as the
   * kick's for a while; not kicked (it had gone already, or the kick failed), the actions' marks go and
   * a later stop event is its own (unless an earlier kick let it go a moment ago).
   */
  operatorKickDone(publisher: SessionId, kicked: boolean): void {
    const marks = this.marksOf(publisher);
    const letGo = marks.get(KICKED);
    marks.clear();
    if (kicked) marks.set(KICKED, Date.now() + KICKED_STOP_WAIT_MS);
    else if (letGo !== undefined) marks.set(KICKED, letGo);
    if (marks.size === 0) this.operatorKicks.delete(kickKey(publisher));
    // Those whose stop event never came (lost) go once they no longer count.
    if (this.operatorKicks.size > OPERATOR_KICKS_KEPT) {
      for (const [k, m] of this.operatorKicks) if ([...m.values()].every((until) => until <= Date.now())) this.operatorKicks.delete(k);
    }
  }

  /**
   * An operator's action that marked these publishers kicks none of them after all (undone, or its kicks
   * could not be queued): it takes back its own mark. (`action` unknown, from a Worker of the version
   * before: the latest mark of an action.)
   */
  operatorKicksCalledOff(publishers: SessionId[], action?: OperatorAction): void {
    for (const p of publishers) {
      const marks = this.marksOf(p);
      const own = action ?? [...marks].filter(([a]) => a !== KICKED).sort((x, y) => y[1] - x[1])[0]?.[0];
      if (own !== undefined) marks.delete(own);
      if (marks.size === 0) this.operatorKicks.delete(kickKey(p));
    }
  }

  /** The session's marks, those expired dropped (an edge unreachable for long, rotated again and again, adds one each). */
  private marksOf(p: SessionId): Map<string, number> {
    const key = kickKey(p);
    let marks = this.operatorKicks.get(key);
    if (!marks) this.operatorKicks.set(key, (marks = new Map()));
    for (const [a, until] of marks) if (until <= Date.now()) marks.delete(a);
    return marks;
  }

  /** A publisher session ended: no kick of it is under way any more. */
  ended(s: SessionId): void {
    this.operatorKicks.delete(kickKey(s));
  }

  /**
   * Ends the publishers their servers' APIs no longer have (asked until `answerBy` at most); true if any ended.
   * `why`: asked once the answers are in, why a session that went ended: a ghost, or an operator's kick its edge
   * confirmed; null leaves it as it is (a kick of it began meanwhile: its stop event ends it).
   */
  async endGhosts(blockers: SessionId[], answerBy: number, why: (s: SessionId) => "ghost" | "operator" | null = () => "ghost"): Promise<boolean> {
    // A deleted stream's sessions (the sweep's) had their entries written under its name too.
    const key = this.host.streamKey() ?? this.host.name();
    const gone = await this.ghosts.gone(blockers, Math.min(CHECK_BUDGET_MS, answerBy - Date.now()));
    let ended = 0;
    for (const g of gone) {
      const reason = why(g);
      if (reason === null || this.host.sessions().end(g, reason) === 0) continue;
      ended++;
      this.ended(g);
      this.host.record(reason === "ghost" ? "ghost" : "kick", g.serverId, g.clientId, "", "end", reason === "ghost" ? GHOST_REASON : KICKED_GONE_REASON);
      this.forgetEntry(g, key);
    }
    return ended > 0;
  }

  /**
   * The stream's alarm (every 2 × SERVER_TIMEOUT_S while it holds sessions): its live publishers whose
   * servers' APIs no longer have them end as ghosts of lost on_unpublish and on_close events, which
   * would otherwise keep the stream live (its publish-seconds counting, its stream.ended never sent)
   * until someone publishes again. A publisher a kick is under way for is left to that kick (its
   * stop event ends it with the kick's reason), also one whose kick began while the question was on
   * its way (an operator rotated the key or deleted the stream, and the kick emptied SRS's answer).
   * One an operator's kick has let go (its edge said so) whose stop events were lost ends as the kick's
   * (reason operator), not as a ghost.
   */
  async sweepGhosts(live: SessionId[]): Promise<void> {
    if (!this.ghosts.enabled) return;
    const why = (s: SessionId) => (this.letGoByKick(s) ? "operator" : this.kickedFor(s) === null ? "ghost" : null);
    const asked = live.filter((s) => why(s) !== null);
    if (asked.length > 0) await this.endGhosts(asked, Date.now() + CHECK_BUDGET_MS, why);
  }

  /** An operator's kick of this publisher was answered "kicked" by its edge a moment ago (KICKED_STOP_WAIT_MS). */
  private letGoByKick(s: SessionId): boolean {
    const until = this.operatorKicks.get(kickKey(s))?.get(KICKED);
    return until !== undefined && Date.now() < until;
  }

  /**
   * A session this stream ended without a stop event: its index entry goes too (as after a stop), so the server's
   * session count and a later "end all" follow. With `hookId` (a late attempt's own entry): only what that hook wrote.
   * `key`: the stream's name as it was when the work began (an operator may delete the stream while an API call is
   * on its way: the session this work then ends still had its entry written under that name).
   */
  private forgetEntry(g: SessionId, key: string | null, hookId?: string): void {
    if (!key) return;
    const env = this.host.env();
    this.host.waitUntil(
      withRetry(() => serverRegistry(env, g.serverId), (r) => r.forget(g.serverId, g.serviceId, g.clientId, [{ streamKey: key, role: "publisher" }], hookId)).catch(() => {}),
    );
  }

  /**
   * onDuplicatePublish "replace": kicks every live publisher but `session`
   * through its edge's SRS API, and ends their sessions once each kick is
   * confirmed (or the client proven gone). Null when the way is free; else
   * the refusal (fail closed: two publishers are never admitted at once). A
   * hook the Worker undid meanwhile kicks nobody: SRS refused its client.
   * Every call ends by `answerBy`, and a kick is sent only while the hook can
   * still wait for its answer and for the client to go: no old publisher is
   * kicked for a new one the hook then has no time to admit. `indexed`: the
   * new publisher's index entry was written here before the first kick (the
   * Worker then keeps an admission even if its own write beside it failed). `stillReplaces`: the takeover
   * is still what the stream's policy says (an operator may switch onDuplicatePublish back to "deny",
   * rotate the key or delete the stream while it runs); asked before each kick, right before its DELETE:
   * once false no kick is sent and the way is left as it is (null: the caller decides again, and refuses).
   */
  async takeOver(
    session: SessionId,
    hookId: string,
    answerBy: number,
    late: () => Decision | null = () => this.host.voided(hookId),
    stillReplaces: () => boolean = () => true,
  ): Promise<{ refused: Decision | null; indexed: boolean }> {
    let indexed = false;
    const key = this.host.streamKey();
    const refused = await this.kickHolders(session, hookId, answerBy, late, stillReplaces, key, () => void (indexed = true));
    // A late attempt (its hook undone, or its session's stop event came meanwhile) admits nothing: an entry it wrote goes.
    if (indexed && refused !== null && late() !== null) this.forgetEntry(session, key, hookId);
    return { refused, indexed };
  }

  /** takeOver's work; `onIndexed` is told once the new publisher's index entry is written. */
  private async kickHolders(
    session: SessionId,
    hookId: string,
    answerBy: number,
    late: () => Decision | null,
    stillReplaces: () => boolean,
    key: string | null,
    onIndexed: () => void,
  ): Promise<Decision | null> {
    const env = this.host.env();
    const sessions = this.host.sessions();
    const holders = sessions.livePublishersBesides(session);
    // Every holder's API address before the first kick: a slow lookup (registry) after it would leave one kicked, the hook out of time.
    const targets = env.SRS_API_URL ? await Promise.all(holders.map((h) => this.ghosts.targetOf(h))) : [];
    // The new publisher's index entry before any kick (the Worker writes it too, beside this call): were that
    // write to fail (the registry overloaded), the Worker would undo the admission with the old publisher kicked.
    if (holders.length > 0 && env.SRS_API_URL) {
      const before = late();
      if (before) return before;
      const unindexed = await this.indexBeforeKick(session, hookId, holders[0]);
      if (unindexed) return unindexed;
      if (this.host.streamKey()) onIndexed();
    }
    for (const [i, holder] of holders.entries()) {
      // Two live holders (after a heal): each kick is done by the time that leaves the kicks after it theirs
      // (each its question, its answer and its client's going), else the first would be kicked and the hook
      // then refused for lack of time for the second.
      const doneBy = answerBy - (holders.length - 1 - i) * (2 * API_TIMEOUT_MS + TAKEOVER_WAIT_MS);
      const sendBy = doneBy - API_TIMEOUT_MS - TAKEOVER_WAIT_MS;
      if (!env.SRS_API_URL) return { allow: false, denial: takeoverFailed(holder, "SRS_API_URL is not set, so the old publisher cannot be kicked") };
      const target = targets[i];
      if (!target) return { allow: false, denial: takeoverFailed(holder, `no SRS API known for server ${holder.serverId}`) };
      const undone = late();
      if (undone) return undone;
      if (!stillReplaces()) return null;
      let outcome: KickOutcome;
      // Marked once the DELETE is on its way, not while the kick waits for a call slot or asks its question first: a
      // holder that stops on its own then (its edge's API unreachable, no kick sent, the new publisher refused) stopped.
      let marked = false;
      try {
        // Asked again right before the DELETE (after the wait for a call slot): an operator's change meanwhile calls it off.
        const kick = await this.ghosts.kick(target, holder.clientId, sendBy, doneBy, () => {
          const wanted = late() === null && stillReplaces();
          if (wanted && !marked) this.markKicking(holder, 1);
          marked ||= wanted;
          return wanted;
        });
        outcome = kick.outcome;
        if (kick.problem === CALLED_OFF) return late();
        const stopped = () => !sessions.isPublishing(holder);
        // A DELETE sent whose answer never came (the connection reset or timed out on its way back, a proxy's 5xx):
        // SRS may have kicked the client. Its going is waited for as after a kick; only if it stays is the new one
        // refused (else the old one was kicked for a new one refused: no publisher at all).
        if (outcome === "failed" && marked && answerLost(kick.problem) && (await this.ghosts.untilGone(target, holder.clientId, TAKEOVER_WAIT_MS, stopped, doneBy))) {
          outcome = "kicked";
        }
        if (outcome === "failed") return { allow: false, denial: takeoverFailed(holder, takeoverProblem(holder.serverId, kick.problem)) };
        if (outcome === "unaddressable") return { allow: false, denial: takeoverFailed(holder, "its client id cannot be named in SRS's API") };
        // Kicked: SRS closes the connection (and, on an edge, its forward to the origin) right after; admitted only once it is gone.
        // SRS sends the kicked client's on_unpublish before its API lets it go: that stop is proof enough.
        if (kick.outcome === "kicked" && !(await this.ghosts.untilGone(target, holder.clientId, TAKEOVER_WAIT_MS, stopped, doneBy))) {
          return { allow: false, denial: takeoverFailed(holder, `kicked, but still connected to edge ${holder.serverId} ${TAKEOVER_WAIT_MS / 1000} s later`) };
        }
      } finally {
        if (marked) this.markKicking(holder, -1);
      }
      // Its on_unpublish may be lost (SRS never retries it): the entry goes with the session, not with that event.
      if (sessions.end(holder, "takeover") > 0) this.forgetEntry(holder, key);
      this.host.record("takeover", holder.serverId, holder.clientId, "", "end",
        `replaced by client ${session.clientId} on server ${session.serverId} (onDuplicatePublish: replace): ${outcome === "kicked" ? "kicked" : "already gone"}`);
    }
    return null;
  }

  /** A kick of `holder` begins (+1) or is done, its wait for the client to go included (-1): see kickedFor. */
  private markKicking(holder: SessionId, by: 1 | -1): void {
    const key = kickKey(holder);
    const n = (this.kicking.get(key) ?? 0) + by;
    if (n > 0) this.kicking.set(key, n);
    else this.kicking.delete(key);
  }

  /** Writes the new publisher's index entry as the Worker does (the same upsert); the refusal when it cannot be written. */
  private async indexBeforeKick(session: SessionId, hookId: string, holder: SessionId): Promise<Decision | null> {
    const streamKey = this.host.streamKey();
    if (!streamKey) return null;
    const env = this.host.env();
    try {
      const epoch = await withRetry(
        () => serverRegistry(env, session.serverId),
        (r) => r.track(session.serverId, session.serviceId, session.clientId, { streamKey, role: "publisher" }, hookId),
      );
      return epoch === "retired" ? { allow: false, denial: Denials.retiredProcess } : null;
    } catch (err) {
      console.error(JSON.stringify({ error: "takeover: server index unavailable", server: session.serverId, detail: String(err).slice(0, 200) }));
      return { allow: false, denial: takeoverFailed(holder, "the server index (registry) could not record the new publisher, so nobody was kicked") };
    }
  }
}

/** A kick's DELETE got no answer of SRS's own (none at all, a timeout, a proxy's 5xx or page): SRS may have carried it out. */
function answerLost(problem: string | undefined): boolean {
  return problem === undefined || [UNREACHABLE, TOO_SLOW, NOT_SRS].includes(problem) || /^edge answered HTTP 5\d\d$/.test(problem);
}

function kickKey(s: SessionId): string {
  return `${s.serverId}\n${s.serviceId}\n${s.clientId}`;
}

/** A failed kick's problem naming the old publisher's edge: "edge unreachable" → "edge edge-eu-1 unreachable". */
function takeoverProblem(serverId: string, problem = "edge unreachable"): string {
  return problem.replace(/^edge\b/, `edge ${serverId}`);
}
