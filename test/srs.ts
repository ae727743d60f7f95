/**
 * SRS-shaped bodies for tests, built from the bodies captured from real SRS 7
 * servers, copied into test/fixtures/ (from ../shared/srs/ of the workspace). Builders start from a captured body of the same
 * action and change only the ids and names a test is about.
 */
import capturedMain from "./fixtures/hooks-srs7.jsonl?raw";
import capturedMore from "./fixtures/hooks-srs7-more.jsonl?raw";
import { env, exports } from "cloudflare:workers";
import { createExecutionContext } from "cloudflare:test";
import type { Env } from "../src/env";
import worker from "../src/index";

export type SrsBody = Record<string, unknown>;

interface Capture {
  action: string;
  note: string;
  body: SrsBody;
}

/** Every captured body, with a note saying where it came from. */
export const captures: Capture[] = [
  ...lines(capturedMain).map((line) => {
    const body = JSON.parse(line.body) as SrsBody;
    const action = line.path.endsWith("/heartbeat") ? "heartbeat" : String(body.action);
    return { action, note: "hooks-srs7.jsonl (RTMP publish, RTMP and HTTP-FLV play)", body };
  }),
  ...lines(capturedMore).map((line) => ({ action: line.action, note: line.note, body: line.body as SrsBody })),
];

function lines(text: string): any[] {
  return text.split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
}

/** The first captured body of an action whose note matches, deep-copied. */
export function captured(action: string, note = ""): SrsBody {
  const hit = captures.find((c) => c.action === action && c.note.includes(note));
  if (!hit) throw new Error(`no captured ${action} body matching "${note}"`);
  return structuredClone(hit.body);
}

export interface Edge {
  server: string;
  service: string;
}

/** A new SRS server: server_id as SRS draws it ("vid-" + 7 chars), service_id 8 chars. */
export function newEdge(): Edge {
  const r = () => Math.random().toString(36).slice(2);
  return { server: `vid-${r().slice(0, 7)}`, service: r().slice(0, 8) };
}

export interface Who {
  server?: string;
  service?: string;
  client?: string;
}

function ids(who: Who): SrsBody {
  const out: SrsBody = {};
  if (who.server) out.server_id = who.server;
  if (who.service) out.service_id = who.service;
  if (who.client) out.client_id = who.client;
  return out;
}

/** A stream hook (on_publish, on_unpublish, on_play, on_stop) for app/stream, as RTMP sends it. */
export function streamHook(action: string, app: string, stream: string, who: Who = {}, param?: string): SrsBody {
  const body = captured(action);
  return {
    ...body,
    ...ids(who),
    app,
    stream,
    stream_url: `/${app}/${stream}`,
    tcUrl: `rtmp://127.0.0.1:19350/${app}`,
    ...(param === undefined ? {} : { param }),
  };
}

export const publish = (app: string, stream: string, key: string | null, who: Who = {}) =>
  streamHook("on_publish", app, stream, who, key === null ? "" : `?key=${key}`);
export const unpublish = (app: string, stream: string, who: Who = {}) => streamHook("on_unpublish", app, stream, who);
export const play = (app: string, stream: string, who: Who = {}) => streamHook("on_play", app, stream, who, "");
export const stopPlay = (app: string, stream: string, who: Who = {}) => streamHook("on_stop", app, stream, who);
/** An HLS viewer's on_play as SRS 7 sends it (hooks-srs7-more.jsonl): "<stream>.m3u8", the hls_ctx as client id, the playlist request's query as param. */
export const hlsPlay = (stream: string, who: Who, param: string) => ({ ...play("live", stream, who), stream: `${stream}.m3u8`, param });
/** A WHEP player's on_play as SRS 7 sends it (captured in e2e run 48): an empty tcUrl, the raw query without "?" as param. */
export const whepPlay = (stream: string, who: Who, query = ""): SrsBody => ({
  ...captured("on_play", "WHEP player"),
  ...ids(who),
  app: "live",
  stream,
  stream_url: `/live/${stream}`,
  param: `app=live&stream=${stream}${query ? `&${query}` : ""}`,
});
/** on_close carries no stream and no param. */
export const close = (who: Who = {}) => ({ ...captured("on_close"), ...ids(who) });
export const heartbeat = (who: { server?: string; service?: string } = {}) => ({
  ...captured("heartbeat"),
  ...(who.server ? { server: who.server } : {}),
  ...(who.service ? { service: who.service } : {}),
});

/** As in vitest.config.mts. */
export const HOOK_SECRET = "test-hook-secret-32-chars-or-more";
export const ADMIN_TOKEN = "test-admin-token-32-chars-or-more";

export interface Reply {
  status: number;
  body: any;
}

/** What SRS receives when a hook is allowed. */
export const ALLOW = { status: 200, body: { code: 0 } };

async function reply(res: Response): Promise<Reply> {
  const text = await res.text();
  let body: any = text;
  try {
    body = JSON.parse(text);
  } catch {}
  return { status: res.status, body };
}

/** POSTs a body to the hook endpoint, as SRS does (same headers, single-line JSON). */
export async function hook(body: SrsBody | string, secret = HOOK_SECRET, path = ""): Promise<Reply> {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  return reply(
    await exports.default.fetch(`http://gate.test/hooks/srs/${secret}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", "user-agent": "SRS/7.0.18(Hang)" },
      body: text,
    }),
  );
}

/** Sends a hook (or, with path "/heartbeat", a heartbeat) to the Worker with some settings changed, as a deployment with other settings would. */
export async function hookWith(overrides: Partial<Env>, body: unknown, path = ""): Promise<Reply> {
  return reply(
    await worker.fetch(
      new Request(`http://gate.test/hooks/srs/${HOOK_SECRET}${path}`, { method: "POST", body: JSON.stringify(body) }),
      { ...env, ...overrides },
      createExecutionContext(),
    ),
  );
}

export async function admin(method: string, path: string, body?: unknown, token = ADMIN_TOKEN): Promise<Reply> {
  return reply(await exports.default.fetch(adminRequest(method, path, body, token)));
}

/** An admin call to the Worker with some settings changed, as a deployment with other settings would. */
export async function adminWith(overrides: Partial<Env>, method: string, path: string, body?: unknown): Promise<Reply> {
  return reply(await worker.fetch(adminRequest(method, path, body, ADMIN_TOKEN), { ...env, ...overrides }, createExecutionContext()));
}

function adminRequest(method: string, path: string, body: unknown, token: string): Request {
  return new Request(`http://gate.test/admin${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
}

/** A stream name no other test uses, so tests never see each other's state. */
export function uniqueStream(prefix = "cam"): string {
  return `${prefix}-${crypto.randomUUID().slice(0, 8)}`;
}

/** Creates live/<stream> with the given policy and returns its publish key. */
export async function createStream(stream: string, policy: Record<string, unknown> = {}, app = "live"): Promise<string> {
  const res = await admin("PUT", `/streams/${app}/${stream}`, policy);
  if (res.status !== 201) throw new Error(`create failed: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.publishKey;
}

export async function streamState(stream: string, app = "live"): Promise<any> {
  const res = await admin("GET", `/streams/${app}/${stream}`);
  if (res.status !== 200) throw new Error(`state failed: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}
