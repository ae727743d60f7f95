/**
 * How the Worker and the objects reach each Durable Object: by the name it
 * owns. A stream's object is named by its stream; a server's registry shard by
 * a hash of its server_id. Each call returns a fresh stub (a stub that threw
 * is not reused: src/platform/retry.ts).
 */
import type { Env } from "./env";
import { shardOf } from "./server/registry";
import { seatBucket } from "./viewers/lease";

/** The object that owns one stream (named "vhost/app/stream"). */
export function streamObject(env: Env, streamKey: string) {
  return env.STREAM.get(env.STREAM.idFromName(streamKey));
}

/** The registry shard that owns one SRS server (by its server_id). */
export function serverRegistry(env: Env, serverId: string) {
  return registryShard(env, shardOf(serverId));
}

/** The viewer shard of one SRS server (by its server_id): where that server's viewers are admitted. */
export function viewerShard(env: Env, serverId: string) {
  return env.VIEWERS.get(env.VIEWERS.idFromName(serverId));
}

export function registryShard(env: Env, shard: number) {
  return env.REGISTRY.get(env.REGISTRY.idFromName(`shard-${shard}`));
}

/** The seat object of one viewer id on one stream (src/viewers/seats.ts). */
export function viewerSeats(env: Env, streamKey: string, sub: string) {
  return seatsBucket(env, streamKey, seatBucket(sub));
}

export function seatsBucket(env: Env, streamKey: string, bucket: number) {
  return env.SEATS.get(env.SEATS.idFromName(`${streamKey}#${bucket}`));
}
