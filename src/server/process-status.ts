/**
 * What the registry tells the streams and viewer shards about an SRS process (a server_id and one of
 * its service_ids), and what they answer: where a message's process stands (Epoch), its status as a
 * notice or an answer to liveness() carries it (ProcessStatus), and a holder's answer to a notice
 * (NoticeAnswer). The rules that decide them are in src/server/epochs.ts.
 */

/**
 * Where a message's service_id stands: the running process; a candidate (a
 * start hook from a process never heard of while the current one still
 * heartbeats: a restart whose first heartbeat is on its way, or a late or
 * forged hook); one a restart replaced; or (stop events only) one never heard
 * of, which changes nothing.
 */
export type Epoch = "current" | "candidate" | "retired" | "unknown";

/**
 * What a stream object or viewer shard answers to a notice: the sessions it
 * ended, and on how many streams a viewer shard still holds viewers of the
 * process after a cutoff (admitted since: the process came back before the
 * notice). The shard's one index entry stands for those, so it is kept and
 * the process's next silence reaches them too. A stream's entries are one
 * per session: it answers the publishers of the process it still holds
 * after the cutoff (`keptClients`), whose entries stay. (The stream stamps a
 * session when it admits it, the registry its entry when the hook arrives:
 * a decision that took a moment straddles a cutoff on one side only.)
 */
export interface NoticeAnswer {
  ended: number;
  kept: number;
  keptClients?: string[];
}

/**
 * What a stream is told about one SRS process (server_id + service_id):
 * - live: its sessions count and block;
 * - suspended: its server is silent; its sessions neither count nor block, but are kept;
 * - ended: a restart replaced the process; its sessions are over for good.
 * `cutoff` (0: none): sessions admitted up to then are over for good (a
 * restart, or SESSION_GRACE_S of silence); whatever the status, it applies.
 * `seq` orders changes of status about one server: a stream ignores one older
 * than what it knows.
 */
export interface ProcessStatus {
  serverId: string;
  serviceId: string;
  status: "live" | "suspended" | "ended";
  seq: number;
  cutoff: number;
  /** ended by a restart: later start hooks of the process are refused. */
  replaced: boolean;
  why: string;
  /**
   * With a cutoff: the last moment the process was known alive (its server's last heartbeat
   * before the restart or the silence); its sessions' usage ends there. 0: unknown (now).
   */
  lastAlive?: number;
  /**
   * Sessions an earlier end ended first (SESSION_GRACE_S, before this restart or a later grace, when the
   * stream or shard has not applied it yet): those admitted up to its cutoff end at its lastAlive, with
   * reason timeout; only the rest end at `lastAlive`. See endingsOf.
   */
  earlier?: { cutoff: number; lastAlive: number };
  /** In answers to questions (not in notices): the server's SRS API base URL, if it has one. */
  api?: string | null;
}

export interface ProcessId {
  serverId: string;
  serviceId: string;
}
