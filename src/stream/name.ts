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

/** The Durable Object name of a stream, and its catalogue key in KV. */
export function streamKey(name: StreamName): string {
  return `${name.vhost}/${name.app}/${name.stream}`;
}

export function parseStreamKey(key: string): StreamName {
  const [vhost, app, ...rest] = key.split("/");
  return { vhost, app, stream: rest.join("/") };
}
