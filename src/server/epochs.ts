/**
 * The epochs of SRS processes: which process of each server (server_id) a message comes from, and
 * how each process's sessions stand, as a registry shard (src/server/registry.ts) decides them.
 *
 * SRS keeps server_id across restarts but draws a new service_id at every
 * process start, and sends no stop events when it is killed. So a heartbeat
 * with a new service_id means the old process is gone: its sessions end for
 * good. A start hook with a new service_id does the same only on a server
 * that never heartbeats; elsewhere it is a candidate until its own first
 * heartbeat (it may be late, or forged). Stop and close events never move the
 * epoch: a late on_stop of some process must not fence the running one.
 *
 * Heartbeat silence for SERVER_TIMEOUT_S is not death: a partition between an
 * edge and Cloudflare looks the same. The server's sessions are suspended
 * (they stop counting and blocking, so a crashed edge holds nothing hostage)
 * and come back the moment the same process is heard from again. Only a
 * restart, a stop event, or SESSION_GRACE_S of silence end them.
 *
 * A service_id of a server is, in the epoch (Epoch):
 * - current: the server's running process (servers.service_id);
 * - candidate: a start hook's process never heard of while the current one still heartbeats: its
 *   sessions count while it waits for its own first heartbeat (table candidates);
 * - retired: replaced by a restart, or a candidate refused: it never becomes current again (table
 *   retired, the last RETIRED_KEPT per server).
 * And, for its streams and viewer shard (ProcessStatus):
 * - live: heard from within SERVER_TIMEOUT_S, or of a server that never heartbeats;
 * - suspended: silent for SERVER_TIMEOUT_S (dead_since; a candidate: quiet);
 * - expired (still suspended, with a cutoff): silent for SESSION_GRACE_S (expired_at): the sessions
 *   admitted up to then end for good; the process stays current, and what it admits after it
 *   returns is new;
 * - ended: retired; its sessions are over for good, its later start hooks refused.
 *
 * The transitions (acknowledgeEpoch, for every message; the alarm, for time):
 * - any message of the current process brings a silent server back (resume; expire first if
 *   SESSION_GRACE_S passed meanwhile);
 * - a heartbeat with a new service_id, or a start hook of one on a server that never heartbeats,
 *   is a restart: the new process is current, the old one and every other candidate retired;
 * - a start hook with a new service_id on a server that heartbeats makes a candidate: its own
 *   heartbeat makes it current (a restart); no hook of it for SERVER_TIMEOUT_S makes it quiet until
 *   it speaks again; it is retired once the current process heartbeated through SERVER_TIMEOUT_S
 *   since it appeared, or after SESSION_GRACE_S whatever happens (settleCandidates);
 * - a stop or close event, or a hook that gates nothing, brings a silent server back, or keeps a
 *   candidate alive, and never moves the epoch;
 * - a retired process still heard from long after its restart is a second SRS with the same
 *   server_id (logged);
 * - the alarm suspends a silent server, expires it after SESSION_GRACE_S, settles its candidates,
 *   and forgets a server silent (or that never heartbeats) unheard of for SERVER_RETENTION_S that
 *   holds no sessions and has no notices pending.
 * Every change of status bumps the server's seq and is told to its streams and viewer shard by
 * notices (src/server/notices.ts).
 */
import { serverRetentionMs, serverTimeoutMs, sessionGraceMs } from "../config";
import type { Env } from "../env";
import { HOOK_DEADLINE_MS, UNDO_WAIT_MS } from "../platform/retry";
import type { KickOutbox } from "../srs/kick-outbox";
import type { NoticeOutbox } from "./notices";
import type { Epoch, ProcessStatus } from "./process-status";
import type { ServerRow } from "./server-row";

/**
 * Heartbeats move a server's epoch; a start hook moves it only when the
 * current process cannot speak for itself (no heartbeats, or silent);
 * stop and close events never do.
 */
export type MessageKind = "heartbeat" | "start" | "stop";

/** Retired service_ids kept per server (a server restarting daily keeps two months of them). */
const RETIRED_KEPT = 64;
/** last_seen is written at most this often per server (it only serves retention). */
const LAST_SEEN_GRAIN_MS = 60_000;
/** A retired process still heard from (two processes sharing a server_id) is logged at most this often. */
const DUPLICATE_LOG_EVERY_MS = 60_000;
/** Ended for good: sessions admitted up to any time. */
const FOREVER = Number.MAX_SAFE_INTEGER;

/** Heartbeats stopped for SERVER_TIMEOUT_S (a server that never sent one is never silent). */
export function isSilent(row: ServerRow, now: number, env: Env): boolean {
  return row.last_heartbeat !== null && now - row.last_heartbeat >= serverTimeoutMs(env);
}

/** The last heartbeat before the silence SESSION_GRACE_S ended (a return since has moved last_heartbeat on). */
function expiredLastAlive(row: ServerRow): number {
  // Expired by a version that did not keep it: the heartbeat itself, unless the server has returned since (then the cutoff).
  return row.expired_last_alive ?? Math.min(row.expired_at!, row.last_heartbeat ?? row.expired_at!);
}

/** Silent for SESSION_GRACE_S, and its sessions not yet ended for this silence. */
export function graceOver(row: ServerRow, now: number, env: Env): boolean {
  if (row.last_heartbeat === null || now < row.last_heartbeat + sessionGraceMs(env)) return false;
  return row.expired_at === null || row.expired_at < row.last_heartbeat;
}

/** What the epoch rules need of their registry shard. */
export interface EpochHost {
  /** The shard's settings, read at each use. */
  env(): Env;
  armAlarm(at: number): void;
}

/** The rules above, over the registry shard's tables servers, retired and candidates. */
export class ProcessEpochs {
  constructor(
    private sql: SqlStorage,
    /** The shard's servers by server_id: the registry's own map, whose rows these rules move. */
    private servers: Map<string, ServerRow>,
    private notices: NoticeOutbox,
    private kicks: KickOutbox,
    private host: EpochHost,
  ) {}

  private get env(): Env {
    return this.host.env();
  }

  /**
   * Every message from a server passes here first, synchronously (so no other
   * message interleaves), and says which process of the server it comes from:
   * the current one (a silent server is back: its sessions count again), a
   * retired one, a candidate, or a new current one: a heartbeat with a new
   * service_id (or a start hook on a server that never heartbeats) is a
   * restart, which retires the old process and tells its streams by notices.
   */
  acknowledgeEpoch(serverId: string, serviceId: string, kind: MessageKind): Epoch {
    const now = Date.now();
    const row = this.servers.get(serverId);
    if (!row) {
      if (kind === "stop") return "unknown";
      // The news of a server starts from the clock, not 0: a server forgotten (SERVER_RETENTION_S) and heard
      // from again must not number its news below what streams and shards applied before (they ignore older news).
      const fresh: ServerRow = {
        server_id: serverId, service_id: serviceId, device_id: "", ip: "", pid: "", api_override: null, api_ok: null,
        last_heartbeat: null, dead_since: null, expired_at: null, expired_last_alive: null, last_seen: now, seq: now,
      };
      this.servers.set(serverId, fresh);
      this.sql.exec(
        "INSERT INTO servers (server_id, service_id, device_id, ip, pid, last_seen, seq) VALUES (?, ?, '', '', '', ?, ?)",
        serverId, serviceId, now, now,
      );
      // Forgotten after SERVER_RETENTION_S if it never heartbeats and holds nothing.
      this.host.armAlarm(now + serverRetentionMs(this.env));
      return "current";
    }
    if (serviceId === row.service_id) {
      this.touch(row, now);
      if (row.dead_since !== null || isSilent(row, now, this.env)) {
        if (graceOver(row, now, this.env)) this.expire(row, now);
        this.resume(row, now);
      }
      return "current";
    }
    if (this.isRetired(serverId, serviceId)) {
      if (kind !== "stop") this.heardFromRetired(row, serviceId, now);
      return "retired";
    }
    if (kind === "stop") {
      // A stop or close event, or a hook that gates nothing, of a candidate: it is alive (and stays a candidate).
      this.candidateHeard(row, serviceId, now);
      return "unknown";
    }
    // On a server that heartbeats, only a heartbeat moves the epoch. A start hook from a process
    // never heard of may be a restart whose first heartbeat is on its way, a late hook of an older
    // process, or a forgery: it waits as a candidate until its own first heartbeat.
    if (kind === "start" && row.last_heartbeat !== null) {
      this.touch(row, now);
      if (!this.candidateHeard(row, serviceId, now)) {
        this.sql.exec("INSERT INTO candidates (server_id, service_id, since, heard_at) VALUES (?, ?, ?, ?)", serverId, serviceId, now, now);
      }
      this.host.armAlarm(now + serverTimeoutMs(this.env));
      return "candidate";
    }
    this.restart(row, serviceId, now);
    return "current";
  }

  /**
   * A new process is current from now on; the old one (and any other
   * candidate) is retired, and its streams are told by notices.
   */
  private restart(row: ServerRow, serviceId: string, now: number): void {
    const replaced = [row.service_id, ...this.candidatesOf(row.server_id).filter((c) => c !== serviceId)];
    // The old process was last known alive at the server's last heartbeat (unknown without heartbeats: now); a candidate at its last hook.
    const lastAlive = new Map(replaced.map((old) => [old, this.candidateLastAlive(row.server_id, old) ?? row.last_heartbeat ?? now]));
    // Sessions of the old process that SESSION_GRACE_S ended (before it was heard from again) keep that end, told with this one.
    const earlier = row.expired_at === null ? undefined : { cutoff: row.expired_at, lastAlive: expiredLastAlive(row) };
    const current = row.service_id;
    const wasQuiet = this.sql.exec("SELECT 1 FROM candidates WHERE server_id = ? AND service_id = ? AND quiet = 1", row.server_id, serviceId).toArray().length > 0;
    row.service_id = serviceId;
    row.seq++;
    row.expired_at = null;
    row.expired_last_alive = null;
    this.sql.exec("UPDATE servers SET service_id = ?, seq = ?, expired_at = NULL, expired_last_alive = NULL WHERE server_id = ?", serviceId, row.seq, row.server_id);
    this.sql.exec("DELETE FROM candidates WHERE server_id = ?", row.server_id);
    for (const old of replaced) {
      const before = old === current ? earlier : undefined;
      this.retire(row.server_id, old, now, lastAlive.get(old)!, before);
      this.notices.queue(row, old, "ended", FOREVER, true, `its server restarted as service ${serviceId}`, lastAlive.get(old)!, before);
    }
    this.touch(row, now);
    if (row.dead_since !== null || isSilent(row, now, this.env)) this.resume(row, now, "restarted");
    else if (wasQuiet) this.newStatus(row, serviceId, "live", "its server restarted: heard from again");
  }

  /**
   * A candidate that has not heartbeated although the current process did
   * for a whole SERVER_TIMEOUT_S since the candidate appeared was a late or
   * forged hook: retired, its sessions ended. While the current process is
   * silent, candidates wait (their sessions count): only their own heartbeat
   * makes one current, so neither a forger nor a late hook can take over a
   * server whose heartbeats are merely late. After SESSION_GRACE_S a
   * candidate is refused whatever happens.
   */
  settleCandidates(row: ServerRow, now: number): void {
    const timeout = serverTimeoutMs(this.env);
    for (const c of this.sql.exec<{ service_id: string; since: number; heard_at: number | null }>("SELECT service_id, since, heard_at FROM candidates WHERE server_id = ?", row.server_id).toArray()) {
      const currentProvedAlive = now >= c.since + timeout && row.dead_since === null && !isSilent(row, now, this.env);
      if (!currentProvedAlive && now < c.since + sessionGraceMs(this.env)) continue;
      this.sql.exec("DELETE FROM candidates WHERE server_id = ? AND service_id = ?", row.server_id, c.service_id);
      // Its sessions end at its last hook, the last moment it was known alive, not now.
      const lastAlive = c.heard_at ?? c.since;
      this.retire(row.server_id, c.service_id, now, lastAlive);
      this.notices.queue(row, c.service_id, "ended", FOREVER, true, `service ${c.service_id} never heartbeated while service ${row.service_id} did (a late or forged hook)`, lastAlive);
      console.log(JSON.stringify({ event: "candidate process refused", server: row.server_id, current: row.service_id, refused: c.service_id }));
    }
    this.quietenCandidates(row, now);
  }

  /**
   * A candidate that sent no hook for SERVER_TIMEOUT_S and never heartbeated
   * (a restart that crashed at once, or a forger gone quiet) is treated as a
   * silent server: its sessions are suspended (they neither count nor block)
   * until it speaks again or heartbeats, so it never holds a stream hostage
   * while the current process is silent too.
   */
  private quietenCandidates(row: ServerRow, now: number): void {
    const timeout = serverTimeoutMs(this.env);
    const quiet = this.sql
      .exec<{ service_id: string }>("SELECT service_id FROM candidates WHERE server_id = ? AND quiet = 0 AND COALESCE(heard_at, since) + ? <= ?", row.server_id, timeout, now)
      .toArray();
    for (const c of quiet) {
      this.sql.exec("UPDATE candidates SET quiet = 1 WHERE server_id = ? AND service_id = ?", row.server_id, c.service_id);
      this.newStatus(row, c.service_id, "suspended", `a new process of its server: no heartbeat yet, and no hook for ${timeout / 1000} s`);
    }
  }

  /** A hook of a candidate: it is alive, and a quiet one's sessions count again. False: not a candidate. */
  private candidateHeard(row: ServerRow, serviceId: string, now: number): boolean {
    const known = this.sql.exec<{ quiet: number }>("SELECT quiet FROM candidates WHERE server_id = ? AND service_id = ?", row.server_id, serviceId).toArray()[0];
    if (!known) return false;
    this.sql.exec("UPDATE candidates SET heard_at = ?, quiet = 0 WHERE server_id = ? AND service_id = ?", now, row.server_id, serviceId);
    if (known.quiet === 1) this.newStatus(row, serviceId, "live", "a new process of its server, heard from again");
    return true;
  }

  /** When a candidate was last heard from (its sessions end there if it is refused or replaced). */
  private candidateLastAlive(serverId: string, serviceId: string): number | null {
    return this.sql.exec<{ at: number }>("SELECT COALESCE(heard_at, since) AS at FROM candidates WHERE server_id = ? AND service_id = ?", serverId, serviceId).toArray()[0]?.at ?? null;
  }

  /** A change of one process's status, told to its streams. */
  private newStatus(row: ServerRow, serviceId: string, status: "live" | "suspended", why: string): void {
    row.seq++;
    this.sql.exec("UPDATE servers SET seq = ? WHERE server_id = ?", row.seq, row.server_id);
    this.notices.queue(row, serviceId, status, 0, false, why);
  }

  /**
   * A retired service_id never becomes current again, however long it was
   * silent (a duplicate SRS with the same server_id may be down for a week):
   * each server keeps its last RETIRED_KEPT, until the server itself is
   * forgotten (SERVER_RETENTION_S).
   */
  private retire(serverId: string, serviceId: string, now: number, lastAlive: number, earlier?: ProcessStatus["earlier"]): void {
    this.sql.exec(
      "INSERT OR REPLACE INTO retired (server_id, service_id, retired_at, last_alive, early_cutoff, early_last_alive) VALUES (?, ?, ?, ?, ?, ?)",
      serverId, serviceId, now, lastAlive, earlier?.cutoff ?? 0, earlier?.lastAlive ?? 0,
    );
    this.sql.exec(
      "DELETE FROM retired WHERE server_id = ? AND service_id NOT IN (SELECT service_id FROM retired WHERE server_id = ? ORDER BY retired_at DESC LIMIT ?)",
      serverId, serverId, RETIRED_KEPT,
    );
  }

  candidatesOf(serverId: string): string[] {
    return this.sql.exec<{ service_id: string }>("SELECT service_id FROM candidates WHERE server_id = ?", serverId).toArray().map((r) => r.service_id);
  }

  /** Where one process stands now (see ProcessStatus). */
  statusOf(row: ServerRow, serviceId: string, now: number): ProcessStatus {
    if (serviceId !== row.service_id && this.candidatesOf(row.server_id).includes(serviceId)) {
      this.quietenCandidates(row, now);
      const quiet = this.sql.exec("SELECT 1 FROM candidates WHERE server_id = ? AND service_id = ? AND quiet = 1", row.server_id, serviceId).toArray().length > 0;
      const why = quiet ? "a new process of its server, silent and never confirmed by a heartbeat" : "a new process of its server, not yet confirmed by a heartbeat";
      return { serverId: row.server_id, serviceId, seq: row.seq, status: quiet ? "suspended" : "live", cutoff: 0, replaced: false, why };
    }
    if (serviceId !== row.service_id) {
      // Its sessions end at its last heartbeat, as the restart's notice says (a stream may ask before that notice reaches it).
      const retired = this.sql
        .exec<{ last_alive: number; early_cutoff: number; early_last_alive: number }>(
          "SELECT last_alive, early_cutoff, early_last_alive FROM retired WHERE server_id = ? AND service_id = ?", row.server_id, serviceId,
        )
        .toArray()[0];
      return {
        serverId: row.server_id,
        serviceId,
        seq: row.seq,
        status: "ended",
        cutoff: FOREVER,
        replaced: true,
        lastAlive: retired?.last_alive ?? 0,
        ...(retired?.early_cutoff ? { earlier: { cutoff: retired.early_cutoff, lastAlive: retired.early_last_alive } } : {}),
        why: "its server restarted",
      };
    }
    const silent = row.dead_since !== null || isSilent(row, now, this.env);
    if (silent && row.dead_since === null) this.suspend(row, now, `no heartbeat for ${serverTimeoutMs(this.env) / 1000} s`);
    if (silent && graceOver(row, now, this.env)) this.expire(row, now);
    return {
      serverId: row.server_id,
      serviceId,
      seq: row.seq,
      status: silent ? "suspended" : "live",
      cutoff: row.expired_at ?? 0,
      lastAlive: row.expired_at === null ? 0 : expiredLastAlive(row),
      replaced: false,
      why: silent ? "its server is silent" : "its server is alive",
    };
  }

  /** The server went silent: its current process's sessions are suspended everywhere. */
  suspend(row: ServerRow, now: number, why: string): void {
    row.dead_since = now;
    row.seq++;
    this.sql.exec("UPDATE servers SET dead_since = ?, seq = ? WHERE server_id = ?", now, row.seq, row.server_id);
    this.notices.queue(row, row.service_id, "suspended", 0, false, why);
    console.log(JSON.stringify({ event: "server silent", server: row.server_id, service: row.service_id, why }));
  }

  /** The same process is heard from again: what it held counts and blocks again. */
  private resume(row: ServerRow, now: number, how: "back" | "restarted" = "back"): void {
    row.dead_since = null;
    row.last_heartbeat = row.last_heartbeat === null ? null : now;
    row.seq++;
    this.sql.exec("UPDATE servers SET dead_since = NULL, last_heartbeat = ?, seq = ? WHERE server_id = ?", row.last_heartbeat, row.seq, row.server_id);
    this.notices.queue(row, row.service_id, "live", 0, false, "its server is heard from again");
    if (row.last_heartbeat !== null) this.host.armAlarm(now + serverTimeoutMs(this.env));
    // Kicks waiting for it (a viewer's session ended for a newer one while it was silent) go now.
    if (this.kicks.serverBack(row.server_id)) this.host.armAlarm(now);
    console.log(JSON.stringify({ event: how === "back" ? "server back" : "server restarted after a silence", server: row.server_id, service: row.service_id }));
  }

  /** SESSION_GRACE_S of silence: the process's sessions so far end for good. */
  expire(row: ServerRow, now: number): void {
    // Sessions up to the moment the server went silent end, and those whose hook arrived before it and
    // whose decision took a moment (a stream or shard stamps a session when it admits it, up to a hook's
    // deadline and its undo later): a session admitted since then is a new one of a returning process
    // (whose hook may reach its stream before this does; a return resumes the server, so it comes later).
    row.expired_at = Math.min(now, row.last_heartbeat! + serverTimeoutMs(this.env) + HOOK_DEADLINE_MS + UNDO_WAIT_MS);
    row.expired_last_alive = row.last_heartbeat!;
    row.seq++;
    this.sql.exec("UPDATE servers SET expired_at = ?, expired_last_alive = ?, seq = ? WHERE server_id = ?", row.expired_at, row.expired_last_alive, row.seq, row.server_id);
    this.notices.queue(row, row.service_id, "suspended", row.expired_at, false, `its server sent no heartbeat for ${sessionGraceMs(this.env) / 1000} s (SESSION_GRACE_S)`, row.last_heartbeat!);
  }

  /** A retired process that still speaks long after its replacement is a second SRS with the same server_id. */
  private heardFromRetired(row: ServerRow, serviceId: string, now: number): void {
    const r = this.sql
      .exec<{ retired_at: number; heard_at: number | null }>("SELECT retired_at, heard_at FROM retired WHERE server_id = ? AND service_id = ?", row.server_id, serviceId)
      .one();
    if (now - r.retired_at < serverTimeoutMs(this.env)) return; // a message still in flight at the restart
    if (r.heard_at === null || now - r.heard_at >= DUPLICATE_LOG_EVERY_MS) {
      this.sql.exec("UPDATE retired SET heard_at = ? WHERE server_id = ? AND service_id = ?", now, row.server_id, serviceId);
      console.log(JSON.stringify({
        event: "duplicate server_id",
        server: row.server_id,
        current: row.service_id,
        duplicate: serviceId,
        advice: "two SRS processes report this server_id: give each its own (SRS server_id setting)",
      }));
    }
  }

  /** A server silent (or that never heartbeats), unheard of for SERVER_RETENTION_S and holding nothing, is forgotten. */
  forgetIfIdle(row: ServerRow, now: number, retention: number): void {
    if (row.dead_since === null && row.last_heartbeat !== null) return;
    if (now < row.last_seen + retention) return;
    const held = this.sql.exec("SELECT 1 FROM client_streams WHERE server_id = ? LIMIT 1", row.server_id).toArray().length;
    if (held || this.notices.pendingFor(row.server_id)) return;
    this.servers.delete(row.server_id);
    this.sql.exec("DELETE FROM servers WHERE server_id = ?", row.server_id);
    this.sql.exec("DELETE FROM retired WHERE server_id = ?", row.server_id);
    this.sql.exec("DELETE FROM candidates WHERE server_id = ?", row.server_id);
  }

  /** The server is heard from: last_seen moves on (for retention only, so at most every LAST_SEEN_GRAIN_MS). */
  private touch(row: ServerRow, now: number): void {
    if (now - row.last_seen < LAST_SEEN_GRAIN_MS) return;
    row.last_seen = now;
    this.sql.exec("UPDATE servers SET last_seen = ? WHERE server_id = ?", now, row.server_id);
  }

  /** A process a restart replaced (or a candidate refused). */
  isRetired(serverId: string, serviceId: string): boolean {
    return this.sql.exec("SELECT 1 FROM retired WHERE server_id = ? AND service_id = ?", serverId, serviceId).toArray().length > 0;
  }

  /**
   * The server's processes known to be earlier than `serviceId`'s: for the current one, those retired; for a
   * candidate (its first heartbeat on its way), the current one too; for a retired one, those retired before it.
   * An API answer from one of them is the old process still answering at the address, not a sign the session's is gone.
   */
  earlierThan(row: ServerRow, serviceId: string): string[] {
    const retired = (before: number) =>
      this.sql.exec<{ service_id: string }>("SELECT service_id FROM retired WHERE server_id = ? AND retired_at < ?", row.server_id, before).toArray().map((r) => r.service_id);
    if (serviceId === row.service_id) return retired(Number.MAX_SAFE_INTEGER);
    const at = this.sql.exec<{ retired_at: number }>("SELECT retired_at FROM retired WHERE server_id = ? AND service_id = ?", row.server_id, serviceId).toArray()[0];
    if (at) return retired(at.retired_at);
    if (this.candidatesOf(row.server_id).includes(serviceId)) return [row.service_id, ...retired(Number.MAX_SAFE_INTEGER)];
    return [];
  }
}
