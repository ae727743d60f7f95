/**
 * Where a publisher session ends at its stream: a stop event (on_unpublish,
 * on_close), the Worker undoing an admission it could not complete, an
 * operator's end. Each must leave alone what it does not end: a later hook
 * of the same client (voided-hooks.ts), a decision of another hook still
 * under way (publish-attempts.ts); and it ends the session for the reason
 * it really ended (a kick's, a restart's).
 */
import type { SessionId } from "../srs/hook";
import { endReason } from "../usage/stream-activity";
import { sessionKey } from "./publish-attempts";
import type { PublisherParts } from "./publisher-admission";
import type { EndedSession } from "./sessions";

/** What a stop event or a fence tells the decision log. */
export interface EndCause {
  action: string;
  ip?: string;
  reason?: string;
  /**
   * The Worker undoes an admission of this start hook: an attempt of the same
   * hook still running here (its answer lost to a platform error) must not
   * admit again afterwards.
   */
  voidHook?: string;
}

/** What the stream object lends (its tables exist: the stream object ends nothing before). */
export interface PublisherEndsHost extends PublisherParts {
  sql: SqlStorage;
}

export class PublisherEnds {
  constructor(private host: PublisherEndsHost) {}

  /** StreamObject.end: the number of sessions ended. */
  end(session: SessionId, cause: EndCause): number {
    const { sql, publisherApi, attempts, voidHooks } = this.host;
    // An undo that arrives after SRS sent the client's on_publish again, and that hook was allowed, leaves the session.
    const key = sessionKey(session);
    const confirmer = voidHooks.confirmerOf(key);
    // Neither an undo nor an operator's end (src/session/lifecycle.ts endAll): a stop event, on_unpublish or on_close.
    const stopEvent = !cause.voidHook && cause.action !== "admin";
    if (!voidHooks.ending(key, cause.voidHook, sql, stopEvent)) return 0;
    // A stop event marks the decisions of the session under way when the hook it ends is unknown: when it is known,
    // that hook is void now (its attempts are late), and a decision of another hook of the client is not late (a slow
    // stop of an earlier session of the client id). An undo voids its own hook and leaves other hooks' decisions alone.
    if (!cause.voidHook && confirmer === undefined) attempts.stopped(key);
    attempts.ended(key);
    // A stop event of a publisher a takeover or an operator's kick is kicking: SRS stops it because it was kicked.
    const ended = this.host.sessions().end(session, (stopEvent && publisherApi.kickedFor(session)) || endReason(cause));
    if (ended > 0) publisherApi.ended(session);
    if (ended > 0) this.host.records.record(cause.action, session.serverId, session.clientId, cause.ip ?? "", "end", cause.reason ?? "session ended");
    return ended;
  }

  /**
   * Before an operator ends publishers: the registry is asked where their processes stand, so that a session a
   * restart or SESSION_GRACE_S ended before the call, whose notice has not reached this stream yet (a server on
   * many streams, a stream slow to answer, a notice waiting to be tried again), ends as they ended it: reason
   * restart or timeout, at its server's last heartbeat (README, "Usage"), and is neither reported nor kicked as
   * ended by the operator. An unreachable registry changes nothing: the operator's end goes on.
   */
  async endedMeanwhile(): Promise<void> {
    await this.host.liveness.refresh(null);
  }

  /** StreamObject.endSessions, once the registry was asked: the sessions ended by the operator. */
  endByOperator(filter: { serverId?: string; clientId?: string }): EndedSession[] {
    const ended = this.host.sessions().endMatching(filter);
    const scope = [filter.serverId && `server ${filter.serverId}`, filter.clientId && `client ${filter.clientId}`].filter(Boolean).join(", ");
    // One line per session, naming it (the viewers' shards do the same), whatever the filter named.
    for (const e of ended) this.host.records.record("admin", e.serverId, e.clientId, "", "end", `ended by operator${scope ? ` (${scope})` : ""}`);
    return ended;
  }
}
