/**
 * Adversarial probes of today's admin-API changes: 56fdc34/9bb4d3e/a9c8c9e (GET and DELETE refuse a body,
 * the server's end refuses a query), the dead-letter routes (8953ff1/1e1cb59/dc8909b).
 */
import { describe, expect, it } from "vitest";
import { exports } from "cloudflare:workers";
import { ADMIN_TOKEN, admin, createStream, hook, play, publish, streamState, uniqueStream } from "./srs";
import { edge, serverListed, twoEdgesOnTheFakeClock } from "./fleet";

twoEdgesOnTheFakeClock();


async function liveStream() {
  const s = uniqueStream();
  const key = await createStream(s);
  await hook(publish("live", s, key, { ...edge, client: "enc00001" }));
  await hook(play("live", s, { ...edge, client: "view0001" }));
  await hook(play("live", s, { ...edge, client: "view0002" }));
  return s;
}

describe("DELETE /admin/streams/{app}/{stream}/sessions with a misspelt filter", () => {
  for (const query of ["client_id=view0001", "clientId=view0001", "Client=view0001", "serverId=edge&client_id=view0001", "id=view0001"]) {
    it(`?${query} is refused (400, nothing ended): the unknown parameter was ignored and every session of the stream ended (and was kicked)`, async () => {
      const s = await liveStream();
      const res = await admin("DELETE", `/streams/live/${s}/sessions?${query}`);
      expect(res.status).toBe(400);
      expect(res.body.error).toMatch(/nothing was changed/);
      expect(await streamState(s)).toMatchObject({ live: true, viewers: 2 });
      expect((await serverListed(edge)).sessions).toBeGreaterThanOrEqual(3);
    });
  }

  it("the filters it has still work, with ?vhost= too", async () => {
    const s = await liveStream();
    const res = await admin("DELETE", `/streams/live/${s}/sessions?server=${edge.server}&client=view0001&vhost=__defaultVhost__`);
    expect(res.status).toBe(200);
    expect(res.body.ended).toHaveLength(1);
    expect(await streamState(s)).toMatchObject({ live: true, viewers: 1 });
  });
});

describe("an empty body is no body", () => {
  const raw = (method: string, path: string, init: RequestInit & { duplex?: string } = {}) =>
    exports.default.fetch(new Request(`http://gate.test/admin${path}`, { method, ...init, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(init.headers ?? {}) } } as RequestInit));

  it("a DELETE with Content-Length: 0 (curl -d ''), and one with an empty chunked body, are answered", async () => {
    const s = await liveStream();
    const curl = await raw("DELETE", `/streams/live/${s}/sessions?client=view0001`, { body: "", headers: { "content-type": "application/x-www-form-urlencoded" } });
    expect(curl.status).toBe(200);
    const chunked = await raw("DELETE", `/streams/live/${s}/sessions?client=view0002`, { body: new ReadableStream({ start: (c) => c.close() }), duplex: "half" });
    expect(chunked.status).toBe(200);
    expect(await streamState(s)).toMatchObject({ live: true, viewers: 0 });
    expect((await raw("DELETE", `/streams/live/${uniqueStream()}`, { body: new ReadableStream({ start: (c) => { c.enqueue(new TextEncoder().encode("\r\n")); c.close(); } }), duplex: "half" })).status).toBe(404);
  });

  it("without the admin token a body is not looked at: 401 on the dead-letter routes", async () => {
    for (const [method, path] of [["DELETE", "/events/dead-letters"], ["POST", "/events/dead-letters/replay"]]) {
      const res = await exports.default.fetch(new Request(`http://gate.test/admin${path}`, { method, body: "{}" }));
      expect(res.status, `${method} ${path}`).toBe(401);
    }
  });
});
