// Prints a play token: npm run -s token -- <app>/<stream> [--ttl seconds] [--vhost name] [--sub viewer-id]
// (<app>/* : a season pass, every stream of the app).
// The signing key comes from TOKEN_SIGNING_KEY in the environment, else from .dev.vars.
// Runs on Node 22 (type stripping), with the same signing code the Worker uses.
import { existsSync, readFileSync } from "node:fs";
import { signPlayToken, SUB_PATTERN } from "../src/auth/token.ts";

// The Worker refuses tokens expiring further ahead than its MAX_TOKEN_TTL_S (default 30 days) and
// mints none over 7 days; this command keeps to the same limits. Set MAX_TOKEN_TTL_S in the
// environment when the deployment uses a shorter one.
const MAX_TTL_S = Math.min(7 * 24 * 3600, Number(process.env.MAX_TOKEN_TTL_S) || 30 * 24 * 3600);

function usage(message: string): never {
  console.error(`${message}\nusage: npm run -s token -- <app>/<stream> (or <app>/* for every stream of the app) [--ttl seconds] [--vhost name] [--sub viewer-id]`);
  process.exit(2);
}

function signingKey(): string {
  if (process.env.TOKEN_SIGNING_KEY) return process.env.TOKEN_SIGNING_KEY;
  const devVars = new URL("../.dev.vars", import.meta.url);
  if (existsSync(devVars)) {
    const line = readFileSync(devVars, "utf8").split("\n").find((l) => l.startsWith("TOKEN_SIGNING_KEY="));
    if (line) return line.slice("TOKEN_SIGNING_KEY=".length).trim();
  }
  usage("TOKEN_SIGNING_KEY is not set (in the environment or .dev.vars)");
}

const args = process.argv.slice(2);
let target: string | undefined;
let ttl = 3600;
let vhost = "__defaultVhost__";
let sub: string | undefined;
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--ttl") ttl = Number(args[++i]);
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

const issuedAt = Math.floor(Date.now() / 1000);
const expiresAt = issuedAt + ttl;
const token = await signPlayToken({ vhost, app: target.slice(0, slash), stream: target.slice(slash + 1) }, expiresAt, signingKey(), { sub, issuedAt });
console.log(token);
console.error(`expires ${new Date(expiresAt * 1000).toISOString()}; play with ?token=${token}`);
