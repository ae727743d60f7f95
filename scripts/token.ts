// Prints a play token: npm run -s token -- <app>/<stream> [--ttl seconds] [--vhost name] [--sub viewer-id]
// (<app>/* : a season pass, every stream of the app).
// The signing key comes from TOKEN_SIGNING_KEY in the environment, else from .dev.vars (the local
// key: it says so on stderr). --help prints the usage.
// Runs on Node 22 (type stripping), with the same signing code the Worker uses.
import { existsSync, readFileSync } from "node:fs";
import { signPlayToken, SUB_PATTERN } from "../src/auth/token.ts";
import { readDevVars } from "./lib/dev-vars-file.mjs";
import { npmBannerInOutput } from "./lib/npm-banner.ts";

// The Worker refuses tokens expiring further ahead than its MAX_TOKEN_TTL_S (default 30 days) and
// mints none over 7 days; this command keeps to the same limits. Set MAX_TOKEN_TTL_S in the
// environment when the deployment uses a shorter one.
const MAX_TTL_S = Math.min(7 * 24 * 3600, Number(process.env.MAX_TOKEN_TTL_S) || 30 * 24 * 3600);

const USAGE = `usage: npm run -s token -- <app>/<stream> [--ttl seconds] [--vhost name] [--sub viewer-id]
  <app>/<stream>  the stream the token plays, e.g. live/cam1; '<app>/*' (quoted: the shell would
                  expand it) plays every stream of the app (a season pass)
  --ttl           seconds until it expires (default 3600; at most 7 days, or MAX_TOKEN_TTL_S from
                  the environment if shorter, which is then the default too if under 3600)
  --vhost         the SRS vhost (default __defaultVhost__)
  --sub           the viewer id the token names (1 to 64 of A-Z a-z 0-9 . _ : @ -)
Prints the token on stdout. The signing key is TOKEN_SIGNING_KEY from the environment, else the
TOKEN_SIGNING_KEY line of this checkout's .dev.vars: without the environment variable, the token
is signed with the local key (npm run dev's), which a deployed gate refuses. For a deployed gate:
TOKEN_SIGNING_KEY=<the value npm run secrets printed> npm run -s token -- live/cam1`;

function usage(message: string): never {
  console.error(`${message}\n${USAGE}`);
  process.exit(2);
}

function signingKey(): string {
  if (process.env.TOKEN_SIGNING_KEY) return process.env.TOKEN_SIGNING_KEY;
  // npm run runs this in the checkout's root, where wrangler dev reads .dev.vars; read as wrangler reads it
  // (`export NAME=`, quotes, indented lines; the last line naming it wins), so the token is signed with the key the local gate uses.
  const key = existsSync(".dev.vars") ? readDevVars(readFileSync(".dev.vars", "utf8")).get("TOKEN_SIGNING_KEY") : undefined;
  if (!key) usage("TOKEN_SIGNING_KEY is not set (in the environment or .dev.vars)");
  console.error("TOKEN_SIGNING_KEY is not in the environment: signed with the local key of .dev.vars (for npm run dev; a deployed gate refuses it)");
  return key;
}

const args = process.argv.slice(2);
let target: string | undefined;
let ttl = Math.min(3600, MAX_TTL_S); // as the admin API: 3600, or the deployment's maximum if that is less
let vhost = "__defaultVhost__";
let sub: string | undefined;
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--help" || args[i] === "-h") {
    console.log(USAGE);
    process.exit(0);
  } else if (args[i] === "--ttl") ttl = Number(args[++i]);
  else if (args[i] === "--vhost") vhost = args[++i] ?? "";
  else if (args[i] === "--sub") sub = args[++i] ?? "";
  else if (!target) target = args[i];
  else usage(`unexpected argument "${args[i]}"`);
}
const slash = target?.indexOf("/") ?? -1;
if (!target || slash <= 0 || slash === target.length - 1 || target.indexOf("/", slash + 1) !== -1) usage("expected <app>/<stream>");
if (!Number.isSafeInteger(ttl) || ttl < 1 || ttl > MAX_TTL_S) usage(`--ttl must be an integer from 1 to ${MAX_TTL_S}`);
if (!vhost) usage("--vhost needs a name");
if (sub !== undefined && !SUB_PATTERN.test(sub)) usage("--sub must be 1 to 64 characters of A-Z a-z 0-9 . _ : @ -");

const key = signingKey();
// TOKEN=$(npm run token -- live/cam1) (no -s) would hold npm's lines before the token. Checked after
// the arguments and the key, so that a mistake there is reported first.
const banner = npmBannerInOutput("token", "they would be read as part of the token");
if (banner) {
  console.error(banner);
  process.exit(2);
}

const issuedAt = Math.floor(Date.now() / 1000);
const expiresAt = issuedAt + ttl;
const token = await signPlayToken({ vhost, app: target.slice(0, slash), stream: target.slice(slash + 1) }, expiresAt, key, { sub, issuedAt });
console.log(token);
console.error(`expires ${new Date(expiresAt * 1000).toISOString()}; play with ?token=${token}`);
