// Prints the srs.conf for one SRS server of the fleet (-s: without npm's "> streamgate@…" lines, which
// SRS would refuse, so that `> srs.conf` writes a file SRS starts with):
//   npm run -s srs-config -- --role edge --gate https://gate.example.com --device-id edge-eu-1 --origin origin.internal:1935
//   npm run -s srs-config -- --role standalone --gate https://gate.example.com --device-id live-1
//   npm run -s srs-config -- --role origin
// HOOK_SECRET comes from the environment (the value `npm run secrets` printed), or with --local from
// .dev.vars (then --gate defaults to http://127.0.0.1:8787), so it stays out of shell history and ps.
// The configuration itself is built by scripts/lib/srs-config.ts, which the tests check.
import { existsSync, readFileSync } from "node:fs";
import { readDevVars } from "./lib/dev-vars-file.mjs";
import { npmBannerInOutput } from "./lib/npm-banner.ts";
import { ROLES, SrsConfigError, srsConfig, type Role } from "./lib/srs-config.ts";

const USAGE = `usage: npm run -s srs-config -- --role edge|standalone|origin [--gate URL] [--device-id ID]
         [--origin host[:port][,host[:port]]] [--server-id ID] [--webrtc CANDIDATE] [--local]
  (edge and standalone need --gate, or --local, and --device-id; an edge also --origin)
  --role        edge: remote mode, needs --origin; standalone: one server, no origin; origin: behind
                edges, calls nothing (so it takes only --server-id)
  --gate        the Worker's URL, e.g. https://gate.example.com (edge, standalone)
  --device-id   the heartbeat's label for this server (required for edge and standalone)
  --origin      the origin(s) an edge pulls from and pushes to (edge)
  --server-id   a stable server_id for this server (otherwise set SRS_SERVER_ID per pod)
  --webrtc      WHIP and WHEP on, with this ICE candidate: the host name or IPv4 address clients reach
                this server at, or * (standalone)
  --local       read HOOK_SECRET from .dev.vars; --gate defaults to http://127.0.0.1:8787 (edge,
                standalone)
A value follows its option after a space or =: --gate https://… or --gate=https://….
HOOK_SECRET is read from the environment (or .dev.vars with --local).`;

function fail(message: string): never {
  console.error(`srs-config: ${message}\n${USAGE}`);
  process.exit(2);
}

const VALUED = ["--role", "--gate", "--device-id", "--origin", "--server-id", "--webrtc"];
const args = process.argv.slice(2);
const flags: Record<string, string> = {};
let local = false;
for (let i = 0; i < args.length; i++) {
  // --gate=URL is --gate URL.
  const eq = /^(--[a-z-]+)=(.*)$/s.exec(args[i]);
  const arg = eq ? eq[1] : args[i];
  if (arg === "--local" || arg === "--help" || arg === "-h") {
    if (eq) fail(`${arg} takes no value`);
    if (arg === "--local") local = true;
    else {
      console.log(USAGE);
      process.exit(0);
    }
  } else if (VALUED.includes(arg)) {
    const value = eq ? eq[2] : args[++i];
    if (value === undefined || value === "" || value.startsWith("--")) fail(`${arg} needs a value`);
    if (flags[arg] !== undefined) fail(`${arg} is given twice`);
    flags[arg] = value;
  } else fail(`unknown argument "${args[i]}"`);
}

const role = flags["--role"];
if (!role || !ROLES.includes(role as Role)) fail(`--role must be one of ${ROLES.join(", ")}`);
// --local reads HOOK_SECRET and defaults --gate, neither of which an origin has.
if (role === "origin" && local) fail("--local is for --role edge or standalone: an origin never calls streamgate");

function devVar(name: string): string | undefined {
  const path = ".dev.vars";
  if (!existsSync(path)) fail(`--local: there is no ${path} here (run npm run dev or npm run secrets -- --local first)`);
  // The value wrangler dev reads: `export NAME=` and indented lines count, the last of two wins.
  return readDevVars(readFileSync(path, "utf8")).get(name);
}

let hookSecret: string | undefined;
if (role !== "origin") {
  hookSecret = local ? devVar("HOOK_SECRET") : process.env.HOOK_SECRET;
  if (!hookSecret) {
    fail(
      local
        ? "--local: .dev.vars has no HOOK_SECRET"
        : "HOOK_SECRET is not set: export HOOK_SECRET=<the value npm run secrets printed> (or use --local for wrangler dev)",
    );
  }
}

let conf: string;
try {
  conf = srsConfig({
    role: role as Role,
    gate: flags["--gate"] ?? (local ? "http://127.0.0.1:8787" : undefined),
    hookSecret,
    deviceId: flags["--device-id"],
    origin: flags["--origin"]?.split(/[,\s]+/),
    serverId: flags["--server-id"],
    webrtc: flags["--webrtc"],
  });
} catch (error) {
  if (error instanceof SrsConfigError) fail(error.message);
  throw error;
}
// `npm run srs-config -- … > srs.conf` (no -s): npm's lines are already in the file, and SRS
// refuses it. Checked after the arguments, so that a mistake there is reported first.
const banner = npmBannerInOutput("srs-config", "SRS refuses a configuration that holds them");
if (banner) {
  console.error(`srs-config: ${banner}`);
  process.exit(2);
}
process.stdout.write(conf);
