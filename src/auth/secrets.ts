const encoder = new TextEncoder();

export async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", encoder.encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Constant-time string comparison. Both sides are hashed first so that
 * timingSafeEqual always sees equal lengths and the length of the secret
 * does not leak either.
 */
export async function secretsMatch(given: string, expected: string): Promise<boolean> {
  const [a, b] = await Promise.all([crypto.subtle.digest("SHA-256", encoder.encode(given)), digestOf(expected)]);
  return crypto.subtle.timingSafeEqual(a, b);
}

/**
 * The configured secrets' digests, computed once per value (every hook compares its path secret
 * with HOOK_SECRET): a handful of values per isolate, the secrets themselves already in its memory.
 */
const digests = new Map<string, ArrayBuffer>();
async function digestOf(secret: string): Promise<ArrayBuffer> {
  // The value is kept, not the promise: a promise made in one request is not awaited by another.
  const known = digests.get(secret);
  if (known) return known;
  const d = await crypto.subtle.digest("SHA-256", encoder.encode(secret));
  if (digests.size >= 16) digests.clear();
  digests.set(secret, d);
  return d;
}

/** A new publish key: 24 random bytes, base64url (32 characters, safe in RTMP URLs and OBS). */
export function newPublishKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(24));
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_");
}


/** Constant-time comparison of two SHA-256 hex digests (synchronous, so usable inside a Durable Object's atomic section). */
export function hashesEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  return crypto.subtle.timingSafeEqual(encoder.encode(a), encoder.encode(b));
}
