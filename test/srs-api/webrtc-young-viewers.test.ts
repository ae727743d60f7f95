/**
 * WebRTC players and ghost checks (src/srs/hook.ts isWebrtc, src/viewers/shard-ghosts.ts YOUNG_MS). SRS 7 puts a
 * WHEP player in its API only once the on_play answer reached it (srs_app_rtc_api.cpp: the hook, then
 * create_session), so a refusal's ghost check right after that answer finds no such client. Before the fix
 * it ended the just-admitted player as a ghost and admitted the next viewer: SRS then served one viewer over
 * the cap (and, with a session limit, two screens of one ticket). A twin (a second offer with the player's
 * client id, refused 4007: src/viewers/admission.ts webrtcTwin) does not make the player young again. This file
 * runs with SRS_API_URL set.
 */
import { describe, expect, it } from "vitest";
import { createStream, hook, play, streamState, uniqueStream, whepPlay } from "../srs";
import { ALLOW, edgeWithApi, installFakeSrs } from "../fake-srs";
import { at, events, useFakeClock } from "../fleet";
import { LIMIT, limited, playWith, tokenOf } from "../identity";

installFakeSrs();
useFakeClock();

const CAP = { status: 403, body: { code: 4005 } };
const ghostEnded = async (s: string, client: string) => (await events(s)).some((e: any) => e.action === "ghost" && e.client === client);

describe("a WebRTC player just admitted is not taken for a ghost by the next refusal", () => {
  it("same edge, a full stream: the next viewer is refused while SRS's API does not have the WHEP player yet; 12 s on, a player that is still missing is a ghost", async () => {
    const { edge, fake } = await edgeWithApi(["rtmp0002"]);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    expect(await hook(whepPlay(s, { ...edge, client: "whep0001" }))).toEqual(ALLOW);
    // SRS has not created the WebRTC session yet: its API answers "not found" for whep0001.
    expect(await hook(play("live", s, { ...edge, client: "rtmp0002" }))).toMatchObject(CAP);
    expect(await streamState(s)).toMatchObject({ viewers: 1 });
    expect(await ghostEnded(s, "whep0001")).toBe(false);
    // The player never showed up in the API (it left, and its on_stop was lost): after YOUNG_MS it is a ghost.
    at(13_000);
    expect(fake.clients.has("whep0001")).toBe(false);
    expect(await hook(play("live", s, { ...edge, client: "rtmp0002" }))).toEqual(ALLOW);
    expect(await ghostEnded(s, "whep0001")).toBe(true);
    expect(await streamState(s)).toMatchObject({ viewers: 1 });
  });

  it("another edge, a player of SRS's legacy RTC API (tcUrl webrtc://): the viewer on the other edge is refused", async () => {
    const a = await edgeWithApi();
    const b = await edgeWithApi(["rtmp0002"]);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    expect(await hook({ ...play("live", s, { ...a.edge, client: "rtc00001" }), tcUrl: `webrtc://edge.example.com/live` })).toEqual(ALLOW);
    expect(await hook(play("live", s, { ...b.edge, client: "rtmp0002" }))).toMatchObject(CAP);
    expect(await streamState(s)).toMatchObject({ viewers: 1 });
    expect(await ghostEnded(s, "rtc00001")).toBe(false);
  });

  it("an RTMP viewer SRS's API does not have is a ghost at once, as before (only WebRTC players are spared)", async () => {
    const { edge } = await edgeWithApi(["rtmp0002"]);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    expect(await hook(play("live", s, { ...edge, client: "rtmp0001" }))).toEqual(ALLOW);
    expect(await hook(play("live", s, { ...edge, client: "rtmp0002" }))).toEqual(ALLOW);
    expect(await ghostEnded(s, "rtmp0001")).toBe(true);
  });

  it("one ticket, one screen: a second screen of the same viewer is refused (4016) while its WHEP screen is not in SRS's API yet", async () => {
    const { edge } = await edgeWithApi(["tv000002"]);
    const s = await limited();
    const token = await tokenOf(s, "alice");
    expect(await hook(whepPlay(s, { ...edge, client: "phone001" }, `token=${token}`))).toEqual(ALLOW);
    expect(await hook(playWith(s, edge, "tv000002", token))).toEqual(LIMIT);
    expect(await ghostEnded(s, "phone001")).toBe(false);
  });

  it("a second offer with the player's client id at 11 s is refused (4007) and keeps it young no longer: at 13 s a player SRS does not have is a ghost", async () => {
    const { edge, fake } = await edgeWithApi(["rtmp0002"]);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    expect(await hook(whepPlay(s, { ...edge, client: "whep0001" }))).toEqual(ALLOW);
    at(11_000);
    expect(await hook(whepPlay(s, { ...edge, client: "whep0001" }))).toMatchObject({ status: 403, body: { code: 4007 } });
    at(13_000);
    expect(fake.clients.has("whep0001")).toBe(false);
    expect(await hook(play("live", s, { ...edge, client: "rtmp0002" }))).toEqual(ALLOW);
    expect(await ghostEnded(s, "whep0001")).toBe(true);
  });
});
