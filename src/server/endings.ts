import type { ProcessStatus } from "./registry";

/** The ends one piece of news brings, oldest first: when each one's sessions end, and why (stream.ended's reason). */
export function endingsOf(news: ProcessStatus): { cutoff: number; lastAlive: number; reason: "restart" | "timeout"; why: string }[] {
  if (news.cutoff <= 0) return [];
  const last = { cutoff: news.cutoff, lastAlive: news.lastAlive ?? 0, reason: news.replaced ? ("restart" as const) : ("timeout" as const), why: news.why };
  if (!news.earlier || news.earlier.cutoff <= 0 || news.earlier.cutoff >= news.cutoff) return [last];
  return [{ ...news.earlier, reason: "timeout", why: "its server sent no heartbeat for SESSION_GRACE_S (before it was heard from again)" }, last];
}
