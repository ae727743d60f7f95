/** A stream is identified by vhost/app/stream, as SRS names it. */
export interface StreamName {
  vhost: string;
  app: string;
  stream: string;
}

export const DEFAULT_VHOST = "__defaultVhost__";

/** The Durable Object name of a stream, and its catalogue key in KV. */
export function streamKey(name: StreamName): string {
  return `${name.vhost}/${name.app}/${name.stream}`;
}

export function parseStreamKey(key: string): StreamName {
  const [vhost, app, ...rest] = key.split("/");
  return { vhost, app, stream: rest.join("/") };
}
