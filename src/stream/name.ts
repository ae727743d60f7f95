import { StatusError } from "itty-router";

/** A stream is identified by vhost/app/stream, as SRS names it. */
export interface StreamName {
  vhost: string;
  app: string;
  stream: string;
}

export const DEFAULT_VHOST = "__defaultVhost__";

/** SRS's HLS hooks name the stream with its playlist's suffix ("cam1.m3u8"); every other protocol says "cam1". */
export const HLS_SUFFIX = ".m3u8";

/** The stream an SRS hook's `stream` names: without HLS's suffix. */
export function withoutHlsSuffix(stream: string): string {
  return stream.endsWith(HLS_SUFFIX) ? stream.slice(0, -HLS_SUFFIX.length) : stream;
}

/** The stream catalogue in KV (it lets the admin API list streams; the stream's object stays the authority): keys are this, then the stream key. */
export const CATALOGUE_PREFIX = "stream:";

/**
 * One page of the catalogue. KV's cursors are opaque: one that has the characters of a cursor but
 * that KV refuses (edited, from another list, or expired) is the caller's mistake, a 400 that says
 * so, not a 500; a list without a cursor that fails is the catalogue's, a 503 to try again.
 */
export async function cataloguePage(kv: KVNamespace, options: { prefix: string; limit: number; cursor?: string }): Promise<KVNamespaceListResult<unknown, string>> {
  try {
    return await kv.list({ prefix: CATALOGUE_PREFIX + options.prefix, limit: options.limit, cursor: options.cursor });
  } catch (err) {
    console.error(JSON.stringify({ error: "catalogue list failed", cursor: options.cursor !== undefined, detail: String(err) }));
    if (options.cursor !== undefined) {
      throw new StatusError(400, 'query parameter "cursor" was refused by the stream catalogue (KV): not a cursor this API gave, or too old; list again from the first page');
    }
    throw new StatusError(503, "stream catalogue (KV) unavailable: the streams could not be listed; try again");
  }
}

/**
 * The longest stream key ("vhost/app/stream"; its names are ASCII, a character is a byte): KV takes keys
 * of 512 bytes at most (https://developers.cloudflare.com/kv/platform/limits/), and the stream's catalogue
 * key is CATALOGUE_PREFIX and this. Names each within their own limit (src/limits.ts: 253, 128, 128
 * characters) can be too long together; such a stream can never be catalogued, so it cannot exist.
 */
export const STREAM_KEY_MAX = 512 - CATALOGUE_PREFIX.length;

/** The Durable Object name of a stream, and its catalogue key in KV (after CATALOGUE_PREFIX). */
export function streamKey(name: StreamName): string {
  return `${name.vhost}/${name.app}/${name.stream}`;
}

export function parseStreamKey(key: string): StreamName {
  const [vhost, app, ...rest] = key.split("/");
  return { vhost, app, stream: rest.join("/") };
}
