import type { StreamObject } from "./stream/object";
import type { ServerRegistry } from "./server/registry";

/** Bindings from wrangler.toml plus the secrets set with `wrangler secret put`. */
export interface Env {
  CATALOGUE: KVNamespace;
  STREAM: DurableObjectNamespace<StreamObject>;
  REGISTRY: DurableObjectNamespace<ServerRegistry>;
  HOOK_SECRET?: string;
  /** The hook secret being rotated out: accepted too while it is set. */
  HOOK_SECRET_PREVIOUS?: string;
  ADMIN_TOKEN?: string;
  /** HMAC key of play tokens; unset: streams with playAuth "token" refuse every viewer. */
  TOKEN_SIGNING_KEY?: string;
  /** The key being rotated out: its tokens stay valid while it is set. */
  TOKEN_SIGNING_KEY_PREVIOUS?: string;
  /** Heartbeat silence, in seconds, after which a server is dead (default 30). */
  SERVER_TIMEOUT_S?: string;
  /** Seconds a silent server's sessions stay suspended before they end for good (default 86400). */
  SESSION_GRACE_S?: string;
  /** Seconds after which a silent server without sessions is forgotten (default 604800). */
  SERVER_RETENTION_S?: string;
  /** Failed key or token guesses per client ip per stream per minute before "rate limited" (default 10). */
  AUTH_FAILURES_PER_MINUTE?: string;
  /** Play tokens expiring further ahead than this many seconds are refused (default 2592000, 30 days). */
  MAX_TOKEN_TTL_S?: string;
}
