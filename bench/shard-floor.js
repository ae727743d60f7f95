// The one-write floor: the least a Worker can do for a viewer hook if it keeps any durable state.
// Every hook is parsed, routed to a Durable Object named by the body's server_id (as streamgate's
// viewer shards are, one per SRS server), and that object writes one SQLite row: on_play inserts
// the session (client_id, stream), on_stop deletes it, anything else inserts one row. Answers
// {"code":0} like streamgate's allow. bench/run.mjs serves it next to streamgate and the trivial
// floor (bench/floor.js) and gives it the same requests in the same rounds as the viewer churn.
import { DurableObject } from "cloudflare:workers";

export class Shard extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec("CREATE TABLE IF NOT EXISTS session (client_id TEXT PRIMARY KEY, stream TEXT NOT NULL) WITHOUT ROWID");
  }
  play(client, stream) {
    this.sql.exec("INSERT OR REPLACE INTO session (client_id, stream) VALUES (?, ?)", client, stream);
    return true;
  }
  stop(client) {
    this.sql.exec("DELETE FROM session WHERE client_id = ?", client);
    return true;
  }
}

const ALLOW = '{"code":0}';

export default {
  async fetch(request, env) {
    const body = await request.json();
    const shard = env.SHARD.get(env.SHARD.idFromName(String(body.server_id ?? body.server ?? "")));
    const client = String(body.client_id ?? body.server ?? "");
    if (body.action === "on_stop") await shard.stop(client);
    else await shard.play(client, `${body.app}/${body.stream}`);
    return new Response(ALLOW, { headers: { "content-type": "application/json" } });
  },
};
