/**
 * Adversarial probes of 56fdc34/9bb4d3e (GET and DELETE admin calls refuse a body): the error must not point an
 * operator at a filter the route ignores.
 */
import { describe, expect, it } from "vitest";
import { admin, createStream, hook, play, publish, streamState, uniqueStream } from "./srs";
import { edge, serverListed, twoEdgesOnTheFakeClock } from "./fleet";

twoEdgesOnTheFakeClock();

describe("DELETE /admin/servers/{id}/sessions with a body", () => {
  it("is not told to choose sessions with ?server= and ?client=, which that route ignores: following the hint ended (and kicked) every session of the server", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    await hook(publish("live", s, key, { ...edge, client: "enc00001" }));
    await hook(play("live", s, { ...edge, client: "view0001" }));
    await hook(play("live", s, { ...edge, client: "view0002" }));
    // The operator meant to end one viewer, and put the filter in the body.
    const refused = await admin("DELETE", `/servers/${edge.server}/sessions`, { client: "view0001" });
    expect(refused.status).toBe(400);
    expect(refused.body.error, "the hint names query parameters the route has").not.toMatch(/\?server=|client=/);
    // ... and then as the 400 told: the query must not be ignored (it ended all three, and kicked them with SRS_API_URL).
    const followed = await admin("DELETE", `/servers/${edge.server}/sessions?client=view0001`);
    expect(followed.status).toBe(400);
    expect(await streamState(s)).toMatchObject({ live: true, viewers: 2 });
    expect((await serverListed(edge)).sessions).toBe(3);
  });
});
