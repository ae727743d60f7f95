/**
 * WebRTC players young for ghost checks (src/viewers/shard.ts YOUNG_MS): an on_play repeating the player's client id
 * (another attempt of the hook; SRS itself never retries one, but names every WHEP session of one keep-alive HTTP
 * connection by that connection's context id) makes it young again from the repeat. This file runs with SRS_API_URL set.
 */
import { describe, expect, it } from "vitest";
import { createStream, hook, play, uniqueStream, whepPlay } from "../srs";
import { ALLOW, edgeWithApi, installFakeSrs } from "../fake-srs";
import { at, events, useFakeClock } from "../fleet";

installFakeSrs();
useFakeClock();

const CAP = { status: 403, body: { code: 4005 } };
const ghostEnded = async (s: string, client: string) => (await events(s)).some((e: any) => e.action === "ghost" && e.client === client);

describe("repeats of a WebRTC client id keep it young from the repeat", () => {
  it("a repeat at 11 s keeps the player young until 23 s; a check after that may end it", async () => {
    const { edge, fake } = await edgeWithApi(["rtmp0002"]);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    expect(await hook(whepPlay(s, { ...edge, client: "whep0001" }))).toEqual(ALLOW);
    at(11_000);
    expect(await hook(whepPlay(s, { ...edge, client: "whep0001" }))).toEqual(ALLOW); // already live
    at(13_000);
    expect(await hook(play("live", s, { ...edge, client: "rtmp0002" }))).toMatchObject(CAP);
    expect(await ghostEnded(s, "whep0001")).toBe(false);
    at(24_000);
    expect(fake.clients.has("whep0001")).toBe(false);
    expect(await hook(play("live", s, { ...edge, client: "rtmp0002" }))).toEqual(ALLOW);
    expect(await ghostEnded(s, "whep0001")).toBe(true);
  });
});
