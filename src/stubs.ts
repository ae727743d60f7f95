import type { Env } from "./env";
import { shardOf } from "./server/registry";

/** The object that owns one stream (named "vhost/app/stream"). */
export function streamObject(env: Env, streamKey: string) {
  return env.STREAM.get(env.STREAM.idFromName(streamKey));
}

/** The registry shard that owns one SRS server (by its server_id). */
export function serverRegistry(env: Env, serverId: string) {
  return registryShard(env, shardOf(serverId));
}

export function registryShard(env: Env, shard: number) {
  return env.REGISTRY.get(env.REGISTRY.idFromName(`shard-${shard}`));
}
