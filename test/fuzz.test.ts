/**
 * Malformed input never causes a 5xx or a state change, and always gets a
 * clear 4xx reason: broken JSON, wrong types, huge and control-character
 * strings, deep nesting, missing fields, on the hook and admin endpoints.
 */
import { env } from "cloudflare:workers";
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { admin, createStream, type Edge, heartbeat, hook, newEdge, play, publish, streamState, uniqueStream } from "./srs";

const RUNS = 150;
let edge: Edge;
let s: string;
let key: string;
/** A server with no session on the fuzzed stream. */
const bystander = newEdge();
let before: unknown;
let kvBefore: string | null;

/** A stream with a publisher and a viewer, whose state every fuzz case must leave untouched. */
beforeAll(async () => {
  edge = newEdge();
  s = uniqueStream("fuzz");
  key = await createStream(s, { maxViewers: 5 });
  await hook(publish("live", s, key, { ...edge, client: "pub00001" }));
  await hook(play("live", s, { ...edge, client: "view0001" }));
  before = await streamState(s);
  kvBefore = await env.CATALOGUE.get(`stream:__defaultVhost__/live/${s}`);
});

async function expectUntouched() {
  expect(await streamState(s)).toEqual(before);
  expect(await env.CATALOGUE.get(`stream:__defaultVhost__/live/${s}`)).toBe(kvBefore);
}

const deep = (depth: number) => "[".repeat(depth) + "]".repeat(depth);
const nasty = fc.oneof(
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.string({ minLength: 4097, maxLength: 6000 }),
  fc.string({ unit: fc.integer({ min: 0, max: 31 }).map((c) => String.fromCharCode(c)), minLength: 1, maxLength: 8 }),
);
const wrongType = fc.oneof(
  fc.integer(),
  // Not NaN or ±Infinity: JSON has no such numbers and writes them as null, which an optional field (vhost, param) reads as absent.
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.boolean(),
  fc.array(fc.jsonValue(), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.jsonValue(), { maxKeys: 3 }),
  fc.integer({ min: 1, max: 3000 }).map((d) => JSON.parse(deep(Math.min(d, 500)))),
);
const REQUIRED = ["action", "server_id", "service_id", "client_id", "app", "stream"] as const;
// "ip" is no input to refuse: it is cleaned, never a reason for a 4xx (see the test below).
const OPTIONAL = ["vhost", "param"] as const;

/** A real SRS body for the fuzz stream, made invalid in one way. */
const brokenHook = fc.oneof(
  fc.record({ base: fc.constantFrom("on_publish", "on_play"), field: fc.constantFrom(...REQUIRED), how: fc.constant("delete" as const) }),
  fc.record({ base: fc.constantFrom("on_publish", "on_play"), field: fc.constantFrom(...REQUIRED, ...OPTIONAL), how: wrongType }),
  fc.record({ base: fc.constantFrom("on_publish", "on_play"), field: fc.constantFrom("server_id", "service_id", "client_id", "app", "stream", "vhost"), how: nasty }),
).map(({ base, field, how }) => {
  const body: Record<string, unknown> =
    base === "on_publish" ? publish("live", s, key, { ...edge, client: "fuzz0001" }) : play("live", s, { ...edge, client: "fuzz0001" });
  if (how === "delete") delete body[field];
  // A control character is allowed in none of these fields, so even a short string is invalid.
  else if (typeof how === "string") body[field] = `${how}\u0001`;
  else body[field] = how;
  return JSON.stringify(body);
});

function expectClear4xx(r: { status: number; body: any }, input: string) {
  expect(r.status, input.slice(0, 120)).toBeGreaterThanOrEqual(400);
  expect(r.status, input.slice(0, 120)).toBeLessThan(500);
  expect(typeof r.body.reason === "string" && r.body.reason.length > 0, JSON.stringify(r.body)).toBe(true);
}

describe("fuzzing the hook endpoint", () => {
  it("a real body broken in one way (missing field, wrong type, huge or control-character string, deep nesting) is a 4xx that changes nothing", async () => {
    await fc.assert(
      fc.asyncProperty(brokenHook, async (text) => expectClear4xx(await hook(text), text)),
      { numRuns: RUNS },
    );
    await expectUntouched();
  });

  it("an ip of any type, length or content never fails a hook: the viewer is admitted", async () => {
    const open = uniqueStream("fuzzip");
    await createStream(open);
    let n = 0;
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.jsonValue({ maxDepth: 2 }), nasty), async (ip) => {
        const r = await hook({ ...play("live", open, { ...edge, client: `ip${++n}` }), ip });
        expect(r, String(JSON.stringify(ip)).slice(0, 80)).toEqual({ status: 200, body: { code: 0 } });
      }),
      { numRuns: RUNS },
    );
    await expectUntouched();
  });

  it("broken JSON text (truncated, garbage, raw control bytes) is a 400", async () => {
    const good = JSON.stringify(publish("live", s, key, { ...edge, client: "fuzz0002" }));
    const text = fc.oneof(
      fc.integer({ min: 1, max: good.length - 1 }).map((n) => good.slice(0, n)),
      fc.string({ maxLength: 200 }).filter((t) => { try { JSON.parse(t); return false; } catch { return true; } }),
      fc.integer({ min: 0, max: 31 }).filter((c) => c !== 9 && c !== 10 && c !== 13).map((c) => good.replace("fuzz0002", `fu${String.fromCharCode(c)}zz`)),
      fc.integer({ min: 10, max: 20000 }).map((d) => `{"action":"on_play","x":${deep(d)}`),
      // Valid JSON nested deeper than any parser's patience: still a plain 400.
      fc.integer({ min: 1000, max: 30000 }).map((d) => `{"action":"on_play","server_id":${deep(d)}}`),
    );
    await fc.assert(fc.asyncProperty(text, async (t) => {
      const r = await hook(t);
      expectClear4xx(r, t);
      expect(r.status).toBe(400);
    }), { numRuns: RUNS });
    await expectUntouched();
  });

  it("any JSON value at all is answered below 500, with a reason whenever it is refused", async () => {
    await fc.assert(fc.asyncProperty(fc.jsonValue({ maxDepth: 4 }), async (value) => {
      const r = await hook(JSON.stringify(value));
      expect(r.status).toBeLessThan(500);
      if (r.status !== 200) expectClear4xx(r, JSON.stringify(value));
    }), { numRuns: RUNS });
    await expectUntouched();
  });

  it("heartbeats of any shape are answered below 500 and never change a stream", async () => {
    const beat = fc.oneof(
      fc.jsonValue({ maxDepth: 3 }),
      // A well-formed new service for the stream's own server is a restart, which ends its sessions by design:
      // service is fuzzed on another server.
      fc.record({ field: fc.constantFrom("server", "service", "device_id", "ip", "pid"), how: fc.oneof(wrongType, nasty) }).map(({ field, how }) => ({
        ...heartbeat(field === "service" ? bystander : edge),
        [field]: how,
      })),
    );
    await fc.assert(fc.asyncProperty(beat, async (b) => {
      const r = await hook(JSON.stringify(b), undefined, "/heartbeat");
      expect(r.status).toBeLessThan(500);
      if (r.status !== 200) expectClear4xx(r, JSON.stringify(b));
    }), { numRuns: RUNS });
    await expectUntouched();
  });
});

describe("fuzzing the admin API", () => {
  const validPolicy = (v: unknown) =>
    typeof v === "object" && v !== null && !Array.isArray(v) &&
    Object.entries(v).every(([k, x]) =>
      (k === "maxViewers" && (x === null || (Number.isSafeInteger(x) && (x as number) >= 0))) ||
      (k === "playAuth" && (x === "open" || x === "token")) ||
      (k === "rotateKey" && typeof x === "boolean"));

  it("an invalid PUT body is a 400 with a reason and changes nothing", async () => {
    const body = fc.oneof(
      fc.jsonValue({ maxDepth: 3 }).filter((v) => !validPolicy(v)).map((v) => JSON.stringify(v)),
      fc.record({ field: fc.constantFrom("maxViewers", "playAuth", "rotateKey"), how: fc.oneof(wrongType, nasty, fc.integer({ max: -1 })) })
        .filter(({ field, how }) => !validPolicy({ [field]: how }))
        .map(({ field, how }) => JSON.stringify({ maxViewers: 5, [field]: how })),
      fc.string({ maxLength: 100 }).filter((t) => { try { JSON.parse(t); return false; } catch { return t.length > 0; } }),
    );
    await fc.assert(fc.asyncProperty(body, async (text) => {
      const r = await admin("PUT", `/streams/live/${s}`, text);
      expect(r.status, text.slice(0, 100)).toBe(400);
      expect(typeof r.body.error).toBe("string");
    }), { numRuns: RUNS });
    await expectUntouched();
  });

  it("any app, stream or vhost in the path is answered below 500, and never touches another stream", async () => {
    const segment = fc.oneof(fc.string({ maxLength: 200 }), nasty, fc.constantFrom("..", ".", "%", "%2F", "%00", "a%2Fb", "__defaultVhost__"));
    await fc.assert(fc.asyncProperty(segment, segment, segment, async (app, stream, vhost) => {
      const path = `/streams/${encodeURIComponent(app)}/${encodeURIComponent(stream)}?vhost=${encodeURIComponent(vhost)}`;
      for (const [method, body] of [["GET", undefined], ["PUT", {}], ["DELETE", undefined], ["POST", { ttl: 60 }]] as const) {
        const r = await admin(method, method === "POST" ? path.replace("?", "/tokens?") : path, body);
        expect(r.status, `${method} ${path}`).toBeLessThan(500);
        if (r.status >= 400) expect(typeof r.body.error).toBe("string");
      }
    }), { numRuns: 60 });
    await expectUntouched();
  });
});
