/**
 * What a stream writes down about its hooks' decisions: failed keys and
 * tokens counted against the brute-force limit (auth-failures.ts), and the
 * decision log's lines (decision-log.ts). Publisher admissions and refused
 * plays both go through here, so a guesser is counted and logged the same
 * way whichever hook it guesses with.
 */
import type { SessionId } from "../srs/hook";
import { STREAM_FAILURES_LOGGED, type AttemptKind, type AuthFailures } from "./auth-failures";
import type { DecisionLog, StreamEvent } from "./decision-log";
import { Denials, isFailedGuess, type Decision } from "./rules";

/** What the stream object lends: whether the stream exists, and its counters and log (once its tables do). */
export interface DecisionRecordsHost {
  /** The stream exists (created, not deleted). */
  exists(): boolean;
  failures(): AuthFailures;
  log(): DecisionLog;
}

export class DecisionRecords {
  constructor(private host: DecisionRecordsHost) {}

  overLimit(kind: AttemptKind, ip: string, limit: number): boolean {
    return this.host.exists() && this.host.failures().overLimit(kind, ip, limit);
  }

  /**
   * Counts a wrong key or bad token. Past the stream-wide budget (guessers
   * rotating spoofed ips), failures are answered as usual but cost no write
   * and no log entry.
   */
  countFailure(kind: AttemptKind, ip: string, decision: Decision): void {
    if (!this.host.exists() || decision.allow || !isFailedGuess(decision.denial)) return;
    const budget = this.host.failures().spendBudget();
    if (budget === "over") return;
    this.host.failures().count(kind, ip);
    if (budget === "last") this.record("guesses", "", "", "", "deny", `${STREAM_FAILURES_LOGGED} failed keys or tokens this minute: further ones are not counted or logged until the minute ends`, "guesses");
  }

  /** A guesser over the limit is answered without a log entry: it cannot flush real decisions out. */
  recordDecision(action: string, session: SessionId, ip: string, decision: Decision, sub: string | null = null): void {
    if (!decision.allow && decision.denial.code === Denials.rateLimited.code) return;
    const guess = !decision.allow && isFailedGuess(decision.denial);
    if (guess && this.host.failures().overBudget()) return;
    // The viewer id of a genuine token refused (expired, …), as the viewer shards name it (src/viewers/admission.ts).
    const reason = (decision.allow ? (decision.admit ? "admitted" : "already live") : decision.denial.reason) + (sub ? ` (viewer ${sub})` : "");
    this.record(action, session.serverId, session.clientId, ip, decision.allow ? "allow" : "deny", reason, guess ? "guesses" : "decisions");
  }

  /** Streams that do not exist keep no log, so hooks naming random streams store nothing. */
  record(action: string, server: string, client: string, ip: string, decision: StreamEvent["decision"], reason: string, ring: "decisions" | "guesses" = "decisions"): void {
    if (!this.host.exists()) return;
    this.host.log().append(action, server, client, ip, decision, reason, ring);
  }
}
