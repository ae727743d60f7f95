/**
 * The Worker's bindings, as `wrangler types` generates them from wrangler.toml into
 * worker-configuration.d.ts (`npm run cf-typegen`; `npm test` fails when that file is out of date):
 * the KV catalogue, the five Durable Object namespaces typed with their classes, the two event
 * queues, and the [vars].
 *
 * Secrets are not in wrangler.toml. The generated file types the four in .dev.vars.example as
 * plain strings; here they become optional, because a deployed Worker
 * can lack them and every reader must then fail closed. The `_PREVIOUS` ones exist only during
 * a rotation, so only this file declares them.
 */
type Generated = Cloudflare.Env;
type Secret = "HOOK_SECRET" | "ADMIN_TOKEN" | "TOKEN_SIGNING_KEY" | "EVENTS_WEBHOOK_SECRET";

export interface Env extends Omit<Generated, Secret> {
  /** Path segment of every hook URL. */
  HOOK_SECRET?: string;
  /** The hook secret being rotated out: accepted too while it is set. */
  HOOK_SECRET_PREVIOUS?: string;
  /** Bearer token of the admin API. */
  ADMIN_TOKEN?: string;
  /** HMAC key of play tokens; unset: no token is minted, and unless the _PREVIOUS key is set, streams with playAuth "token" refuse every viewer. */
  TOKEN_SIGNING_KEY?: string;
  /** The key being rotated out: its tokens stay valid while it is set. */
  TOKEN_SIGNING_KEY_PREVIOUS?: string;
  /**
   * Template of each SRS server's HTTP API base URL, with {device_id} and {server_id} from its
   * heartbeat ("https://{device_id}.edges.example.com:1985"). Unset: the SRS API is never called.
   */
  SRS_API_URL?: string;
  /** Basic auth for SRS's http_api { auth { … } }, when it is enabled. */
  SRS_API_USERNAME?: string;
  SRS_API_PASSWORD?: string;
  /** Where events are POSTed (src/events/); unset: no events are produced. */
  EVENTS_WEBHOOK_URL?: string;
  /**
   * Standard Webhooks signing secret: "whsec_" + base64 of a key of at least 24 bytes, or any other
   * string of at least 32 characters (its UTF-8 bytes are the key); src/events/sign.ts signingKey().
   */
  EVENTS_WEBHOOK_SECRET?: string;
  /** The events' secret being rotated out: deliveries carry a signature by it too while it is set. */
  EVENTS_WEBHOOK_SECRET_PREVIOUS?: string;
  /** "1": objects count the calls they receive, for `npm run bench` (GET /admin/load). Never set in production. */
  LOAD_COUNTERS?: string;
}
