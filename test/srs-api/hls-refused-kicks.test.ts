/**
 * Adversarial tests of 82e916b (a refused HLS viewer that chose its own hls_ctx is kicked through
 * SRS's API: src/srs/hook.ts StartHook.servedIfRefused, src/srs/routes.ts kickRefused).
 *
 * What SRS 7 does (ossrs/srs trunk, srs_app_http_static.cpp SrsHlsStream::serve_m3u8_ctx and
 * srs_protocol_utility.cpp srs_parse_query_string):
 * - the ctx is `r->query_get("hls_ctx")`, read from a map built by srs_parse_query_string: the raw
 *   query (no percent-decoding, "+" stays "+") split on "=", ",", "&&", "&" and ";" into
 *   alternating keys and values, `query[k] = v`, so the LAST value of a repeated key wins;
 * - serve_new_session sets the context id (the hook's client_id) to that ctx, registers the client
 *   and sends on_play with param = "?" + the raw query;
 * - whatever on_play answers (403, 400, 500, a timeout), serve_m3u8_ctx then calls alive(ctx), so
 *   the session is kept and the client's next playlist request with that ctx is served with no hook.
 *
 * So every answer other than "allow" to an HLS on_play whose client chose its ctx must be followed
 * by a kick, and "chose its ctx" must be decided as SRS parses the query, not as URLSearchParams does.
 *
 * Runs in the "srs-api" project (SRS_API_URL set): vitest.config.mts lists this file in SRS_API_TESTS.
 */
import { describe, expect, it, vi } from "vitest";
import { ServerRegistry } from "../../src/server/registry";
import { ViewerShard } from "../../src/viewers/shard";
import { exports } from "cloudflare:workers";
import { createStream, HOOK_SECRET, hlsPlay, hook, play, streamState, uniqueStream } from "../srs";
import { ALLOW, edgeWithApi, installFakeSrs, kickedOn, type FakeSrs } from "../fake-srs";
import { retryable, until } from "../fleet";

installFakeSrs();

/** A stream with a cap of 1, its one slot taken, and an edge whose SRS has `clients`. */
async function fullStream(clients: string[]) {
  const { edge, fake } = await edgeWithApi(["view0001", ...clients]);
  const s = uniqueStream();
  await createStream(s, { maxViewers: 1 });
  expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
  return { edge, fake, s };
}

/** Waits for the background kicks of the hooks sent so far (a control kick queued last is done). */
async function settle(fake: FakeSrs, edge: { server: string; service: string }, s: string) {
  fake.clients.add("control9");
  expect((await hook(hlsPlay(s, { ...edge, client: "control9" }, "?hls_ctx=control9"))).body.code).toBe(4005);
  const deadline = Date.now() + 15_000;
  while (!kickedOn(fake, "control9") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  expect(kickedOn(fake, "control9")).toBe(true);
  // The control kick was queued after the others, in the same registry shard: they ran no later, mostly. A test that
  // expects a kick still waits for it (until): kicks run side by side, and a queueing retried may come after the control's.
  await new Promise((r) => setTimeout(r, 200));
}

describe("SRS parses the query its own way: any refused HLS on_play that names hls_ctx is kicked", () => {
  it("holds: the plain form ?hls_ctx=<client_id> is kicked (baseline for the tests below)", async () => {
    const { edge, fake, s } = await fullStream(["hlsown01"]);
    expect((await hook(hlsPlay(s, { ...edge, client: "hlsown01" }, "?hls_ctx=hlsown01"))).body.code).toBe(4005);
    await settle(fake, edge, s);
    await until(() => kickedOn(fake, "hlsown01"));
    expect(kickedOn(fake, "hlsown01")).toBe(true);
  });

  it("must not happen (fixed): a repeated hls_ctx (SRS takes the LAST value as the session id) escaped the kick", async () => {
    const { edge, fake, s } = await fullStream(["hlsown02"]);
    // GET /live/<s>.m3u8?hls_ctx=decoy&hls_ctx=hlsown02: SRS's query["hls_ctx"] is "hlsown02" (query[k] = v, last wins).
    expect((await hook(hlsPlay(s, { ...edge, client: "hlsown02" }, "?hls_ctx=decoy&hls_ctx=hlsown02"))).body.code).toBe(4005);
    await settle(fake, edge, s);
    // must not happen: the viewer refused for the cap keeps session hlsown02 in SRS and watches past the cap
    // (its next request ?hls_ctx=hlsown02 is served with no hook), exactly the hole 82e916b set out to close.
    await until(() => kickedOn(fake, "hlsown02"));
    expect(kickedOn(fake, "hlsown02")).toBe(true);
  });

  it('must not happen (fixed): ";" (and ",") separate parameters for SRS, not for URLSearchParams: ?x=1;hls_ctx=<id> escaped the kick', async () => {
    const { edge, fake, s } = await fullStream(["hlsown03", "hlsown04"]);
    expect((await hook(hlsPlay(s, { ...edge, client: "hlsown03" }, "?x=1;hls_ctx=hlsown03"))).body.code).toBe(4005);
    expect((await hook(hlsPlay(s, { ...edge, client: "hlsown04" }, "?x=1,hls_ctx=hlsown04"))).body.code).toBe(4005);
    await settle(fake, edge, s);
    // must not happen: SRS reads hls_ctx=hlsown03 / hlsown04 (srs_parse_query_string splits on ";" and ","), keeps
    // the refused session and serves it; streamgate sees x="1;hls_ctx=hlsown03" and no hls_ctx, so it never kicks.
    await until(() => kickedOn(fake, "hlsown03") && kickedOn(fake, "hlsown04"));
    expect([kickedOn(fake, "hlsown03"), kickedOn(fake, "hlsown04")]).toEqual([true, true]);
  });

  it('must not happen (fixed): SRS does not percent-decode the query: ?hls_ctx=a%2Bb and ?hls_ctx=a+b escaped the kick', async () => {
    const { edge, fake, s } = await fullStream(["own%2B05", "own+06"]);
    // SRS's ctx (and so client_id) is the raw "own%2B05"; URLSearchParams decodes it to "own+05".
    expect((await hook(hlsPlay(s, { ...edge, client: "own%2B05" }, "?hls_ctx=own%2B05"))).body.code).toBe(4005);
    // SRS's ctx is "own+06"; URLSearchParams reads "own 06".
    expect((await hook(hlsPlay(s, { ...edge, client: "own+06" }, "?hls_ctx=own+06"))).body.code).toBe(4005);
    await settle(fake, edge, s);
    // must not happen: both refused sessions stay in SRS and are served past the cap.
    await until(() => kickedOn(fake, "own%2B05") && kickedOn(fake, "own+06"));
    expect([kickedOn(fake, "own%2B05"), kickedOn(fake, "own+06")]).toEqual([true, true]);
  });
});

describe("answers other than a refusal decision: SRS keeps the session all the same", () => {
  it("must not happen (fixed): a param longer than LIMITS.param (4096) got a 400, and the session SRS keeps was never kicked", async () => {
    const { edge, fake, s } = await fullStream(["hlsown07"]);
    // GET /live/<s>.m3u8?hls_ctx=hlsown07&pad=xxxx…: any client can make its query long; SRS forwards it whole.
    const r = await hook(hlsPlay(s, { ...edge, client: "hlsown07" }, `?hls_ctx=hlsown07&pad=${"x".repeat(4100)}`));
    expect(r.status).toBe(400);
    await settle(fake, edge, s);
    // must not happen: SRS takes the 400 as a failed on_play, calls alive("hlsown07") anyway, and serves the
    // session's next request with no hook: a padded query is a way past the cap, a missing token or a revocation
    // that needs no guessing at all.
    await until(() => kickedOn(fake, "hlsown07"));
    expect(kickedOn(fake, "hlsown07")).toBe(true);
  });
});

describe("a name the gate refuses is still a session SRS serves", () => {
  it("must not happen (fixed): a 400 for the vhost or the app salvaged no session to kick, and SRS served the stream's playlist to that session", async () => {
    // SRS names an HLS session's stream from the request, not from what it serves: the app from the path as it came
    // (GET /live/./<s>.m3u8: app "live/.", SrsRequest::strip trims only end slashes; seen in e2e run 51), and a vhost
    // outside the rules is one more name the hook may carry (SRS 7.0.18 sent __defaultVhost__ for ?vhost=a!b). The playlist it then
    // serves is the file at that path, the stream's own. The hook's 400 (app or vhost outside the name rules) kicked
    // nobody: the salvage (now servedSessionOf) needed a name that parses, so the player's next request with its hls_ctx was served.
    const { edge, fake, s } = await fullStream(["hlsapp13", "hlsvho14"]);
    const app = await hook({ ...hlsPlay(s, { ...edge, client: "hlsapp13" }, "?hls_ctx=hlsapp13"), app: "live/." });
    const vhost = await hook({ ...hlsPlay(s, { ...edge, client: "hlsvho14" }, "?vhost=a!b&hls_ctx=hlsvho14"), vhost: "a!b" });
    expect([app.status, vhost.status]).toEqual([400, 400]);
    await settle(fake, edge, s);
    await until(() => kickedOn(fake, "hlsapp13") && kickedOn(fake, "hlsvho14"));
    expect([kickedOn(fake, "hlsapp13"), kickedOn(fake, "hlsvho14")]).toEqual([true, true]);
  });
});

describe("a hook SRS sends that cannot be read is still a session SRS serves", () => {
  /** Sends the hook's bytes as they are (SRS writes a query's raw bytes into the hook, whatever they are). */
  async function rawHook(bytes: Uint8Array) {
    const res = await exports.default.fetch(`http://gate.test/hooks/srs/${HOOK_SECRET}`, { method: "POST", headers: { "content-type": "application/json" }, body: bytes });
    return { status: res.status, body: (await res.json()) as { code: number; reason: string } };
  }
  const utf8 = (text: string) => new TextEncoder().encode(text);

  it("must not happen (fixed): a hook over the 64 KiB body (a long X-Forwarded-For or query: SRS takes 80 KiB of request head) was a 413, and nobody kicked the session", async () => {
    const { edge, fake, s } = await fullStream(["hlslng15", "hlsipl16"]);
    // The padding before hls_ctx: the part of param past the cut is never read.
    const longParam = await rawHook(utf8(JSON.stringify(hlsPlay(s, { ...edge, client: "hlslng15" }, `?pad=${"x".repeat(70_000)}&hls_ctx=hlslng15`))));
    // A long X-Forwarded-For (SRS's ip of an HTTP client) before the names: stream, app and vhost all past the cut.
    const longIp = await rawHook(utf8(JSON.stringify({ ...hlsPlay(s, { ...edge, client: "hlsipl16" }, "?hls_ctx=hlsipl16"), ip: "1".repeat(70_000) })));
    // SRS's API then answers for that client with its ip as long (SrsStatisticClient::dumps): about 70 KB, over the
    // 64 KiB that once bounded an answer, so every question before the kick failed as "not SRS" (e2e run 51).
    fake.details.set("hlsipl16", { ip: "1".repeat(70_000) });
    expect([longParam.status, longIp.status]).toEqual([413, 413]);
    await settle(fake, edge, s);
    // must not happen: the 413 is a failed on_play for SRS, which keeps the session and serves the player's next
    // request with that hls_ctx with no hook: past the cap, a token and a revocation, by padding the query.
    await until(() => kickedOn(fake, "hlslng15") && kickedOn(fake, "hlsipl16"));
    expect([kickedOn(fake, "hlslng15"), kickedOn(fake, "hlsipl16")]).toEqual([true, true]);
  });

  it("must not happen (fixed): a byte that is not UTF-8 in the hook (SRS writes X-Forwarded-For into ip raw) made it a 400, and nobody kicked the session", async () => {
    const { edge, fake, s } = await fullStream(["hlsutf17"]);
    const text = JSON.stringify({ ...hlsPlay(s, { ...edge, client: "hlsutf17" }, "?hls_ctx=hlsutf17"), ip: "MARK1.2.3.4" });
    const bytes = utf8(text);
    const at = text.indexOf("MARK");
    bytes[at] = 0xff; // "\xffARK1.2.3.4": not UTF-8
    const r = await rawHook(bytes);
    expect([r.status, r.body.reason]).toEqual([400, "body is not valid UTF-8"]);
    await settle(fake, edge, s);
    await until(() => kickedOn(fake, "hlsutf17"));
    expect(kickedOn(fake, "hlsutf17")).toBe(true);
  });

  it("holds: a 413 for an RTMP on_play (its stream, before the cut, no playlist) kicks nobody: SRS closes a refused RTMP client itself", async () => {
    const { edge, fake, s } = await fullStream(["rtmplg18"]);
    const r = await rawHook(utf8(JSON.stringify({ ...play("live", s, { ...edge, client: "rtmplg18" }), param: `?pad=${"x".repeat(70_000)}&hls_ctx=rtmplg18` })));
    expect(r.status).toBe(413);
    await settle(fake, edge, s);
    expect(kickedOn(fake, "rtmplg18")).toBe(false);
  });
});

describe("a flaky platform between the hook and the registry", () => {
  it("must not happen (fixed): one retryable error queuing the kick (the platform's \"Network connection lost.\") dropped the kick", async () => {
    const { edge, fake, s } = await fullStream(["hlsown09"]);
    const real = ServerRegistry.prototype.queueKicks;
    let failures = 0;
    vi.spyOn(ServerRegistry.prototype, "queueKicks").mockImplementation(function (this: ServerRegistry, ...args: Parameters<ServerRegistry["queueKicks"]>) {
      if (failures++ === 0) throw retryable();
      return real.apply(this, args);
    });
    expect((await hook(hlsPlay(s, { ...edge, client: "hlsown09" }, "?hls_ctx=hlsown09"))).body.code).toBe(4005);
    await settle(fake, edge, s);
    // must not happen: every other cross-object call of a hook is retried on a retryable error (withRetry); this one is
    // fire-and-forget, so one transient error leaves the refused session served by SRS for good (logged only).
    await until(() => kickedOn(fake, "hlsown09"));
    expect(kickedOn(fake, "hlsown09")).toBe(true);
  });
});

describe("fail closed is not closed for these sessions", () => {
  it("must not happen (fixed): after a 5xx answer (the viewer shard failed) SRS keeps the session as for a refusal, and nobody kicked it", async () => {
    const { edge, fake, s } = await fullStream(["hlsown12"]);
    vi.spyOn(ViewerShard.prototype, "play").mockImplementationOnce(async () => {
      throw new Error("viewer shard broke");
    });
    const r = await hook(hlsPlay(s, { ...edge, client: "hlsown12" }, "?hls_ctx=hlsown12"));
    expect(r.status).toBeGreaterThanOrEqual(500);
    await settle(fake, edge, s);
    // must not happen: a "fail closed" answer to an HLS viewer that chose its ctx is an admission in SRS 7 (alive()
    // runs after the failed hook): during any incident of the gate those viewers watch past caps and tokens.
    await until(() => kickedOn(fake, "hlsown12"));
    expect(kickedOn(fake, "hlsown12")).toBe(true);
  });
});

describe("holds", () => {
  it("holds: the hook answers at once when the edge's API hangs (the kick runs in the background)", async () => {
    // A refusal that asks SRS nothing itself (a cap refusal first checks the slot holders for ghosts, which waits
    // for the API up to 2 s by design): a stream that does not exist.
    const { edge, fake } = await edgeWithApi(["hlsown08"]);
    fake.hang = true;
    const began = Date.now();
    const r = await hook(hlsPlay(uniqueStream("nosuch"), { ...edge, client: "hlsown08" }, "?hls_ctx=hlsown08"));
    expect(r.status).toBe(403);
    expect(Date.now() - began, "not the hanging API's 2 s (a margin for a loaded machine)").toBeLessThan(1500);
    // The kick is queued meanwhile and reaches the (hanging) API.
    await until(() => fake.calls.some((c) => c.path === "/api/v1/clients/hlsown08"));
    expect(fake.calls.some((c) => c.path === "/api/v1/clients/hlsown08")).toBe(true);
    fake.hang = false;
  });

  it("holds: a refused HLS hook carrying an admitted viewer's id (on ANOTHER stream of the server) is not kicked: the kick would name that viewer too", async () => {
    // SRS's API names a client by id alone; streamgate admitted that id here, so it kicks nobody blind. (The refused request
    // stays served: knowing an admitted client's random id is the price of that bypass.)
    const { edge, fake, s } = await fullStream([]);
    const other = uniqueStream();
    await createStream(other, { maxViewers: 5 });
    fake.clients.add("rtmp0010");
    expect(await hook(play("live", other, { ...edge, client: "rtmp0010" }))).toEqual(ALLOW);
    expect((await hook(hlsPlay(s, { ...edge, client: "rtmp0010" }, "?hls_ctx=rtmp0010"))).body.code).toBe(4005);
    await settle(fake, edge, s);
    expect(kickedOn(fake, "rtmp0010")).toBe(false);
    expect(kickedOn(fake, "view0001")).toBe(false);
    expect((await streamState(other)).viewers).toBe(1);
    expect((await streamState(s)).viewers).toBe(1);
  });

  it("holds: an uppercase HLS_CTX is not SRS's hls_ctx (its map is case-sensitive): SRS chose the id, nothing to kick", async () => {
    const { edge, fake, s } = await fullStream(["srsctx11"]);
    expect((await hook(hlsPlay(s, { ...edge, client: "srsctx11" }, "?HLS_CTX=srsctx11"))).body.code).toBe(4005);
    await settle(fake, edge, s);
    expect(kickedOn(fake, "srsctx11")).toBe(false);
  });
});
