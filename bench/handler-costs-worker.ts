// The Worker-side steps of a hook that the one-write floor (bench/shard-floor.js) does not take,
// one step per path, for bench/handler-costs.mjs. Every path reads the hook body and answers
// {"code":0}; "floor-read" reads it as the floor does (request.json()), each other path adds or
// replaces one step with streamgate's own code.
import { secretsMatch } from "../src/auth/secrets";
import { readJson } from "../src/http";

const SECRET = "bench-hook-secret-32-chars-or-more";

export default {
  async fetch(request: Request): Promise<Response> {
    const step = new URL(request.url).pathname.slice(1);
    // streamgate reads at most 64 KiB, whatever the content-length says (src/http.ts).
    const body = (step === "bounded-read" ? await readJson(request) : await request.json()) as Record<string, unknown>;
    // streamgate compares the path secret with HOOK_SECRET through SHA-256 digests (src/auth/secrets.ts).
    if (step === "secret-check" && !(await secretsMatch(SECRET, SECRET))) return new Response("wrong secret", { status: 404 });
    // streamgate logs one JSON line per decision (src/srs/routes.ts).
    if (step === "decision-line") {
      console.log(JSON.stringify({ action: body.action, stream: `${body.vhost}/${body.app}/${body.stream}`, server: body.server_id, client: body.client_id, ip: body.ip, decision: "allow", ms: 0 }));
    }
    return new Response('{"code":0}', { headers: { "content-type": "application/json" } });
  },
};
