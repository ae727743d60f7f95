// A Durable Object doing as little as a hook can: nothing, or one SQLite row write (bench/platform-floor.mjs).
import { DurableObject } from "cloudflare:workers";
export class A extends DurableObject {
  constructor(ctx, env) { super(ctx, env); this.sql = ctx.storage.sql; this.sql.exec("CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v INTEGER) WITHOUT ROWID"); }
  noop(k) { return true; }
  ins(k) { this.sql.exec("INSERT OR REPLACE INTO t (k, v) VALUES (?, ?)", k, Date.now()); return true; }
}
const ALLOW = '{"code":0}';
export default {
  async fetch(req, env) {
    const mode = new URL(req.url).pathname.slice(1);
    const body = await req.json();
    const k = body.client_id ?? body.server ?? "x";
    const s = body.stream ?? "s";
    if (mode === "parse") {}
    else if (mode === "do0") await env.A.get(env.A.idFromName(s)).noop(k);
    else if (mode === "do1") await env.A.get(env.A.idFromName(s)).ins(k);
    else if (mode === "do2") await Promise.all([env.A.get(env.A.idFromName(s)).ins(k), env.A.get(env.A.idFromName("srv" + (body.server_id ?? ""))).ins(k)]);
    else if (mode === "do2noop") await Promise.all([env.A.get(env.A.idFromName(s)).noop(k), env.A.get(env.A.idFromName("srv" + (body.server_id ?? ""))).noop(k)]);
    return new Response(ALLOW, { headers: { "content-type": "application/json" } });
  },
};
