/**
 * The bounds of streamgate's calls to SRS's HTTP API (README "SRS's HTTP API": "Never on the path of
 * an admitted hook", "a refusal waits at most 2 s for its check", "at most 4 calls at a time go from
 * one object to one server"), the reasons kicks and takeovers give when an edge answers but not as
 * it should, and where a per-server override may point. Against the fake SRS API of
 * test/fake-srs.ts; runs in the "srs-api" project (SRS_API_URL = https://{device_id}.srs.test:1985).
 *
 * Time bounds are read from the fake API's calls (what was still in flight when the hook answered,
 * how many calls it saw at once), not from the wall clock.
 */
import { runDurableObjectAlarm } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import { ServerRegistry } from "../src/server/registry";
import { admin, adminWith, createStream, hook, play, publish, uniqueStream } from "./srs";
import { ALLOW, allCalls, edgeWithApi, installFakeSrs, type FakeSrs } from "./fake-srs";
import { at, holdMatching, serverListed, serverStub, until } from "./fleet";
import { limited, playWith, tokenOf } from "./identity";

installFakeSrs();

const events = async (s: string) => (await admin("GET", `/streams/live/${s}/events`)).body.events ?? [];
const getsOf = (fake: FakeSrs, client: string) => fake.calls.filter((c) => c.method === "GET" && c.path === `/api/v1/clients/${client}`).length;

/** A stream capped at `n` whose n slots are taken by viewers SRS has on `edge`'s process. */
async function fullOn(n: number) {
  const viewers = Array.from({ length: n }, (_, i) => `view${String(i).padStart(4, "0")}`);
  const { edge, fake } = await edgeWithApi(viewers);
  const s = uniqueStream();
  await createStream(s, { maxViewers: n });
  for (const v of viewers) expect(await hook(play("live", s, { ...edge, client: v }))).toEqual(ALLOW);
  return { edge, fake, s, viewers };
}

describe("PUT /admin/servers/{server_id}: an override stays under SRS_API_URL's host", () => {
  it("label by label: with SRS_API_URL https://example.com/{server_id}, https://evilexample.com is refused", async () => {
    const { edge } = await edgeWithApi();
    const settings = { SRS_API_URL: "https://example.com/{server_id}" };
    const put = (api: string) => adminWith(settings, "PUT", `/servers/${edge.server}`, { api });
    expect((await put("https://evilexample.com")).status).toBe(400);
    expect((await put("https://evil-example.com:1985")).status).toBe(400);
    expect((await put("https://example.com.evil.test")).status).toBe(400);
    expect((await put("https://edge-1.example.com:1985")).status).toBe(200);
    expect((await put("https://example.com:1985/srs")).status).toBe(200);
  });
});
