/**
 * A ghost check's "not found" that SRS gave before the client came back with the same id. An HLS
 * player's session (its hls_ctx) expires in SRS and its on_stop is lost: a ghost. A cap refusal asks
 * SRS's API about it; while the answer ("not found", true when SRS gave it) is on its way back, the
 * player returns with the same hls_ctx, SRS registers the session again and sends on_play, which the
 * gate admits as a repeat of the session it still has (same process, client id and stream: its
 * admission time unchanged). The late "not found" must not end that live session: SRS now serves the
 * player with no further hook, so ending it lets it play uncounted, and its slot goes to another viewer
 * (the cap exceeded on SRS).
 */
import { describe, expect, it } from "vitest";
import { admin, createStream, hlsPlay, hook, play, streamState, uniqueStream } from "../srs";
import { ALLOW, edgeWithApi, installFakeSrs } from "../fake-srs";

installFakeSrs();

describe("a 'not found' on its way back while the client's on_play is admitted again", () => {
  it("does not end the session the repeat on_play just admitted: the refusal it was asked for stands", async () => {
    const { edge, fake } = await edgeWithApi(["hlsctx01", "view0002"]);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    expect(await hook(hlsPlay(s, { ...edge, client: "hlsctx01" }, "?hls_ctx=hlsctx01"))).toEqual(ALLOW);
    // SRS lets the HLS session go (2 × hls_window after the player's last request); its on_stop is lost.
    fake.clients.delete("hlsctx01");
    // The API answers a question about hlsctx01 as SRS has it when asked, but the answer takes a while to come back.
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let asked!: () => void;
    const askedP = new Promise<void>((r) => (asked = r));
    fake.override = async (req) => {
      const path = new URL(req.url).pathname;
      if (path !== "/api/v1/clients/hlsctx01") {
        fake.override = null;
        try {
          return await fake.handle(req);
        } finally {
          fake.override = overrideFn;
        }
      }
      const there = fake.clients.has("hlsctx01");
      asked();
      await released;
      return there ? Response.json({ ...fake.envelope(), client: { id: "hlsctx01" } }) : Response.json({ code: 2049 });
    };
    const overrideFn = fake.override;
    // A viewer at the cap: its refusal asks about hlsctx01.
    const refusal = hook(play("live", s, { ...edge, client: "view0002" }));
    await askedP;
    // Meanwhile the player is back with the same hls_ctx: SRS has the session again and asks the gate.
    fake.clients.add("hlsctx01");
    expect(await hook(hlsPlay(s, { ...edge, client: "hlsctx01" }, "?hls_ctx=hlsctx01"))).toEqual(ALLOW);
    release();
    const r = await refusal;
    fake.override = null;
    // SRS serves hlsctx01 (no further hook): its session must stand, and the viewer at the cap be refused.
    expect(fake.clients.has("hlsctx01")).toBe(true);
    const events = (await admin("GET", `/streams/live/${s}/events`)).body.events;
    expect(events.filter((e: any) => e.action === "ghost" && e.client === "hlsctx01")).toEqual([]);
    expect(r.body.code).toBe(4005);
    expect(await streamState(s)).toMatchObject({ viewers: 1 });
  });
});
