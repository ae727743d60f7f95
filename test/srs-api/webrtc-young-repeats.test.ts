/**
 * WebRTC players young for ghost checks (src/viewers/shard.ts YOUNG_MS) and their twins (webrtcTwin): SRS never
 * retries an on_play, and names a WHEP session by its HTTP connection's id, so a second on_play with a live
 * player's client id from another hook is a second session on that connection, refused (4007). It does not make
 * the player young again: a check past 12 s from the player's own admission may end it. This file runs with
 * SRS_API_URL set.
 */
import { describe, expect, it } from "vitest";
import { createStream, hook, play, uniqueStream, whepPlay } from "../srs";
import { ALLOW, edgeWithApi, installFakeSrs } from "../fake-srs";
import { at, events, useFakeClock } from "../fleet";

installFakeSrs();
useFakeClock();

const TWIN = { status: 403, body: { code: 4007 } };
const ghostEnded = async (s: string, client: string) => (await events(s)).some((e: any) => e.action === "ghost" && e.client === client);

describe("a twin of a WebRTC player does not keep it young", () => {
  it("a second offer with the player's client id at 11 s is refused; at 13 s a player SRS does not have is a ghost", async () => {
    const { edge, fake } = await edgeWithApi(["rtmp0002"]);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    expect(await hook(whepPlay(s, { ...edge, client: "whep0001" }))).toEqual(ALLOW);
    at(11_000);
    expect(await hook(whepPlay(s, { ...edge, client: "whep0001" }))).toMatchObject(TWIN);
    at(13_000);
    expect(fake.clients.has("whep0001")).toBe(false);
    expect(await hook(play("live", s, { ...edge, client: "rtmp0002" }))).toEqual(ALLOW);
    expect(await ghostEnded(s, "whep0001")).toBe(true);
  });
});
