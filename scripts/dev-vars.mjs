// Creates .dev.vars for `npm run dev` (and fills in any setting it lacks).
// These are local development values only: wrangler never uploads .dev.vars,
// and a deployed Worker without its secrets refuses every hook and admin call.
import { existsSync, readFileSync, writeFileSync } from "node:fs";

const DEV_SECRETS = {
  HOOK_SECRET: "dev-hook-secret",
  ADMIN_TOKEN: "dev-admin-token",
  TOKEN_SIGNING_KEY: "dev-token-signing-key",
};

const path = new URL("../.dev.vars", import.meta.url);
const current = existsSync(path)
  ? readFileSync(path, "utf8")
  : "# Local development secrets (see README). Never use these values in production.\n";
const missing = Object.entries(DEV_SECRETS).filter(([name]) => !new RegExp(`^${name}=`, "m").test(current));
if (missing.length > 0) {
  const lines = missing.map(([name, value]) => `${name}=${value}`);
  writeFileSync(path, current.replace(/\n?$/, "\n") + lines.join("\n") + "\n");
  console.log(`streamgate: wrote local development secrets to .dev.vars: ${lines.join(", ")}`);
}
