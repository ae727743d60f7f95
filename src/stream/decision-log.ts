/** One line of a stream's decision log, as GET /admin/streams/{app}/{stream}/events shows it. */
export interface StreamEvent {
  at: string;
  action: string;
  server: string;
  client: string;
  ip: string;
  decision: "allow" | "deny" | "end" | "suspend" | "resume" | "conflict" | "kick";
  reason: string;
}

/** The log keeps this many decisions per stream... */
export const EVENTS_KEPT = 100;
/** ...and, apart, this many failed keys and tokens, so guessing never pushes real decisions out. */
export const GUESSES_KEPT = 20;

/**
 * A stream's last decisions: two rings of slots (decisions in 0…99, failed
 * guesses in 100…119), so one single-row write replaces the oldest entry of
 * its ring, whatever the audience, and a guesser, however patient, only ever
 * overwrites other guesses.
 */
export class DecisionLog {
  private seq: number;
  private next: Record<"decisions" | "guesses", number>;

  static schema = `
    CREATE TABLE IF NOT EXISTS events (
      slot INTEGER PRIMARY KEY, seq INTEGER NOT NULL, at INTEGER NOT NULL, action TEXT NOT NULL,
      server TEXT NOT NULL, client TEXT NOT NULL, ip TEXT NOT NULL, decision TEXT NOT NULL, reason TEXT NOT NULL);`;

  constructor(private sql: SqlStorage) {
    this.seq = sql.exec<{ seq: number | null }>("SELECT MAX(seq) AS seq FROM events").one().seq ?? 0;
    const newest = (from: number, to: number) =>
      sql.exec<{ slot: number }>("SELECT slot FROM events WHERE slot >= ? AND slot < ? ORDER BY seq DESC LIMIT 1", from, to).toArray()[0]?.slot;
    const lastDecision = newest(0, EVENTS_KEPT);
    const lastGuess = newest(EVENTS_KEPT, EVENTS_KEPT + GUESSES_KEPT);
    this.next = {
      decisions: lastDecision === undefined ? 0 : (lastDecision + 1) % EVENTS_KEPT,
      guesses: lastGuess === undefined ? 0 : (lastGuess - EVENTS_KEPT + 1) % GUESSES_KEPT,
    };
  }

  append(action: string, server: string, client: string, ip: string, decision: StreamEvent["decision"], reason: string, ring: "decisions" | "guesses" = "decisions"): void {
    const seq = ++this.seq;
    const slot = ring === "decisions" ? this.next.decisions : EVENTS_KEPT + this.next.guesses;
    this.next[ring] = (this.next[ring] + 1) % (ring === "decisions" ? EVENTS_KEPT : GUESSES_KEPT);
    this.sql.exec(
      "INSERT OR REPLACE INTO events (slot, seq, at, action, server, client, ip, decision, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
      slot, seq, Date.now(), action, server, client, ip, decision, reason,
    );
  }

  /** Forgets every entry (a stream deleted and created again starts afresh). */
  clear(): void {
    this.sql.exec("DELETE FROM events");
    this.seq = 0;
    this.next = { decisions: 0, guesses: 0 };
  }

  /** Newest first: up to EVENTS_KEPT decisions and GUESSES_KEPT failed guesses, interleaved by time. */
  list(): StreamEvent[] {
    return this.sql
      .exec<{ at: number; action: string; server: string; client: string; ip: string; decision: string; reason: string }>(
        "SELECT at, action, server, client, ip, decision, reason FROM events ORDER BY seq DESC LIMIT ?",
        EVENTS_KEPT + GUESSES_KEPT,
      )
      .toArray()
      .map((e) => ({ ...e, at: new Date(e.at).toISOString(), decision: e.decision as StreamEvent["decision"] }));
  }
}
