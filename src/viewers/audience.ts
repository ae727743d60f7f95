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
 * The stream's decision log and its shards' (viewer decisions), newest first; `unreachable` names the
 * shards that could not be asked (their lines are missing), as the other audience views do.
 */
export async function allEvents(env: Env, streamKey: string, sources: string[], own: StreamEvent[]): Promise<{ events: StreamEvent[]; unreachable: string[] }> {
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
  const events = [...own, ...fromShards.flat()]
    .map((e, i) => ({ e, i }))
    .sort((a, b) => (a.e.at === b.e.at ? a.i - b.i : a.e.at < b.e.at ? 1 : -1))
    .slice(0, EVENTS_KEPT + GUESSES_KEPT)
    .map(({ e }) => e);
  return { events, unreachable: unreachable.sort() };
}
