import { StatusError, type IRequest } from "itty-router";
import type { Env } from "../env";
import { isObject, jsonResponse, readJson } from "../http";
import { LIMITS, within } from "../limits";
import { serverRegistry } from "../object-access";
import { checkApiBase } from "../srs/api";
import { withViewerSessions } from "./routes";

/** The longest SRS API base URL accepted. */
const MAX_API_URL = 512;

/**
 * PUT /admin/servers/{server_id} {"api": "<base url>" | null}: where this
 * server's SRS HTTP API is, instead of SRS_API_URL filled in with its ids
 * (null: back to the template). The server must have been heard from.
 */
export async function putServer(request: IRequest, env: Env): Promise<Response> {
  const serverId = serverIdFrom(request);
  const body = await readJson(request);
  if (!isObject(body)) throw new StatusError(400, "body must be a JSON object");
  for (const field of Object.keys(body)) if (field !== "api") throw new StatusError(400, `unknown field "${field}" (allowed: api)`);
  if (!("api" in body)) throw new StatusError(400, 'field "api" is required: a base URL, or null to use SRS_API_URL');
  let base: string | null = null;
  if (body.api !== null) {
    if (typeof body.api !== "string" || body.api.length > MAX_API_URL) throw new StatusError(400, `field "api" must be a URL of at most ${MAX_API_URL} characters, or null`);
    const checked = checkApiBase(body.api, env.SRS_API_URL);
    if ("problem" in checked) throw new StatusError(400, `field "api" ${checked.problem}`);
    base = checked.base;
  }
  const state = await serverRegistry(env, serverId).setApi(serverId, base);
  if (!state) throw new StatusError(404, `server ${serverId} is not known`);
  // As GET /admin/servers shows it: its viewers counted too.
  return jsonResponse((await withViewerSessions(env, [state]))[0]);
}

/** The {server_id} of an admin path, decoded and checked. */
export function serverIdFrom(request: IRequest): string {
  let raw: string;
  try {
    raw = decodeURIComponent(request.params.server_id);
  } catch {
    throw new StatusError(400, `malformed percent-encoding in "${request.params.server_id}"`);
  }
  return within("server_id", raw, LIMITS.id);
}
