/** One line of a stream's decision log, as GET /admin/streams/{app}/{stream}/events shows it. */
export interface StreamEvent {
  at: string;
  action: string;
  server: string;
  client: string;
  ip: string;
  decision: "allow" | "deny" | "end" | "suspend" | "resume" | "conflict";
  reason: string;
}

/** The log keeps this many events per stream. */
export const EVENTS_KEPT = 100;

/**
 * A stream's last EVENTS_KEPT decisions: a ring of slots, so one single-row
 * write replaces the oldest entry, whatever the audience.
 */
export class DecisionLog {
  private seq: number;

  static schema = `
    CREATE TABLE IF NOT EXISTS events (
      slot INTEGER PRIMARY KEY, seq INTEGER NOT NULL, at INTEGER NOT NULL, action TEXT NOT NULL,
      server TEXT NOT NULL, client TEXT NOT NULL, ip TEXT NOT NULL, decision TEXT NOT NULL, reason TEXT NOT NULL);`;

  constructor(private sql: SqlStorage) {
    this.seq = sql.exec<{ seq: number | null }>("SELECT MAX(seq) AS seq FROM events").one().seq ?? 0;
  }

  append(action: string, server: string, client: string, ip: string, decision: StreamEvent["decision"], reason: string): void {
    const seq = ++this.seq;
    this.sql.exec(
      "INSERT OR REPLACE INTO events (slot, seq, at, action, server, client, ip, decision, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
      seq % EVENTS_KEPT, seq, Date.now(), action, server, client, ip, decision, reason,
    );
  }

  /** Newest first. */
  list(): StreamEvent[] {
    return this.sql
      .exec<{ at: number; action: string; server: string; client: string; ip: string; decision: string; reason: string }>(
        "SELECT at, action, server, client, ip, decision, reason FROM events ORDER BY seq DESC LIMIT ?",
        EVENTS_KEPT,
      )
      .toArray()
      .map((e) => ({ ...e, at: new Date(e.at).toISOString(), decision: e.decision as StreamEvent["decision"] }));
  }
}
