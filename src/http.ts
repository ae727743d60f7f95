import { StatusError } from "itty-router";

/** Every body streamgate accepts, hook or admin, is at most this large. */
export const MAX_BODY_BYTES = 64 * 1024;

/** JSON response with the headers every streamgate answer carries. */
export function jsonResponse(body: unknown, status = 200, headers: HeadersInit = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", "cache-control": "no-store", ...headers },
  });
}

/**
 * Reads the body as JSON, refusing more than MAX_BODY_BYTES even when the
 * client lies about (or omits) Content-Length. Throws BodyRefused (a StatusError 413/400).
 */
export async function readJson(request: Request): Promise<unknown> {
  const bytes = await readBody(request);
  if (bytes === null) return undefined;
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    throw new BodyRefused(400, "body is not valid UTF-8", bytes);
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new BodyRefused(400, "body is not valid JSON", bytes);
  }
}

/**
 * A body refused before it could be read as JSON (413, 400), with its first bytes (at most
 * MAX_BODY_BYTES): what a hook needs to find the session SRS serves whatever the answer (src/srs/routes.ts).
 */
export class BodyRefused extends StatusError {
  constructor(
    status: number,
    message: string,
    readonly head: Uint8Array,
  ) {
    super(status, message);
  }
}

/**
 * A call that takes no body (GET, DELETE) refuses one, 400, before it changes anything: a DELETE
 * that ignored `{"client": …}` in its body would end every session its query did not narrow.
 * Only whitespace counts as no body.
 */
export async function refuseBody(request: Request): Promise<void> {
  const bytes = await readBody(request);
  if (bytes !== null && bytes.some((b) => b !== 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0d)) {
    // The ends by hand are where a body is most likely meant as a filter: their filters are named.
    // Not DELETE /admin/servers/{id}/sessions: it takes no filter (it refuses a query) and ends every session of its server.
    const hint = /^\/admin\/streams\/[^/]+\/[^/]+\/sessions$/.test(new URL(request.url).pathname) ? " (choose sessions with the query: ?server=ID&client=ID)" : "";
    throw new StatusError(400, `${request.method} takes no body${hint}: nothing was changed`);
  }
}

/**
 * A call that changes things refuses a query parameter it does not read (400, before anything changes): one it
 * ignored (a misspelt filter, ?client_id=; an id naming one item) widened the call to everything.
 */
export function onlyQuery(request: Request, reads: readonly string[], refusal: string): void {
  const unknown = [...new URL(request.url).searchParams.keys()].find((k) => !reads.includes(k));
  if (unknown !== undefined) throw new StatusError(400, `query parameter "${unknown}" is not read here: ${refusal}`);
}

/**
 * The body's bytes (null: none), at most MAX_BODY_BYTES whatever Content-Length says. A longer body
 * (or one declared longer) is refused, 413, with its first MAX_BODY_BYTES.
 */
async function readBody(request: Request): Promise<Uint8Array | null> {
  const declared = Number(request.headers.get("content-length") ?? "0");
  const chunks: Uint8Array[] = [];
  let length = 0;
  if (request.body) {
    const reader = request.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      length += value.byteLength;
      chunks.push(value);
      if (length > MAX_BODY_BYTES) {
        await reader.cancel();
        throw tooLarge(joined(chunks, length).subarray(0, MAX_BODY_BYTES));
      }
    }
  }
  if (declared > MAX_BODY_BYTES) throw tooLarge(joined(chunks, length));
  if (length === 0) return null;
  return joined(chunks, length);
}

function joined(chunks: Uint8Array[], length: number): Uint8Array {
  if (chunks.length === 1) return chunks[0];
  const bytes = new Uint8Array(length);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.byteLength;
  }
  return bytes;
}

function tooLarge(head: Uint8Array): BodyRefused {
  return new BodyRefused(413, `body larger than ${MAX_BODY_BYTES} bytes`, head);
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A query parameter given at most once: undefined when absent; given twice (or more), 400 naming it. */
export function queryParam(query: Record<string, unknown>, name: string): string | undefined {
  const value = query[name];
  if (value === undefined) return undefined;
  if (typeof value !== "string") throw new StatusError(400, `query parameter "${name}" must be given once`);
  return value;
}

/**
 * ?cursor= of a paged list, as a previous page gave it (opaque, from KV): once, and of the
 * characters such cursors have. Anything else is a 400, never a quiet first or empty page.
 */
export function pageCursor(query: Record<string, unknown>): string | undefined {
  const cursor = queryParam(query, "cursor");
  if (cursor === undefined || cursor === "") return undefined;
  if (!/^[A-Za-z0-9+/=_.-]{1,2048}$/.test(cursor)) throw new StatusError(400, 'query parameter "cursor" is not a cursor this API gave');
  return cursor;
}
