/**
 * Play tokens: signed, expiring, bound to one stream, URL-safe.
 *
 *   token     = "v1." + b64url(resource) + "." + exp + "." + b64url(signature)
 *   resource  = vhost + "/" + app + "/" + stream       e.g. "__defaultVhost__/live/cam1"
 *   exp       = expiry, Unix time in whole seconds (decimal digits)
 *   signature = HMAC-SHA256(key = UTF-8 bytes of TOKEN_SIGNING_KEY,
 *                           message = "v1." + b64url(resource) + "." + exp)
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

export type TokenProblem = "missing token" | "malformed token" | "bad signature" | "expired" | "lifetime too long" | "wrong stream";

export type TokenVerdict = { ok: true } | { ok: false; problem: TokenProblem };

const VERSION = "v1";
const encoder = new TextEncoder();

export function resourceOf(name: PlayResource): string {
  return `${name.vhost}/${name.app}/${name.stream}`;
}

/** Mints a token for `name` that expires at `expiresAt` (Unix seconds). */
export async function signPlayToken(name: PlayResource, expiresAt: number, signingKey: string): Promise<string> {
  const message = `${VERSION}.${b64url(encoder.encode(resourceOf(name)))}.${Math.floor(expiresAt)}`;
  const signature = await crypto.subtle.sign("HMAC", await hmacKey(signingKey), encoder.encode(message));
  return `${message}.${b64url(new Uint8Array(signature))}`;
}

/**
 * Checks a token for `name` at `now` (Unix seconds) against each signing key
 * in turn (current, then previous during a rotation). The signature is
 * checked before anything the token says is believed, and in constant time
 * (crypto.subtle.verify). A genuine token whose expiry lies more than
 * `maxLifetime` seconds after `now` is refused too ("lifetime too long").
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
  if (parts.length !== 4 || parts[0] !== VERSION || !/^\d{1,12}$/.test(parts[2])) return fail("malformed token");
  const resourceBytes = fromB64url(parts[1]);
  const signature = fromB64url(parts[3]);
  if (!resourceBytes || !signature || signature.byteLength !== 32) return fail("malformed token");
  const message = encoder.encode(parts.slice(0, 3).join("."));
  let signed = false;
  for (const key of signingKeys) {
    if (await crypto.subtle.verify("HMAC", await hmacKey(key), signature, message)) {
      signed = true;
      break;
    }
  }
  if (!signed) return fail("bad signature");
  if (Number(parts[2]) <= now) return fail("expired");
  if (Number(parts[2]) - now > maxLifetime) return fail("lifetime too long");
  if (new TextDecoder().decode(resourceBytes) !== resourceOf(name)) return fail("wrong stream");
  return { ok: true };
}

function fail(problem: TokenProblem): TokenVerdict {
  return { ok: false, problem };
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
