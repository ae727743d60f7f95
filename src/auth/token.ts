/**
 * Play tokens: signed, expiring, bound to one stream (or, v2, every stream of
 * an app), URL-safe. Minted as v2; v1 tokens keep verifying.
 *
 *   v2 token  = message + "." + b64url(signature)
 *   message   = "v2." + b64url(resource) + "." + iat + "." + exp + "." + viewer
 *   viewer    = b64url(sub), or "-" for a token that names no viewer (a lone
 *               "-" is never a base64url encoding; an empty field would put
 *               ".." in the play URL, which SRS's HTTP server refuses)
 *   resource  = vhost + "/" + app + "/" + stream  e.g. "__defaultVhost__/live/cam1",
 *               or vhost + "/" + app + "/*": every stream of that app (a season pass)
 *   iat, exp  = issue time and expiry, Unix time in whole seconds (decimal digits)
 *   sub       = the viewer id, 1 to 64 of [A-Za-z0-9._:@-]
 *   signature = HMAC-SHA256(key = UTF-8 bytes of TOKEN_SIGNING_KEY, data = UTF-8 bytes of message)
 *
 *   v1 token  = "v1." + b64url(resource) + "." + exp + "." + b64url(signature),
 *               signed over "v1." + b64url(resource) + "." + exp
 *   b64url    = base64url without "=" padding (RFC 4648 §5), canonical: the
 *               unused low bits of the last character are zero. Any other
 *               spelling of the same bytes is a "malformed token".
 *
 * This file has no imports so that Node (the `npm run token` command, an
 * operator's backend) and Workers can both use it as it is.
 */

export interface PlayResource {
  vhost: string;
  app: string;
  stream: string;
}

export type TokenProblem = "missing token" | "malformed token" | "bad signature" | "expired" | "issued in the future" | "lifetime too long" | "wrong stream";

/**
 * A refused token whose signature was genuine names its viewer (`sub`), for
 * the logs: the viewer id is not a secret, the token is.
 */
export type TokenVerdict = { ok: true; sub?: string | null; issuedAt?: number | null } | { ok: false; problem: TokenProblem; sub?: string | null };

/**
 * How far a v2 token's issue time (iat) may lie ahead of the gate's clock:
 * the clock of the backend that minted it may run fast by that much. A token
 * dated further ahead is refused ("issued in the future"), so that a
 * revocation of a viewer's tokens "issued up to now" can reach every token
 * the gate accepts (it covers iat up to now + this; src/admin/validate.ts).
 */
export const MAX_CLOCK_SKEW_S = 60;

/** The viewer field of a v2 token that names no viewer. */
const NO_VIEWER = "-";

/** A viewer id as a token may carry it. */
export const SUB_PATTERN = /^[A-Za-z0-9._:@-]{1,64}$/;
const encoder = new TextEncoder();

export function resourceOf(name: PlayResource): string {
  return `${name.vhost}/${name.app}/${name.stream}`;
}

/** What a v2 token may carry besides the stream and its expiry. */
export interface TokenClaims {
  /** The viewer id (SUB_PATTERN); none: any viewer. */
  sub?: string;
  /** Issue time, Unix seconds; default now. */
  issuedAt?: number;
  /** Every stream of the app (resource "vhost/app/*"). */
  wholeApp?: boolean;
}

/** Mints a v2 token for `name` that expires at `expiresAt` (Unix seconds). */
export async function signPlayToken(name: PlayResource, expiresAt: number, signingKey: string, claims: TokenClaims = {}): Promise<string> {
  if (claims.sub !== undefined && !SUB_PATTERN.test(claims.sub)) throw new Error("sub must be 1 to 64 of A-Z a-z 0-9 . _ : @ -");
  const resource = claims.wholeApp ? `${name.vhost}/${name.app}/*` : resourceOf(name);
  const iat = Math.floor(claims.issuedAt ?? Date.now() / 1000);
  const viewer = claims.sub === undefined ? NO_VIEWER : b64url(encoder.encode(claims.sub));
  const message = `v2.${b64url(encoder.encode(resource))}.${iat}.${Math.floor(expiresAt)}.${viewer}`;
  const signature = await crypto.subtle.sign("HMAC", await hmacKey(signingKey), encoder.encode(message));
  return `${message}.${b64url(new Uint8Array(signature))}`;
}

/**
 * Checks a token for `name` at `now` (Unix seconds) against each signing key
 * in turn (current, then previous during a rotation). The signature is
 * checked before anything the token says is believed, and in constant time
 * (crypto.subtle.verify). A genuine token whose expiry lies more than
 * `maxLifetime` seconds after `now` is refused too ("lifetime too long"), and
 * a v2 token issued more than MAX_CLOCK_SKEW_S after `now` ("issued in the
 * future").
 */
export async function verifyPlayToken(
  token: string | null,
  name: PlayResource,
  now: number,
  signingKeys: string[],
  maxLifetime = Infinity,
): Promise<TokenVerdict> {
  if (token === null || token === "") return { ok: false, problem: "missing token" };
  const parts = token.split(".");
  const digits = (p: string) => /^\d{1,12}$/.test(p);
  // v1: resource.exp.signature; v2: resource.iat.exp.sub.signature.
  const v1 = parts.length === 4 && parts[0] === "v1" && digits(parts[2]);
  const v2 = parts.length === 6 && parts[0] === "v2" && digits(parts[2]) && digits(parts[3]);
  if (!v1 && !v2) return fail("malformed token");
  const resourceBytes = fromB64url(parts[1]);
  const signature = fromB64url(parts[parts.length - 1]);
  // "-": no viewer. An empty field (tokens minted before "-") is read the same way.
  const subBytes = !v2 || parts[4] === NO_VIEWER ? new Uint8Array() : fromB64url(parts[4]);
  if (!resourceBytes || !signature || !subBytes || signature.byteLength !== 32) return fail("malformed token");
  const sub = new TextDecoder().decode(subBytes);
  if (sub !== "" && !SUB_PATTERN.test(sub)) return fail("malformed token");
  const exp = Number(v2 ? parts[3] : parts[2]);
  const message = encoder.encode(parts.slice(0, -1).join("."));
  let signed = false;
  for (const key of signingKeys) {
    if (await crypto.subtle.verify("HMAC", await hmacKey(key), signature, message)) {
      signed = true;
      break;
    }
  }
  if (!signed) return fail("bad signature");
  // Genuine from here: a refusal names the viewer.
  const viewer = sub === "" ? null : sub;
  const iat = v2 ? Number(parts[2]) : null;
  if (exp <= now) return fail("expired", viewer);
  if (iat !== null && iat > now + MAX_CLOCK_SKEW_S) return fail("issued in the future", viewer);
  // A v2 token lives from iat to exp: no longer than maxLifetime, so a revocation of the tokens issued
  // before a moment can end maxLifetime after it (src/stream/revocations.ts).
  if (exp - now > maxLifetime || (iat !== null && exp - iat > maxLifetime)) return fail("lifetime too long", viewer);
  const resource = new TextDecoder().decode(resourceBytes);
  const wholeApp = v2 && resource === `${name.vhost}/${name.app}/*`;
  if (resource !== resourceOf(name) && !wholeApp) return fail("wrong stream", viewer);
  return { ok: true, sub: viewer, issuedAt: iat };
}

function fail(problem: TokenProblem, sub?: string | null): TokenVerdict {
  return sub === undefined ? { ok: false, problem } : { ok: false, problem, sub };
}

/** Imported keys are reused: importKey costs more than the HMAC itself. */
const keyCache = new Map<string, Promise<CryptoKey>>();

function hmacKey(secret: string): Promise<CryptoKey> {
  let key = keyCache.get(secret);
  if (!key) {
    if (keyCache.size >= 8) keyCache.clear();
    key = crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]);
    keyCache.set(secret, key);
  }
  return key;
}

function b64url(bytes: Uint8Array): string {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/**
 * Decodes base64url, accepting only the canonical spelling: the one b64url()
 * gives for the same bytes. The last character of a part whose length is not
 * a multiple of 4 carries bits that decoders ignore (2 of them in a
 * 43-character signature), so without this check one token would have
 * several accepted spellings. (Uint8Array.fromBase64 with lastChunkHandling
 * "strict" checks those bits in workerd, but it wants "=" padding, and
 * Node 22, which runs `npm run token`, does not have it.)
 */
function fromB64url(text: string): Uint8Array | null {
  if (!/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) return null;
  const binary = atob(text.replace(/-/g, "+").replace(/_/g, "/") + "==".slice(0, (4 - (text.length % 4)) % 4));
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  return b64url(bytes) === text ? bytes : null;
}
