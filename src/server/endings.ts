import type { ProcessStatus } from "./registry";

/** The ends one piece of news brings, oldest first: when each one's sessions end, and why (stream.ended's reason). */
export function endingsOf(news: ProcessStatus): { cutoff: number; lastAlive: number; reason: "restart" | "timeout"; why: string }[] {
  if (news.cutoff <= 0) return [];
  // An answer to a question says how the process stands ("its server is alive"), not why its sessions end.
  const why = news.replaced || news.why.includes("SESSION_GRACE_S") ? news.why : "its server sent no heartbeat for SESSION_GRACE_S";
  const last = { cutoff: news.cutoff, lastAlive: news.lastAlive ?? 0, reason: news.replaced ? ("restart" as const) : ("timeout" as const), why };
  if (!news.earlier || news.earlier.cutoff <= 0 || news.earlier.cutoff >= news.cutoff) return [last];
  return [{ ...news.earlier, reason: "timeout", why: "its server sent no heartbeat for SESSION_GRACE_S (before it was heard from again)" }, last];
}
