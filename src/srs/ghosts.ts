/**
 * Ghosts of lost stop hooks, found through SRS's HTTP API (src/srs/api.ts).
 * SRS never retries on_stop / on_unpublish, so a session can outlive its
 * client. Before a refusal rests on sessions of a live server (publisher
 * busy, cap reached), the object about to refuse asks that server's API
 * whether those clients still exist, ends the ones it no longer has, and
 * decides again. Never on the path of an admitted hook.
 *
 * Bounded: at most GHOSTS_PER_CHECK clients per refusal, CALLS_PER_SERVER
 * calls at a time to one server, an answer per client kept ANSWER_TTL_MS, a
 * server that could not be reached left alone for DOWN_TTL_MS (its sessions
 * stand, as without the API), each call API_TIMEOUT_MS at most. Off unless
 * SRS_API_URL is set.
 */
import type { Env } from "../env";
import { withRetry } from "../platform/retry";
import { serverRegistry } from "../object-access";
import type { SessionId } from "./hook";
import { clientPresence, type ApiTarget, type ClientPresence } from "./api";

export const GHOSTS_PER_CHECK = 20;
/** What the decision log says of a session ended this way. */
export const GHOST_REASON = "ended: its SRS server's API no longer has this client (a lost stop event)";
const CALLS_PER_SERVER = 4;
const ANSWER_TTL_MS = 3_000;
const DOWN_TTL_MS = 5_000;
const TARGET_TTL_MS = 5_000;
/** A refusal waits at most this long for the answers of a check, however many calls it needs. */
const CHECK_BUDGET_MS = 2_000;

export class GhostCheck {
  private answers = new Map<string, { at: number; presence: ClientPresence }>();
  private down = new Map<string, number>();
  private targets = new Map<string, { at: number; target: ApiTarget | null }>();
  private inflight = new Map<string, Promise<ClientPresence>>();
  private active = new Map<string, number>();
  private waiters = new Map<string, (() => void)[]>();

  constructor(private env: Env) {}

  get enabled(): boolean {
    return !!this.env.SRS_API_URL;
  }

  /**
   * Which of these sessions their servers' APIs no longer have (at most
   * GHOSTS_PER_CHECK asked, within CHECK_BUDGET_MS: what is not answered by
   * then counts as unknown, and the session stands).
   */
  async gone(sessions: SessionId[]): Promise<SessionId[]> {
    if (!this.enabled || sessions.length === 0) return [];
    const deadline = Date.now() + CHECK_BUDGET_MS;
    const asked = sessions.slice(0, GHOSTS_PER_CHECK);
    const answers = await Promise.all(asked.map((s) => this.bounded(s, deadline)));
    const byServer = new Map<string, boolean>();
    answers.forEach((a, i) => byServer.set(asked[i].serverId, (byServer.get(asked[i].serverId) ?? true) && a !== "unknown"));
    for (const [serverId, ok] of byServer) {
      if (!ok) this.down.set(serverId, Date.now() + DOWN_TTL_MS);
      this.report(serverId, ok);
    }
    return asked.filter((_, i) => answers[i] === "gone");
  }

  /**
   * Polls the client until its server says it is gone, or `stopped` says its
   * stop event arrived (SRS sends on_unpublish before its API lets the client
   * go), at most `ms`; true once it is (a kicked connection takes a moment).
   */
  async untilGone(target: ApiTarget, clientId: string, ms: number, stopped: () => boolean = () => false): Promise<boolean> {
    const until = Date.now() + ms;
    for (;;) {
      if (stopped() || (await clientPresence(this.env, target, clientId)) === "gone" || stopped()) return true;
      if (Date.now() + 100 >= until) return false;
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /**
   * One client's presence, sharing a question already on its way, and at most
   * CALLS_PER_SERVER questions in flight to one server from this object.
   */
  private bounded(s: SessionId, deadline: number): Promise<ClientPresence> {
    if ((this.down.get(s.serverId) ?? 0) > Date.now()) return Promise.resolve("unknown");
    const key = `${s.serverId}\n${s.serviceId}\n${s.clientId}`;
    const cached = this.answers.get(key);
    if (cached && Date.now() - cached.at < ANSWER_TTL_MS) return Promise.resolve(cached.presence);
    const pending = this.inflight.get(key);
    if (pending) return pending;
    const asking = (async (): Promise<ClientPresence> => {
      if (!(await this.slot(s.serverId, deadline))) return "unknown";
      try {
        return await this.presence(s);
      } finally {
        this.release(s.serverId);
      }
    })();
    this.inflight.set(key, asking);
    void asking.finally(() => this.inflight.delete(key));
    return asking;
  }

  private async slot(serverId: string, deadline: number): Promise<boolean> {
    for (;;) {
      const active = this.active.get(serverId) ?? 0;
      if (active < CALLS_PER_SERVER) {
        this.active.set(serverId, active + 1);
        return true;
      }
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const waiters = this.waiters.get(serverId) ?? [];
        waiters.push(resolve);
        this.waiters.set(serverId, waiters);
        setTimeout(resolve, left);
      });
    }
  }

  private release(serverId: string): void {
    this.active.set(serverId, (this.active.get(serverId) ?? 1) - 1);
    this.waiters.get(serverId)?.shift()?.();
  }

  private async presence(s: SessionId): Promise<ClientPresence> {
    const key = `${s.serverId}\n${s.serviceId}\n${s.clientId}`;
    const target = await this.target(s);
    if (!target) return "unknown";
    const presence = await clientPresence(this.env, target, s.clientId);
    if (this.answers.size > 10_000) this.answers.clear();
    this.answers.set(key, { at: Date.now(), presence });
    return presence;
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

  /** GET /admin/servers shows whether the last call to a server's API worked. */
  private report(serverId: string, ok: boolean): void {
    void withRetry(() => serverRegistry(this.env, serverId), (r) => r.apiCalled(serverId, ok)).catch(() => {});
  }
}
