import type { ProcessStatus } from "./registry";

/** Why sessions end at SESSION_GRACE_S (a notice's `why`, or an answer's, tells how the process stands). */
const GRACE_WHY = "its server sent no heartbeat for SESSION_GRACE_S";

/** The ends one piece of news brings, oldest first: when each one's sessions end, and why (stream.ended's reason). */
export function endingsOf(news: ProcessStatus): { cutoff: number; lastAlive: number; reason: "restart" | "timeout"; why: string }[] {
  if (news.cutoff <= 0) return [];
  const last = news.replaced
    ? { cutoff: news.cutoff, lastAlive: news.lastAlive ?? 0, reason: "restart" as const, why: news.why }
    : { cutoff: news.cutoff, lastAlive: news.lastAlive ?? 0, reason: "timeout" as const, why: GRACE_WHY };
  if (!news.earlier || news.earlier.cutoff <= 0 || news.earlier.cutoff >= news.cutoff) return [last];
  return [{ ...news.earlier, reason: "timeout", why: GRACE_WHY }, last];
}
