/**
 * Adversarial tests of e92642a (src/http.ts readJson: a body with a content-length header and no
 * transfer-encoding header is read whole with request.arrayBuffer(), then checked against 64 KiB;
 * otherwise the chunked reader that stops past 64 KiB).
 *
 * Requests are constructed here (a Request may carry any content-length next to any body) and
 * handed to the Worker's fetch as the runtime would (worker.fetch) or through the loopback
 * (exports.default.fetch). Runs in the "gate" project: no setting needed.
 */
import { env, exports } from "cloudflare:workers";
import { createExecutionContext } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import worker from "../src/index";
import { MAX_BODY_BYTES, readJson } from "../src/http";
import { ADMIN_TOKEN, HOOK_SECRET, captured, createStream, streamState, uniqueStream } from "./srs";

const HOOK_URL = `http://gate.test/hooks/srs/${HOOK_SECRET}`;

/** A body stream of `chunks` chunks of `size` bytes that counts what the reader pulled from it. */
function countingStream(chunks: number, size = 16 * 1024, byte = "x") {
  const chunk = new TextEncoder().encode(byte.repeat(size));
  const pulled = { chunks: 0, bytes: 0 };
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (pulled.chunks < chunks) {
        pulled.chunks++;
        pulled.bytes += chunk.byteLength;
        controller.enqueue(chunk);
      } else controller.close();
    },
  });
  return { stream, pulled };
}

async function send(body: BodyInit | null, headers: Record<string, string>, url = HOOK_URL, method = "POST") {
  const res = await worker.fetch(new Request(url, { method, body, headers }), env, createExecutionContext());
  const text = await res.text();
  let json: any = text;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: res.status, body: json };
}

const connect = JSON.stringify(captured("on_connect"));

describe("readJson with a lying content-length", () => {
  it("must not happen (fixed): a content-length smaller than the body makes the Worker buffer the whole body before the 64 KiB check (the old reader stopped at 64 KiB)", async () => {
    // 8 MiB behind "content-length: 10". The answer is still 413, but only after every byte was pulled into memory:
    // the bound readJson promises ("refusing more than MAX_BODY_BYTES even when the client lies about Content-Length")
    // no longer bounds memory; a longer or endless stream grows the isolate until it is killed (every request on it fails).
    const { stream, pulled } = countingStream(512);
    const r = await send(stream, { "content-length": "10" });
    expect(r.status).toBe(413);
    // must not happen: ~8 MiB read for a declared 10 bytes, where the chunked reader stops at 64 KiB + one chunk.
    expect(pulled.bytes).toBeLessThanOrEqual(MAX_BODY_BYTES + 2 * 16 * 1024);
  });

  it("must not happen (fixed): the same through the Worker's own loopback fetch (exports.default.fetch): the lie is not caught by the runtime either", async () => {
    const { stream, pulled } = countingStream(512);
    const res = await exports.default.fetch(HOOK_URL, { method: "POST", body: stream, headers: { "content-length": "10" } });
    expect(res.status).toBe(413);
    await res.body?.cancel();
    // must not happen: the whole 8 MiB was buffered.
    expect(pulled.bytes).toBeLessThanOrEqual(MAX_BODY_BYTES + 2 * 16 * 1024);
  });

  it("holds: readJson itself refuses (413) a 100 KiB string body declared as 5 bytes, and accepts nothing over 64 KiB", async () => {
    const req = new Request(HOOK_URL, { method: "POST", body: `{"a":"${"x".repeat(100 * 1024)}"}`, headers: { "content-length": "5" } });
    await expect(readJson(req)).rejects.toMatchObject({ status: 413 });
  });

  it("holds: a content-length larger than the body: 413 if over 64 KiB as declared, else the body read as sent", async () => {
    expect((await send(connect, { "content-length": "100000" })).status).toBe(413);
    const r = await send(connect, { "content-length": "60000" });
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ code: 0 });
  });

  it("holds: exactly 64 KiB is accepted and 64 KiB + 1 refused, with and without a content-length", async () => {
    const pad = (n: number) => {
      const base = JSON.stringify({ ...captured("on_connect"), pageUrl: "" });
      return JSON.stringify({ ...captured("on_connect"), pageUrl: "y".repeat(n - new TextEncoder().encode(base).byteLength) });
    };
    const exact = pad(MAX_BODY_BYTES);
    const over = pad(MAX_BODY_BYTES + 1);
    expect(new TextEncoder().encode(exact).byteLength).toBe(MAX_BODY_BYTES);
    // pageUrl is not stored or limited: the on_connect is allowed.
    expect((await send(exact, { "content-length": String(MAX_BODY_BYTES) })).status).toBe(200);
    expect((await send(over, { "content-length": String(MAX_BODY_BYTES + 1) })).status).toBe(413);
    // The same bytes declared smaller (fast path, checked after the read) and streamed without a length (chunked reader).
    expect((await send(over, { "content-length": "1" })).status).toBe(413);
    const enc = new TextEncoder().encode(over);
    const chunked = new ReadableStream<Uint8Array>({ start(c) { for (let i = 0; i < enc.length; i += 1000) c.enqueue(enc.slice(i, i + 1000)); c.close(); } });
    expect((await send(chunked, {})).status).toBe(413);
  });
});

describe("readJson: odd headers and bodies answer as before (no 500)", () => {
  it('holds: content-length "0" with a body: the chunked reader reads it', async () => {
    const r = await send(connect, { "content-length": "0" });
    expect(r).toEqual({ status: 200, body: { code: 0 } });
  });

  it("holds: non-numeric, negative, hex, exponent, spaced and fractional content-lengths", async () => {
    for (const cl of ["abc", "-5", "0x20", "1e2", " 23 ", "1.5", "", "Infinity", "NaN", "10, 10"]) {
      const r = await send(connect, { "content-length": cl });
      expect([200, 413], `content-length ${JSON.stringify(cl)}: ${JSON.stringify(r)}`).toContain(r.status);
      if (cl === "Infinity") expect(r.status).toBe(413);
    }
  });

  it("holds: transfer-encoding next to content-length: the chunked reader, which stops at 64 KiB", async () => {
    const { stream, pulled } = countingStream(512);
    const r = await send(stream, { "content-length": "10", "transfer-encoding": "chunked" });
    expect(r.status).toBe(413);
    expect(pulled.bytes).toBeLessThanOrEqual(MAX_BODY_BYTES + 2 * 16 * 1024);
  });

  it("holds: an empty body with a content-length is a 400, not a 500", async () => {
    const r = await send("", { "content-length": "5" });
    expect(r.status).toBe(400);
    const r2 = await send(null, { "content-length": "5" });
    expect(r2.status).toBe(400);
  });

  it("holds: invalid UTF-8 is 400 on both paths, a BOM is accepted on both paths", async () => {
    const bad = new Uint8Array([...new TextEncoder().encode('{"action":"on_connect","x":"'), 0xff, 0xfe, ...new TextEncoder().encode('"}')]);
    expect((await send(bad, { "content-length": String(bad.byteLength) })).body.reason).toContain("UTF-8");
    expect((await send(new Blob([bad]).stream(), {})).body.reason).toContain("UTF-8");
    const bom = new Uint8Array([0xef, 0xbb, 0xbf, ...new TextEncoder().encode(connect)]);
    expect(await send(bom, { "content-length": String(bom.byteLength) })).toEqual({ status: 200, body: { code: 0 } });
    expect(await send(new Blob([bom]).stream(), {})).toEqual({ status: 200, body: { code: 0 } });
    // A truncated multi-byte sequence at the end (cut by a lying length elsewhere) is still a 400.
    const cut = new Uint8Array([...new TextEncoder().encode('{"a":"'), 0xe2, 0x82]);
    expect((await send(cut, { "content-length": String(cut.byteLength) })).status).toBe(400);
  });

  it("holds: admin routes read bodies the same way (413 past 64 KiB whatever the declared length, 400 for bad JSON)", async () => {
    const s = uniqueStream();
    await createStream(s);
    const url = `http://gate.test/admin/streams/live/${s}`;
    const auth = { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" };
    const big = JSON.stringify({ maxViewers: 3, note: "z".repeat(70 * 1024) });
    expect((await send(big, { ...auth, "content-length": "20" }, url, "PUT")).status).toBe(413);
    expect((await send("{not json", { ...auth, "content-length": "9" }, url, "PUT")).status).toBe(400);
    const ok = await send(JSON.stringify({ maxViewers: 3 }), { ...auth, "content-length": "0" }, url, "PUT");
    expect(ok.status, JSON.stringify(ok.body)).toBeLessThan(300);
    expect((await streamState(s)).policy?.maxViewers ?? (await streamState(s)).maxViewers).toBe(3);
  });
});
