/**
 * Ghosts of lost stop hooks, found through SRS's HTTP API (src/srs/api.ts).
 * SRS never retries on_stop / on_unpublish, so a session can outlive its
 * client. Before a refusal rests on sessions of a live server (publisher
 * busy, cap reached), the object about to refuse asks that server's API
 * whether those clients still exist, ends the ones it no longer has, and
 * decides again. Never on the path of an admitted hook.
 *
 * Bounded: at most GHOSTS_PER_CHECK clients per refusal, CALLS_PER_SERVER
 * calls at a time to one server (API_CALLS_IN_FLIGHT from the object to all
 * servers together, src/srs/api.ts), an answer per client kept ANSWER_TTL_MS, a
 * server whose API failed left alone for DOWN_TTL_MS (its sessions stand,
 * as without the API), each call API_TIMEOUT_MS at most and a refusal's
 * whole check CHECK_BUDGET_MS at most. Off unless SRS_API_URL is set.
 */
import type { Env } from "../env";
import { withRetry } from "../platform/retry";
import { serverRegistry } from "../object-access";
import { Slots } from "../platform/slots";
import type { SessionId } from "./hook";
import { apiCallSlots, CALLED_OFF, clientPresence, kickClient, NOT_ASKED, TOO_SLOW, type ApiTarget, type ClientPresence, type KickResult } from "./api";

export const GHOSTS_PER_CHECK = 20;
/** What the decision log says of a session ended this way. */
export const GHOST_REASON = "ended: its SRS server's API no longer has this client (a lost stop event)";
/** Calls at a time from one object to one server's API (ghost checks, takeovers, the kick outbox). */
export const CALLS_PER_SERVER = 4;
const ANSWER_TTL_MS = 3_000;
const DOWN_TTL_MS = 5_000;
const TARGET_TTL_MS = 5_000;
/** A refusal waits at most this long for the answers of a check, however many calls it needs (registry lookup and identity call included). */
export const CHECK_BUDGET_MS = 2_000;
/** GET /admin/servers hears from an object again this often while its word on a server's API stays the same. */
const REPORT_EVERY_MS = 5_000;

/**
 * At most CALLS_PER_SERVER calls at a time from one object to one server's
 * API: the others wait their turn, in order.
 */
export class ServerCallSlots {
  private servers = new Map<string, Slots>();

  /** Runs `work` in a slot of the server; null if no slot was free by `deadline` (none: waits its turn however long). */
  async run<T>(serverId: string, work: () => Promise<T>, deadline?: number): Promise<T | null> {
    let slots = this.servers.get(serverId);
    if (!slots) this.servers.set(serverId, (slots = new Slots(CALLS_PER_SERVER)));
    try {
      return await slots.run(work, deadline);
    } finally {
      // A server with nothing running or waiting is forgotten (the next call makes its slots again).
      if (slots.idle && this.servers.get(serverId) === slots) this.servers.delete(serverId);
    }
  }
}

export class GhostCheck {
  private answers = new Map<string, { at: number; presence: ClientPresence }>();
  private down = new Map<string, number>();
  private targets = new Map<string, { at: number; target: ApiTarget | null }>();
  /** Questions on their way, with when each was asked. */
  private inflight = new Map<string, { at: number; answer: Promise<ClientPresence> }>();
  private slots = new ServerCallSlots();
  /** The object's places for API calls, all servers together (an object has one GhostCheck, and no other caller of the API). */
  private apiCalls = apiCallSlots();
  private reported = new Map<string, { ok: boolean; at: number }>();

  constructor(private env: Env) {}

  get enabled(): boolean {
    return !!this.env.SRS_API_URL;
  }

  /**
   * Which of these sessions their servers' APIs no longer have (at most
   * GHOSTS_PER_CHECK asked, within `budgetMs` in all: what is not answered
   * by then counts as unknown, and the session stands). A question still
   * on its way then goes on: its answer is kept for the next refusal, and
   * only a call that failed leaves its server alone for a while.
   */
  async gone<S extends SessionId & { since?: number }>(sessions: S[], budgetMs = CHECK_BUDGET_MS): Promise<S[]> {
    if (!this.enabled || sessions.length === 0) return [];
    const deadline = Date.now() + budgetMs;
    const asked = sessions.slice(0, GHOSTS_PER_CHECK);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((resolve) => (timer = setTimeout(() => resolve("late"), budgetMs)));
    try {
      const answers = await Promise.all(asked.map((s) => Promise.race([this.bounded(s, deadline), late])));
      return asked.filter((_, i) => answers[i] === "gone");
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Polls the client until its server says it is gone, or `stopped` says its
   * stop event arrived (SRS sends on_unpublish before its API lets the client
   * go), at most `ms`; true once it is (a kicked connection takes a moment).
   * The stop event counts as soon as it arrives, also while a question is on
   * its way to a slow API.
   */
  async untilGone(target: ApiTarget, clientId: string, ms: number, stopped: () => boolean = () => false, answerBy = Infinity): Promise<boolean> {
    const until = Date.now() + ms;
    for (;;) {
      if (stopped()) return true;
      // No question starts after `until`, and none waits past `answerBy` (the hook's own time).
      // After a kick the answer should be "not found": who answers at the address is asked alongside, not after it.
      const asking = this.slots.run(target.serverId, () => clientPresence(this.env, this.apiCalls, target, clientId, { until: answerBy, identityAlongside: true }), until).then((answer) => {
        if (answer) this.noteCall(target.serverId, answer);
        return answer;
      });
      const answer = await untilFirst(asking, stopped);
      if (answer === "stopped" || answer?.presence === "gone" || stopped()) return true;
      if (Date.now() + 100 >= until) return false;
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /**
   * Kicks a client (a takeover) in turn with this object's other calls to its server; GET /admin/servers
   * shows how it went. The kick is sent only before `sendBy`; a check of the client that just said this
   * process has it (a refusal's, moments ago) spares the question before it. `stillWanted` is asked right
   * before the DELETE (after the wait for a call slot and the question): false calls the kick off (CALLED_OFF).
   */
  async kick(target: ApiTarget, clientId: string, sendBy?: number, doneBy?: number, stillWanted?: () => boolean): Promise<KickResult> {
    const cached = this.answers.get(`${target.serverId}\n${target.serviceId}\n${clientId}`);
    const knownPresent = cached?.presence === "present" && Date.now() - cached.at < ANSWER_TTL_MS;
    const result = (await this.slots.run(target.serverId, () => kickClient(this.env, this.apiCalls, target, clientId, { sendBy, knownPresent, doneBy, stillWanted }), sendBy)) ?? { outcome: "failed", problem: NOT_ASKED };
    if (result.outcome !== "unaddressable") this.noteCall(target.serverId, result);
    return result;
  }

  /**
   * One client's presence, sharing a question already on its way, and at most
   * CALLS_PER_SERVER questions in flight to one server from this object. An
   * answer (or a question) from before the session's `since` is about an
   * earlier session of that client id (an HLS player back with its hls_ctx):
   * never believed for this one.
   */
  private bounded(s: SessionId & { since?: number }, deadline: number): Promise<ClientPresence> {
    if ((this.down.get(s.serverId) ?? 0) > Date.now()) return Promise.resolve("unknown");
    const key = `${s.serverId}\n${s.serviceId}\n${s.clientId}`;
    const after = (at: number) => s.since === undefined || at > s.since;
    const cached = this.answers.get(key);
    if (cached && Date.now() - cached.at < ANSWER_TTL_MS && after(cached.at)) return Promise.resolve(cached.presence);
    const pending = this.inflight.get(key);
    if (pending && after(pending.at)) return pending.answer;
    const askedAt = Date.now();
    const asking = (async (): Promise<ClientPresence> => {
      const target = await this.target(s);
      if (!target) return "unknown";
      // Sent before the check's deadline or not at all; once sent, it goes on past it (kept for the next refusal).
      const answer = await this.slots.run(s.serverId, () => clientPresence(this.env, this.apiCalls, target, s.clientId, { sendBy: deadline }), deadline);
      // No slot (of the server's, or of the object's) in time: unknown for this check, nothing kept, and no word on the API (nothing was asked).
      if (!answer || answer.problem === TOO_SLOW || answer.problem === NOT_ASKED) return "unknown";
      if (this.answers.size > 10_000) this.answers.clear();
      // Dated when it was asked: a session of that id admitted since then is not the one it answers for.
      this.answers.set(key, { at: askedAt, presence: answer.presence });
      this.noteCall(s.serverId, answer);
      return answer.presence;
    })();
    const entry = { at: askedAt, answer: asking };
    this.inflight.set(key, entry);
    void asking.finally(() => {
      if (this.inflight.get(key) === entry) this.inflight.delete(key);
    });
    return asking;
  }

  /**
   * A call's outcome: one that failed (unreachable, refused, not SRS, another server) leaves its server
   * alone for DOWN_TTL_MS; GET /admin/servers shows whether the last call worked. A call without a
   * problem, one that was never made (an id SRS's API cannot name, or no place for it in time: NOT_ASKED),
   * or one a hook had no time left for (TOO_SLOW), says nothing against the API.
   */
  private noteCall(serverId: string, answer: { presence?: ClientPresence; outcome?: string; problem?: string }): void {
    // Slow is not failing: a call the hook had no time for says nothing of the API.
    if (answer.problem === TOO_SLOW || answer.problem === NOT_ASKED || answer.problem === CALLED_OFF) return;
    if (answer.problem) this.down.set(serverId, Date.now() + DOWN_TTL_MS);
    else if (answer.presence === "unknown") return;
    this.report(serverId, !answer.problem);
  }

  /** Where the session's server's API is (null: none configured, or the registry could not say). */
  targetOf(s: SessionId): Promise<ApiTarget | null> {
    return this.target(s);
  }

  /** Where the session's server's API is, from its registry shard (kept 5 s: a PUT of an override counts soon). */
  private async target(s: SessionId): Promise<ApiTarget | null> {
    const key = `${s.serverId}\n${s.serviceId}`;
    const cached = this.targets.get(key);
    if (cached && Date.now() - cached.at < TARGET_TTL_MS) return cached.target;
    let target: ApiTarget | null = null;
    try {
      target = await withRetry(() => serverRegistry(this.env, s.serverId), (r) => r.apiTarget(s.serverId, s.serviceId));
    } catch (err) {
      console.error(JSON.stringify({ error: "SRS API target unknown: registry unreachable", server: s.serverId, detail: String(err) }));
      return null;
    }
    if (this.targets.size > 10_000) this.targets.clear();
    this.targets.set(key, { at: Date.now(), target });
    return target;
  }

  /** GET /admin/servers shows whether the last call to a server's API worked (told when that changes, else every REPORT_EVERY_MS). */
  private report(serverId: string, ok: boolean): void {
    const last = this.reported.get(serverId);
    if (last && last.ok === ok && Date.now() - last.at < REPORT_EVERY_MS) return;
    if (this.reported.size > 10_000) this.reported.clear();
    this.reported.set(serverId, { ok, at: Date.now() });
    void withRetry(() => serverRegistry(this.env, serverId), (r) => r.apiCalled(serverId, ok)).catch(() => {});
  }
}

/** `work`'s result, or "stopped" as soon as `stopped()` holds (looked at every 20 ms meanwhile). */
async function untilFirst<T>(work: Promise<T>, stopped: () => boolean): Promise<T | "stopped"> {
  let done = false;
  const watch = (async () => {
    while (!done) {
      if (stopped()) return "stopped" as const;
      await new Promise((r) => setTimeout(r, 20));
    }
    return "stopped" as const;
  })();
  try {
    return await Promise.race([work, watch]);
  } finally {
    done = true;
  }
}
