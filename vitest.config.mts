import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

// Tests run inside workerd with the real KV namespace and Durable Objects from
// wrangler.toml. Secrets are fixed test values here; .dev.vars is never read.
export default defineConfig({
  // One JSON log line per decision is the product's output; keep it out of the test report unless a test fails.
  // Property tests send hundreds of hooks per test: give them time on a loaded 2-core machine.
  test: { silent: "passed-only", testTimeout: 60_000 },
  plugins: [
    cloudflareTest({
      wrangler: { configPath: "./wrangler.toml" },
      miniflare: {
        // Vitest's own runner imports node:* modules; the Worker itself does not need this flag.
        compatibilityFlags: ["nodejs_compat"],
        bindings: {
          // At least 32 characters each: the Worker refuses shorter secrets.
          HOOK_SECRET: "test-hook-secret-32-chars-or-more",
          ADMIN_TOKEN: "test-admin-token-32-chars-or-more",
          TOKEN_SIGNING_KEY: "test-token-signing-key-32-chars-or-more",
        },
      },
    }),
  ],
});
