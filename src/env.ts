import type { StreamObject } from "./stream/object";
import type { ServerObject } from "./server/object";

/** Bindings from wrangler.toml plus the secrets set with `wrangler secret put`. */
export interface Env {
  CATALOGUE: KVNamespace;
  STREAM: DurableObjectNamespace<StreamObject>;
  SERVER: DurableObjectNamespace<ServerObject>;
  HOOK_SECRET?: string;
  ADMIN_TOKEN?: string;
  /** Heartbeat silence, in seconds, after which a server is dead (default 30). */
  SERVER_TIMEOUT_S?: string;
}
