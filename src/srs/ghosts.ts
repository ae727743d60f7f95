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
const TARGET_TTL_MS = 60_000;

export class GhostCheck {
  private answers = new Map<string, { at: number; presence: ClientPresence }>();
  private down = new Map<string, number>();
  private targets = new Map<string, { at: number; target: ApiTarget | null }>();

  constructor(private env: Env) {}

  get enabled(): boolean {
    return !!this.env.SRS_API_URL;
  }

  /** Which of these sessions their servers' APIs no longer have (at most GHOSTS_PER_CHECK asked). */
  async gone(sessions: SessionId[]): Promise<SessionId[]> {
    if (!this.enabled || sessions.length === 0) return [];
    const now = Date.now();
    const asked = sessions.slice(0, GHOSTS_PER_CHECK);
    const byServer = new Map<string, SessionId[]>();
    for (const s of asked) byServer.set(s.serverId, [...(byServer.get(s.serverId) ?? []), s]);
    const results = await Promise.all(
      [...byServer].map(async ([serverId, of]) => {
        if ((this.down.get(serverId) ?? 0) > now) return [];
        const gone: SessionId[] = [];
        let ok = true;
        for (let i = 0; i < of.length; i += CALLS_PER_SERVER) {
          const answers = await Promise.all(of.slice(i, i + CALLS_PER_SERVER).map((s) => this.presence(s)));
          answers.forEach((p, j) => {
            if (p === "gone") gone.push(of[i + j]);
            if (p === "unknown") ok = false;
          });
          if (!ok) break;
        }
        if (!ok) this.down.set(serverId, Date.now() + DOWN_TTL_MS);
        this.report(serverId, ok);
        return gone;
      }),
    );
    return results.flat();
  }

  private async presence(s: SessionId): Promise<ClientPresence> {
    const key = `${s.serverId}\n${s.serviceId}\n${s.clientId}`;
    const cached = this.answers.get(key);
    if (cached && Date.now() - cached.at < ANSWER_TTL_MS) return cached.presence;
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

  /** Polls the client until its server no longer has it, at most `ms` (a kicked connection takes a moment to close). */
  async untilGone(target: ApiTarget, clientId: string, ms: number): Promise<void> {
    const until = Date.now() + ms;
    while (Date.now() < until) {
      if ((await clientPresence(this.env, target, clientId)) !== "present") return;
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Where the session's server's API is, from its registry shard (kept a minute). */
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
