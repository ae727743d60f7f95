// Creates .dev.vars for `npm run dev` when it does not exist yet. These are
// local development values only: wrangler never uploads .dev.vars, and a
// deployed Worker without its secrets refuses every hook and admin call.
import { existsSync, writeFileSync } from "node:fs";

const path = new URL("../.dev.vars", import.meta.url);
if (!existsSync(path)) {
  writeFileSync(
    path,
    [
      "# Local development secrets (see README). Never use these values in production.",
      "HOOK_SECRET=dev-hook-secret",
      "ADMIN_TOKEN=dev-admin-token",
      "",
    ].join("\n"),
  );
  console.log("streamgate: wrote .dev.vars with the local development secrets (HOOK_SECRET=dev-hook-secret, ADMIN_TOKEN=dev-admin-token)");
}
