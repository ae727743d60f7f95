/**
 * What the admin API shows of a stream's audience: the sum over its viewer
 * shards, asked now (the stream's own figures are the shards' last reports).
 */
import type { Env } from "../env";
import { viewerShard } from "../object-access";
import { audienceOf, type StreamEvent, type StreamState } from "../stream/object";
import { EVENTS_KEPT, GUESSES_KEPT } from "../stream/decision-log";

/**
 * The state with viewers, suspended viewers and unused leased slots summed over the shards as they stand.
 * A shard that cannot be asked counts with its last report, and is named in `unreachable` (its figures may be old).
 */
export async function withAudience(env: Env, streamKey: string, state: StreamState): Promise<StreamState & { unreachable?: string[] }> {
  if (state.shards.length === 0) return state;
  const unreachable: string[] = [];
  const shards = await Promise.all(
    state.shards.map(async (reported) => {
      try {
        return await viewerShard(env, reported.serverId).audience(streamKey);
      } catch (err) {
        console.error(JSON.stringify({ error: "viewer shard unreachable", server: reported.serverId, stream: streamKey, detail: String(err) }));
        unreachable.push(reported.serverId);
        return reported;
      }
    }),
  );
  return { ...state, ...audienceOf(shards.filter((s) => s.viewers + s.suspendedViewers + s.leased > 0)), ...(unreachable.length > 0 ? { unreachable: unreachable.sort() } : {}) };
}

/**
 * Viewer shards one GET /admin/streams asks at most, over all the streams it lists. Each call is a
 * subrequest of the listing (Workers Paid allows 10,000 per request, and a page of 100 streams on 500
 * edges each would take 50,000), and the console asks for its page every 3 s: what a listing costs the
 * shards must not grow with the fleet. 1,000 asks a full page of streams with 10 edges each.
 */
export const LIST_SHARD_CALLS_MAX = 1_000;

/**
 * The listed streams with their audiences, asked of their shards (withAudience) while the listing's
 * LIST_SHARD_CALLS_MAX calls last: streams without maxViewers first (their shards tell the stream nothing
 * of their viewers but when they read its policy or leave), then the others in the list's order (their
 * shards report their viewers with every lease message and, when they changed, every 5 minutes). A
 * stream whose shards no longer fit in what is left (a later one may still fit) is listed as its object
 * knows it, each shard's figures as last reported, with `audienceAsReported: true`.
 */
export async function listedAudiences(env: Env, listed: { key: string; state: StreamState }[], budget = LIST_SHARD_CALLS_MAX): Promise<(StreamState & { unreachable?: string[]; audienceAsReported?: true })[]> {
  const order = listed.map((_, i) => i).sort((a, b) => Number(listed[a].state.maxViewers !== null) - Number(listed[b].state.maxViewers !== null) || a - b);
  const asked = new Set<number>();
  let left = budget;
  for (const i of order) {
    const calls = listed[i].state.shards.length;
    if (calls > left) continue;
    asked.add(i);
    left -= calls;
  }
  return Promise.all(listed.map(({ key, state }, i) => (asked.has(i) ? withAudience(env, key, state) : { ...state, audienceAsReported: true as const })));
}

/**
 * The stream's decision log and its shards' (viewer decisions), newest first; `unreachable` names the
 * shards that could not be asked (their lines are missing), as the other audience views do.
 */
export async function allEvents(env: Env, streamKey: string, sources: string[], own: StreamEvent[], since = ""): Promise<{ events: StreamEvent[]; unreachable: string[] }> {
  const unreachable: string[] = [];
  const fromShards = await Promise.all(
    sources.map((serverId) =>
      viewerShard(env, serverId).events(streamKey).catch((err) => {
        console.error(JSON.stringify({ error: "viewer shard unreachable", server: serverId, stream: streamKey, detail: String(err) }));
        unreachable.push(serverId);
        return [] as StreamEvent[];
      }),
    ),
  );
  // A stream deleted and created again starts its log anew (its object's lines went): its shards' lines of before go too.
  const events = [...own, ...fromShards.flat().filter((e) => e.at >= since)]
    .map((e, i) => ({ e, i }))
    .sort((a, b) => (a.e.at === b.e.at ? a.i - b.i : a.e.at < b.e.at ? 1 : -1))
    .slice(0, EVENTS_KEPT + GUESSES_KEPT)
    .map(({ e }) => e);
  return { events, unreachable: unreachable.sort() };
}
