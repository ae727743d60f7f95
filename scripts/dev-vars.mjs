// Creates .dev.vars for `npm run dev` (and fills in any setting it lacks) with the values of
// .dev.vars.example. `npm run secrets -- --local` writes random ones instead; either way, a
// secret already in .dev.vars is kept.
// These are local development values only: wrangler never uploads .dev.vars,
// and a deployed Worker without its secrets refuses every hook and admin call.
// The Worker refuses secrets shorter than 32 characters, so this also upgrades
// the short defaults that earlier versions wrote, and warns about other short ones.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { keyOf, readDevVars } from "./lib/dev-vars-file.mjs";

const MIN_SECRET_LENGTH = 32;

/** The development values, from the committed .dev.vars.example (which also types the secrets). */
const DEV_SECRETS = Object.fromEntries(
  readFileSync(new URL("../.dev.vars.example", import.meta.url), "utf8")
    .split("\n")
    .map((line) => /^([A-Z_]+)=(.+)$/.exec(line))
    .filter(Boolean)
    .map(([, name, value]) => [name, value]),
);

/** What earlier versions wrote: too short for the Worker now. */
const OLD_DEFAULTS = {
  HOOK_SECRET: "dev-hook-secret",
  ADMIN_TOKEN: "dev-admin-token",
  TOKEN_SIGNING_KEY: "dev-token-signing-key",
};

const SECRETS = [...Object.keys(DEV_SECRETS), "HOOK_SECRET_PREVIOUS", "TOKEN_SIGNING_KEY_PREVIOUS", "EVENTS_WEBHOOK_SECRET_PREVIOUS"];

/** Events' secrets may be Standard Webhooks' `whsec_` + base64 of the key, of at least 24 bytes (src/events/sign.ts). */
const WHSEC_PREFIX = "whsec_";
const MIN_WHSEC_KEY_BYTES = 24;

/** Whether the Worker refuses this value of a secret: too short (or, for `whsec_…`, too short a key or not base64). */
function unusable(name, value) {
  if (name.startsWith("EVENTS_WEBHOOK_SECRET") && value.startsWith(WHSEC_PREFIX)) {
    const encoded = value.slice(WHSEC_PREFIX.length);
    return !/^[A-Za-z0-9+/]*={0,2}$/.test(encoded) || encoded.length % 4 === 1 || Buffer.from(encoded, "base64").length < MIN_WHSEC_KEY_BYTES;
  }
  return value.length < MIN_SECRET_LENGTH;
}

const path = new URL("../.dev.vars", import.meta.url);
const original = existsSync(path)
  ? readFileSync(path, "utf8")
  : "# Local development secrets (see README). Never use these values in production.\n";

const upgraded = [];
const short = [];
// Lines as wrangler dev reads them (scripts/lib/dev-vars-file.mjs): `export HOOK_SECRET=…` or an
// indented line sets the secret too, so none of them is taken for missing.
let text = original
  .split("\n")
  .map((line) => {
    const name = keyOf(line);
    if (!SECRETS.includes(name)) return line;
    const value = readDevVars(line).get(name);
    if (OLD_DEFAULTS[name] === value) {
      upgraded.push(name);
      return `${name}=${DEV_SECRETS[name]}`;
    }
    if (unusable(name, value)) short.push(name);
    return line;
  })
  .join("\n");

const set = readDevVars(text);
const missing = Object.entries(DEV_SECRETS).filter(([name]) => !set.has(name));
if (missing.length > 0) text = text.replace(/\n?$/, "\n") + missing.map(([name, value]) => `${name}=${value}`).join("\n") + "\n";

if (text !== original) writeFileSync(path, text);
if (missing.length > 0) {
  console.log(`streamgate: wrote local development secrets to .dev.vars: ${missing.map(([n, v]) => `${n}=${v}`).join(", ")}`);
}
if (upgraded.length > 0) {
  console.log(
    `streamgate: replaced the old short development defaults in .dev.vars (${upgraded.join(", ")}); ` +
      `secrets need ${MIN_SECRET_LENGTH}+ characters now. Update SRS hook URLs and saved admin tokens: ` +
      upgraded.map((n) => `${n}=${DEV_SECRETS[n]}`).join(", "),
  );
}
const REFUSAL = {
  HOOK_SECRET: "every hook answers 500",
  HOOK_SECRET_PREVIOUS: "every hook answers 500",
  ADMIN_TOKEN: "the admin API answers 500",
  TOKEN_SIGNING_KEY: "token streams refuse every viewer and minting answers 500",
  TOKEN_SIGNING_KEY_PREVIOUS: "token streams refuse every viewer",
  EVENTS_WEBHOOK_SECRET: "no event is sent (each waits in the queue) while EVENTS_WEBHOOK_URL is set",
  EVENTS_WEBHOOK_SECRET_PREVIOUS: "no event is sent (each waits in the queue) while EVENTS_WEBHOOK_URL is set",
};
for (const name of short) {
  const rule = name.startsWith("EVENTS_WEBHOOK_SECRET")
    ? `neither ${WHSEC_PREFIX} + base64 of a key of at least ${MIN_WHSEC_KEY_BYTES} bytes nor ${MIN_SECRET_LENGTH} or more characters`
    : `shorter than ${MIN_SECRET_LENGTH} characters`;
  console.warn(`streamgate: WARNING: ${name} in .dev.vars is ${rule}, so ${REFUSAL[name]}. Set a longer value (e.g. openssl rand -hex 24) or delete the line.`);
}
