import { StatusError } from "itty-router";

/**
 * Input limits for everything streamgate stores or compares. Names use the
 * characters SRS streams are named with in practice (RFC 3986 "unreserved":
 * letters, digits, . _ ~ -); vhosts are host names. Ids are what SRS draws
 * (e.g. "vid-8304c30", "32457039") or an operator configures: printable
 * ASCII without spaces. A violation is a 400 that names the field and the limit.
 */
interface Limit {
  max: number;
  pattern: RegExp;
  /** What the 400 says of a value the pattern refuses, after `field "…"`. */
  rule: string;
}

const NAME: Limit = { max: 128, pattern: /^[A-Za-z0-9._~-]+$/, rule: "may contain only letters, digits and . _ ~ -" };

export const LIMITS = {
  vhost: { max: 253, pattern: /^[A-Za-z0-9._-]+$/, rule: "may contain only letters, digits and . _ -" },
  app: NAME,
  stream: NAME,
  id: { max: 64, pattern: /^[\x21-\x7e]+$/, rule: "may contain only printable ASCII without spaces" },
  // Control characters: C0, DEL and C1 (U+0080–U+009F), as cleanIp counts them (src/srs/hook.ts).
  param: { max: 4096, pattern: /^[^\x00-\x1f\x7f-\x9f]*$/, rule: "must not contain control characters" },
  label: { max: 128, pattern: /^[^\x00-\x1f\x7f-\x9f]*$/, rule: "must not contain control characters" },
} satisfies Record<string, Limit>;

/** Returns the value if it is within the limit, else throws 400 naming field and limit. */
export function within(field: string, value: string, limit: Limit): string {
  if (value.length > limit.max) {
    throw new StatusError(400, `field "${field}" is longer than ${limit.max} characters (${value.length})`);
  }
  if (!limit.pattern.test(value)) {
    throw new StatusError(400, `field "${field}" ${limit.rule}`);
  }
  return value;
}
