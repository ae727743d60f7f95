// Durable Object migrations are append-only once deployed (see the comment above [[migrations]] in
// wrangler.toml): wrangler deploy sends only the entries after the tag the deployed Worker last
// applied, so an edited entry is silently never applied. This test holds the deployed history and
// fails when wrangler.toml no longer starts with it. Run by npm test (node --test).
//
// Every entry on main counts as deployed (operators deploy main with `npm run deploy`, which
// applies them all). When you add a migration, append a new [[migrations]] entry to wrangler.toml
// and the same entry here, in the same commit. Never edit an entry of this list.
import assert from "node:assert/strict";
import { it } from "node:test";
import { experimental_readRawConfig } from "wrangler";

const DEPLOYED_MIGRATIONS = [
  { tag: "v1", new_sqlite_classes: ["StreamObject", "ServerRegistry"] },
  { tag: "v2", new_sqlite_classes: ["ViewerShard"] },
  { tag: "v3", new_sqlite_classes: ["ViewerSeats"] },
  { tag: "v4", new_sqlite_classes: ["DeadLetters"] },
];

const config = new URL("../../wrangler.toml", import.meta.url).pathname;
const { rawConfig } = experimental_readRawConfig({ config });
// Plain objects (the TOML parser makes null-prototype ones, which deepEqual tells apart).
const migrations = JSON.parse(JSON.stringify(rawConfig.migrations ?? []));

it("wrangler.toml keeps every deployed Durable Object migration as it was, in order", () => {
  assert.ok(migrations.length >= DEPLOYED_MIGRATIONS.length, "a deployed [[migrations]] entry was removed");
  DEPLOYED_MIGRATIONS.forEach((deployed, i) => {
    assert.deepEqual(migrations[i], deployed, `[[migrations]] entry ${i + 1} (tag "${deployed.tag}") was edited: add a new entry instead`);
  });
});

it("migration tags are unique", () => {
  const tags = migrations.map((m) => m.tag);
  assert.equal(new Set(tags).size, tags.length, `duplicate tag in ${tags.join(", ")}`);
});

it("every migration in wrangler.toml is in the deployed history here (a new one is appended to both)", () => {
  assert.deepEqual(migrations.slice(DEPLOYED_MIGRATIONS.length), [], "a [[migrations]] entry not listed in DEPLOYED_MIGRATIONS: append it there in the same commit");
});
