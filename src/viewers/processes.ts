/**
 * What a viewer shard knows of its server's processes (service_id): which it
 * has seen, which are suspended (their server is silent: their viewers are
 * kept, not counted), which were replaced by a restart (their late hooks are
 * refused, 4006), and the last heartbeat the registry told of. The registry
 * decides all of it (src/server/epochs.ts); this book only keeps the
 * shard's copy, stored, so a restarted shard keeps refusing a replaced
 * process and keeps a silent one's viewers suspended.
 */
import { ForgottenProcesses } from "../session/forgotten-processes";
import type { ShardTables } from "./tables";

export interface Process {
  suspended: boolean;
  /** The registry's sequence number of the status applied last (-1: none yet); an older notice changes nothing. */
  seq: number;
}

/** What the shard last heard from the registry about its server: the server's last heartbeat then, and when it heard. */
interface Heard {
  lastHeartbeat: number | null;
  at: number;
}

/** How long a replaced process's id is kept (its late hooks are refused with 4006). */
const REPLACED_KEPT_MS = 24 * 3600 * 1000;

export class ShardProcesses {
  private known = new Map<string, Process>();
  private replaced = new Set<string>();
  private heard = new Map<string, Heard>();
  private forgotten = new ForgottenProcesses();

  constructor(private tables: ShardTables) {}

  /** Reads the stored processes (the tables exist). */
  load(): void {
    const sql = this.tables.sql;
    for (const r of sql.exec<{ service_id: string; suspended: number; seq: number }>("SELECT * FROM processes")) {
      this.known.set(r.service_id, { suspended: r.suspended === 1, seq: r.seq });
    }
    for (const r of sql.exec<{ service_id: string }>("SELECT service_id FROM replaced")) this.replaced.add(r.service_id);
  }

  get(id: string): Readonly<Process> | undefined {
    return this.known.get(id);
  }

  knows(id: string): boolean {
    return this.known.has(id);
  }

  isSuspended(id: string): boolean {
    return this.known.get(id)?.suspended ?? false;
  }

  isReplaced(id: string): boolean {
    return this.replaced.has(id);
  }

  ids(): string[] {
    return [...this.known.keys()];
  }

  /** A process seen for the first time (or again after it was forgotten), trusted until the registry says otherwise. */
  add(id: string): void {
    if (this.known.has(id)) return;
    // Forgotten before: it starts from the last news applied, so older news arriving late changes nothing.
    const seq = this.forgotten.seqOf(id);
    this.known.set(id, { suspended: false, seq });
    this.tables.prepare();
    this.tables.sql.exec("INSERT OR REPLACE INTO processes (service_id, suspended, seq) VALUES (?, 0, ?)", id, seq);
  }

  /** Stores the process's status; true if it went from live to suspended or back. */
  setSuspended(id: string, suspended: boolean, seq: number): boolean {
    const p = this.known.get(id)!;
    const changed = p.suspended !== suspended;
    p.suspended = suspended;
    p.seq = seq;
    this.tables.sql.exec("UPDATE processes SET suspended = ?, seq = ? WHERE service_id = ?", suspended ? 1 : 0, seq, id);
    return changed;
  }

  /** The registry dropped its index entry for the process: its next viewer here is checked again. */
  forget(id: string): void {
    this.heard.delete(id);
    const p = this.known.get(id);
    if (!p) return;
    this.known.delete(id);
    this.forgotten.remember(id, p.seq);
    this.tables.sql.exec("DELETE FROM processes WHERE service_id = ?", id);
  }

  markReplaced(id: string): void {
    if (this.replaced.has(id)) return;
    this.replaced.add(id);
    // A replaced process is never asked about again (its hooks are refused): else one entry per restart stayed for good.
    this.heard.delete(id);
    this.tables.prepare();
    const now = Date.now();
    this.tables.sql.exec("INSERT OR REPLACE INTO replaced (service_id, at) VALUES (?, ?)", id, now);
    this.forgetReplaced(now);
  }

  /** A replaced process cannot speak for long (its late hooks are in flight); a day later its entry is only clutter. */
  forgetReplaced(now: number): void {
    if (!this.tables.ready) return;
    for (const r of this.tables.sql.exec<{ service_id: string }>("DELETE FROM replaced WHERE at < ? RETURNING service_id", now - REPLACED_KEPT_MS)) {
      this.replaced.delete(r.service_id);
    }
  }

  /** The registry answered for the process: the server's newest heartbeat as it knew it. */
  heardFrom(id: string, lastHeartbeat: number | null): void {
    this.heard.set(id, { lastHeartbeat, at: Date.now() });
  }

  /**
   * Could the registry take this process's server for silent? Only if, by
   * what the shard last heard, no heartbeat came for SERVER_TIMEOUT_S. A
   * viewer hook then speaks for the process (at most once per SERVER_TIMEOUT_S:
   * the answer tells the newest heartbeat). A server that sent none by then
   * may have sent its first since, and fallen silent SERVER_TIMEOUT_S later:
   * its hooks speak at most once per SERVER_TIMEOUT_S too (else a hook of it,
   * arriving before the registry's notice of that silence, did not bring it back).
   */
  mayThinkSilent(id: string, serverTimeoutMs: number): boolean {
    const h = this.heard.get(id);
    if (!h) return true;
    return Date.now() - (h.lastHeartbeat ?? h.at) >= serverTimeoutMs;
  }
}
