/**
 * An HLS player chooses its own client id: SRS 7 makes the playlist request's `hls_ctx` the session's
 * id and the hook's client_id (srs_app_http_static.cpp, SrsHlsStream::serve_new_session), read from
 * the raw query (srs_parse_query_string: no percent-decoding; only "=", ",", "&&", "&" and ";" split
 * it), so "own+06", "a:b@c" or "own%2B05" are ids SRS holds exactly so spelled.
 *
 * SRS's HTTP API names a client by the last segment of the path as it arrives: SrsGoApiClients reads
 * SrsHttpMessage::parse_rest_id, which cuts SrsHttpUri's raw path (SrsHttpUri::initialize keeps the
 * bytes between the slashes; SrsHttpUri::path_unescape exists but nothing outside the unit tests
 * calls it). So GET or DELETE /api/v1/clients/own%2B06 asks about a client "own%2B06", not "own+06":
 * SRS answers {"code":2049} (not found), which streamgate reads as "gone".
 *
 * What a user notices: a refused HLS viewer whose hls_ctx carries such a character is never kicked
 * ("already gone"), and SRS serves its next playlist request with no hook, past a missing token, the
 * cap or a revocation; and an admitted one is ended as a ghost when a refusal rests on it, so its slot
 * goes to another viewer while SRS still serves it.
 *
 * test/fake-srs.ts used to percent-decode the path, which SRS does not; it now compares the segment as
 * it arrives, as SRS does. Runs in the "srs-api" project (SRS_API_URL set).
 */
import { describe, expect, it, vi } from "vitest";
import { admin, createStream, hlsPlay, hook, play, streamState, uniqueStream } from "../srs";
import { ALLOW, edgeWithApi, installFakeSrs, type FakeSrs } from "../fake-srs";

installFakeSrs();

const CLIENTS = "/api/v1/clients/";
const asked = (fake: FakeSrs, method: string, id: string) => fake.calls.some((c) => c.method === method && c.path === CLIENTS + id);

describe("client ids SRS holds as the player spelled them reach SRS's API under that spelling", () => {
  it("a refused HLS viewer whose hls_ctx has '+', ':', '@' or a '%' escape is kicked by a DELETE whose path SRS reads as that id", async () => {
    const ids = ["own+06", "a:b@c", "own%2B05", "x$y|z"];
    const { edge, fake } = await edgeWithApi(ids);
    const s = uniqueStream();
    await createStream(s, { playAuth: "token" });
    for (const id of ids) expect((await hook(hlsPlay(s, { ...edge, client: id }, `?hls_ctx=${id}`))).body.code).toBe(4010);
    // Before: GET /api/v1/clients/own%2B06 etc.: SRS has no such client, "already gone", no DELETE; the refused
    // sessions stay in SRS and their next playlist requests are served without a token.
    await vi.waitFor(() => expect(ids.filter((id) => !asked(fake, "DELETE", id))).toEqual([]), { timeout: 10_000, interval: 50 });
    expect(ids.filter((id) => fake.clients.has(id))).toEqual([]);
  });

  it("an admitted HLS viewer whose hls_ctx has '+' is not ended as a ghost when the cap refuses the next viewer: SRS still serves it", async () => {
    const { edge, fake } = await edgeWithApi(["cap+0001", "view0002"]);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    expect(await hook(hlsPlay(s, { ...edge, client: "cap+0001" }, "?hls_ctx=cap+0001"))).toEqual(ALLOW);
    // The cap is reached: before refusing, the shard asks SRS whether its viewers are still there.
    const r = await hook(play("live", s, { ...edge, client: "view0002" }));
    // Before: the question named "cap%2B0001", SRS answered "not found", the HLS viewer was ended as a ghost of a lost
    // on_stop and view0002 admitted: two viewers watching a stream capped at 1.
    expect(r.body.code).toBe(4005);
    const state = await streamState(s);
    expect(state.viewers).toBe(1);
    expect(asked(fake, "GET", "cap+0001")).toBe(true);
  });

  it("an id no URL can carry as SRS holds it (a '\"', '<', '{', '^' or '/') is never asked about, so never taken for gone", async () => {
    const ids = ['q"1', "lt<1", "br{1}", "up^1", "sl/1"];
    const { edge, fake } = await edgeWithApi([...ids, "view0099"]);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 5 });
    for (const id of ids) expect(await hook(hlsPlay(s, { ...edge, client: id }, `?hls_ctx=${id}`))).toEqual(ALLOW);
    // Full: a refusal rests on these five; none of them can be asked about, so none is ended as a ghost.
    expect((await hook(play("live", s, { ...edge, client: "view0099" }))).body.code).toBe(4005);
    expect((await streamState(s)).viewers).toBe(5);
    // An operator's end cannot kick them either: the decision log says so, rather than "already gone".
    await admin("DELETE", `/streams/live/${s}/sessions`);
    await vi.waitFor(
      async () => {
        const events = (await admin("GET", `/streams/live/${s}/events`)).body.events.filter((e: any) => e.action === "kick");
        expect(events.map((e: any) => e.reason).filter((r: string) => r.includes("cannot be named in SRS's API"))).toHaveLength(ids.length);
      },
      { timeout: 10_000, interval: 50 },
    );
    expect(fake.calls.filter((c) => c.path.startsWith(CLIENTS) && c.path !== CLIENTS + "view0099")).toEqual([]);
  });
});

describe("an hls_ctx longer than a session id may be", () => {
  // SRS takes any hls_ctx as the session id (serve_new_session checks no length) and registers it in its statistics,
  // so DELETE /api/v1/clients/<that id> ends it, and it keeps a refused session and serves it with no hook, no token,
  // past the cap. Before: the hook's 400 salvaged no session for a client_id over 64 characters, and then (fixed
  // again) none over 4,096 ("bounded as param is"), though a param over 4,096 is itself a reason for the 400, not a
  // bound on what SRS holds.
  it.each([
    [65, "a refused HLS viewer whose chosen hls_ctx is 65 characters (a 400: client_id over 64) is still kicked: SRS serves it after a 400 as after a refusal"],
    [5000, "must not happen (fixed): a refused HLS viewer whose chosen hls_ctx is longer than 4,096 characters (a param's limit) was never kicked"],
  ])("%i characters: %s", async (length) => {
    const id = "h".repeat(length);
    const { edge, fake } = await edgeWithApi([id]);
    const s = uniqueStream();
    await createStream(s, { playAuth: "token" });
    expect((await hook(hlsPlay(s, { ...edge, client: id }, `?hls_ctx=${id}`))).status).toBe(400);
    await vi.waitFor(() => expect(asked(fake, "DELETE", id)).toBe(true), { timeout: 10_000, interval: 50 });
    expect(fake.clients.has(id)).toBe(false);
  });
});
