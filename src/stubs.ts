import type { Env } from "./env";

/** The object that owns one stream (named "vhost/app/stream"). */
export function streamObject(env: Env, streamKey: string) {
  return env.STREAM.get(env.STREAM.idFromName(streamKey));
}

/** The object that owns one SRS server (named by its server_id). */
export function serverObject(env: Env, serverId: string) {
  return env.SERVER.get(env.SERVER.idFromName(serverId));
}
