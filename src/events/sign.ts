/**
 * Standard Webhooks signatures (standardwebhooks.com): `webhook-signature` is "v1," + the base64
 * HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}".
 *
 * The key: a secret "whsec_<base64>" (the specification's usual form, what `npm run secrets`
 * makes) is that base64, decoded; any other secret is used as it is, its UTF-8 bytes being the key
 * (receivers then verify with those bytes: in the reference libraries, pass them base64-encoded
 * with "whsec_" in front, or use the raw-key option).
 */
import { StatusError } from "itty-router";
import { MIN_SECRET_LENGTH } from "../config";

const PREFIX = "whsec_";
/** The specification's minimum for a symmetric key ("at least 24 bytes"); the JS reference library itself refuses only an empty one. */
export const MIN_KEY_BYTES = 24;

/** The HMAC key of a secret; a secret that cannot be one throws, naming the rule (never the value). */
export function signingKey(secret: string, name = "EVENTS_WEBHOOK_SECRET"): Uint8Array {
  if (secret.startsWith(PREFIX)) {
    let key: Uint8Array;
    try {
      key = Uint8Array.from(atob(secret.slice(PREFIX.length)), (c) => c.charCodeAt(0));
    } catch {
      throw new StatusError(500, `${name} starts with "${PREFIX}" but the rest is not base64`);
    }
    if (key.length < MIN_KEY_BYTES) throw new StatusError(500, `${name}'s key is shorter than ${MIN_KEY_BYTES} bytes`);
    return key;
  }
  if (secret.length < MIN_SECRET_LENGTH) throw new StatusError(500, `${name} is shorter than ${MIN_SECRET_LENGTH} characters`);
  return new TextEncoder().encode(secret);
}

/** The `webhook-signature` header for one delivery. `timestamp`: the `webhook-timestamp` header, in seconds. */
export async function signDelivery(key: Uint8Array, id: string, timestamp: number, body: string): Promise<string> {
  const hmac = await crypto.subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", hmac, new TextEncoder().encode(`${id}.${timestamp}.${body}`)));
  return `v1,${btoa(String.fromCharCode(...mac))}`;
}
