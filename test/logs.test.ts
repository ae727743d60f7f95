/**
 * The hook secret is part of every hook URL. No line streamgate logs may
 * contain it: not the decision lines, not the error line of a hook or
 * heartbeat that failed unexpectedly (its path is logged masked).
 */
import { env } from "cloudflare:workers";
import { createExecutionContext } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Env } from "../src/env";
import worker from "../src/index";
import { createStream, HOOK_SECRET, heartbeat, hook, newEdge, play, publish, uniqueStream } from "./srs";

afterEach(() => {
  vi.restoreAllMocks();
});

/** Every line logged (console.log, .error, .warn, .info) while `run` runs. */
async function logged(run: () => Promise<unknown>): Promise<string[]> {
  const lines: string[] = [];
  for (const level of ["log", "error", "warn", "info", "debug"] as const) {
    vi.spyOn(console, level).mockImplementation((...args: unknown[]) => void lines.push(args.map(String).join(" ")));
  }
  await run();
  vi.restoreAllMocks();
  return lines;
}

/** A binding that throws on every use, as a broken platform service would. */
const broken = (what: string) =>
  new Proxy({}, { get: () => () => { throw new Error(`${what} is broken (test)`); } }) as any;

async function send(overrides: Partial<Env>, body: unknown, path = "") {
  const res = await worker.fetch(
    new Request(`http://gate.test/hooks/srs/${HOOK_SECRET}${path}`, { method: "POST", body: JSON.stringify(body) }),
    { ...env, ...overrides },
    createExecutionContext(),
  );
  return { status: res.status, body: await res.json() };
}

describe("logs never contain the hook secret", () => {
  it("an unexpected error in a hook or a heartbeat logs its path with the secret masked", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    const edge = newEdge();
    const lines = await logged(async () => {
      const failed = await send({ STREAM: broken("STREAM"), REGISTRY: broken("REGISTRY") }, publish("live", s, key, { ...edge, client: "pub00001" }));
      expect(failed).toEqual({ status: 500, body: { code: 500, reason: "internal error" } });
      const beat = await send({ REGISTRY: broken("REGISTRY") }, heartbeat(edge), "/heartbeat");
      expect(beat).toEqual({ status: 500, body: { code: 500, reason: "internal error" } });
    });
    const errors = lines.filter((l) => l.includes("is broken (test)")).map((l) => JSON.parse(l));
    expect(errors.map((e) => e.url)).toEqual(["/hooks/srs/***", "/hooks/srs/***/heartbeat"]);
    for (const line of lines) expect(line).not.toContain(HOOK_SECRET);
  });

  it("decision lines of allowed and denied hooks, and a wrong secret, log nothing of it", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    const edge = newEdge();
    const lines = await logged(async () => {
      await hook(publish("live", s, key, { ...edge, client: "pub00001" }));
      await hook(publish("live", s, "wrong", { ...edge, client: "pub00002" }));
      await hook(play("live", s, { ...edge, client: "view0001" }));
      await hook(heartbeat(edge), undefined, "/heartbeat");
      await hook(play("live", s, { ...edge, client: "view0002" }), `${HOOK_SECRET}x`);
    });
    expect(lines.length).toBeGreaterThan(0);
    for (const line of lines) {
      expect(line).not.toContain(HOOK_SECRET);
      expect(line).not.toContain(key);
    }
  });
});
