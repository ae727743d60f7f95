import { readFileSync } from "node:fs";
import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

// Tests run inside workerd with the real KV namespace and Durable Objects from
// wrangler.toml. wrangler also loads a developer's .dev.vars (there is no option
// to stop it), so every setting the Worker reads is pinned here: the [vars] as
// wrangler.toml has them, the secrets as fixed test values, rotations off.
// Tests then run the same in any checkout, whatever `npm run dev` left behind.
const tomlVars = Object.fromEntries(
  [...(readFileSync(new URL("./wrangler.toml", import.meta.url), "utf8").split(/^\[vars\]$/m)[1] ?? "").split(/^\[/m)[0].matchAll(/^([A-Z_]+)\s*=\s*"([^"]*)"/gm)].map(
    (m) => [m[1], m[2]],
  ),
);
const bindings = {
  ...tomlVars,
  HOOK_SECRET_PREVIOUS: "",
  TOKEN_SIGNING_KEY_PREVIOUS: "",
  // Events off, unless a project turns them on.
  EVENTS_WEBHOOK_URL: "",
  EVENTS_WEBHOOK_SECRET: "",
  // At least 32 characters each: the Worker refuses shorter secrets.
  HOOK_SECRET: "test-hook-secret-32-chars-or-more",
  ADMIN_TOKEN: "test-admin-token-32-chars-or-more",
  TOKEN_SIGNING_KEY: "test-token-signing-key-32-chars-or-more",
};
const workerd = (extra: Record<string, string>) =>
  cloudflareTest({
    wrangler: { configPath: "./wrangler.toml" },
    miniflare: {
      // Vitest's own runner imports node:* modules; the Worker itself does not need this flag.
      compatibilityFlags: ["nodejs_compat"],
      bindings: { ...bindings, ...extra },
    },
  });
// One JSON log line per decision is the product's output; keep it out of the test report unless a test fails.
// Property tests send hundreds of hooks per test: give them time on a loaded 2-core machine.
const common = { silent: "passed-only" as const, testTimeout: 60_000 };
// Each directory of test/ below runs against a gate configured its own way; the rest of test/ against the
// plain gate. srs-api/: SRS_API_URL set (their fake SRS, test/fake-srs.ts, answers the Worker's fetch).
// webhooks/: EVENTS_WEBHOOK_URL set (test/receiver.ts answers the Worker's fetch of it). srs-api-events/:
// both (their receiver is one more host of the fake SRS network).
const SRS_API_TESTS = ["test/srs-api/**/*.test.ts"];
const WEBHOOK_TESTS = ["test/webhooks/**/*.test.ts"];
const SRS_API_EVENTS_TESTS = ["test/srs-api-events/**/*.test.ts"];
const WEBHOOK_SECRET = `whsec_${Buffer.from("0123456789abcdef0123456789abcdef").toString("base64")}`; // as test/receiver.ts
const SRS_API = { SRS_API_URL: "https://{device_id}.srs.test:1985", SRS_API_USERNAME: "gate", SRS_API_PASSWORD: "srs-api-password" };
const EVENTS = { EVENTS_WEBHOOK_URL: "https://receiver.test/streamgate-events", EVENTS_WEBHOOK_SECRET: WEBHOOK_SECRET };

export default defineConfig({
  test: {
    projects: [
      { plugins: [workerd({})], test: { ...common, name: "gate", include: ["test/**/*.test.ts"], exclude: [...SRS_API_TESTS, ...WEBHOOK_TESTS, ...SRS_API_EVENTS_TESTS] } },
      { plugins: [workerd(EVENTS)], test: { ...common, name: "webhooks", include: WEBHOOK_TESTS } },
      { plugins: [workerd(SRS_API)], test: { ...common, name: "srs-api", include: SRS_API_TESTS } },
      { plugins: [workerd({ ...SRS_API, ...EVENTS })], test: { ...common, name: "srs-api-events", include: SRS_API_EVENTS_TESTS } },
    ],
  },
});
