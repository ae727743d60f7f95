/**
 * The hook's `ip` is informational: whatever SRS (or a proxy in front of it)
 * puts there, the hook is decided on its merits, and the ip is kept cleaned:
 * the first element of a comma list, trimmed, without control characters, at
 * most 64 characters; not a string: "".
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { ALLOW, admin, createStream, heartbeat, hook, newEdge, play, publish, streamState, uniqueStream } from "./srs";


afterEach(() => {
  vi.restoreAllMocks();
});

async function lastEventIp(stream: string): Promise<string> {
  return (await admin("GET", `/streams/live/${stream}/events`)).body.events[0].ip;
}

describe("the hook's ip never fails a hook", () => {
  it("admits a publisher with the right key whatever its ip says, and records it cleaned", async () => {
    const cases: [unknown, string][] = [
      ["UNKNOWN", "UNKNOWN"],
      ["1.2.3.4 ", "1.2.3.4"],
      ["1.2.3.4, 10.0.0.1", "1.2.3.4"],
      [" 2001:db8::7 ,10.0.0.1", "2001:db8::7"],
      ["<script>", "<script>"],
      ["10.0.0.9\u0000\n", "10.0.0.9"],
      ["x".repeat(200), "x".repeat(64)],
      [12345, ""],
      [null, ""],
      [{ v4: "1.2.3.4" }, ""],
    ];
    for (const [ip, kept] of cases) {
      const s = uniqueStream();
      const key = await createStream(s);
      const r = await hook({ ...publish("live", s, key, { ...newEdge(), client: "pub00001" }), ip });
      expect(r, JSON.stringify(ip)).toEqual(ALLOW);
      expect((await streamState(s)).publisher.ip, JSON.stringify(ip)).toBe(kept);
    }
  });

  it("admits a viewer whose ip is a proxy list, and logs the client's address", async () => {
    const s = uniqueStream();
    await createStream(s);
    expect(await hook({ ...play("live", s, { ...newEdge(), client: "view0001" }), ip: "203.0.113.9, 10.0.0.1" })).toEqual(ALLOW);
    expect(await lastEventIp(s)).toBe("203.0.113.9");
  });

  it("counts failed guesses on the cleaned ip: spelling it differently buys no extra guesses", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    const edge = newEdge();
    const from = (ip: string, k: string, i: number) => ({ ...publish("live", s, k, { ...edge, client: `atk${i}` }), ip });
    const spellings = ["203.0.113.66", "203.0.113.66 ", "203.0.113.66, 10.0.0.1", " 203.0.113.66,198.51.100.1"];
    for (let i = 0; i < 10; i++) expect((await hook(from(spellings[i % 4], `guess-${i}`, i))).body.reason).toBe("invalid publish key");
    expect((await hook(from("203.0.113.66, 10.9.9.9", "guess-10", 10))).body).toEqual({ code: 4029, reason: "rate limited" });
    expect(await hook(from("198.51.100.20", key, 11))).toEqual(ALLOW);
  });

  it("never fails a heartbeat either", async () => {
    const edge = newEdge();
    expect(await hook({ ...heartbeat(edge), ip: "UNKNOWN" }, undefined, "/heartbeat")).toEqual(ALLOW);
    expect(await hook({ ...heartbeat(edge), ip: ["192.0.2.1"] }, undefined, "/heartbeat")).toEqual(ALLOW);
    const listed = (await admin("GET", "/servers")).body.servers.find((x: any) => x.serverId === edge.server);
    expect(listed.ip).toBe("");
    expect(await hook({ ...heartbeat(edge), ip: "192.0.2.7, 10.0.0.1" }, undefined, "/heartbeat")).toEqual(ALLOW);
    expect((await admin("GET", "/servers")).body.servers.find((x: any) => x.serverId === edge.server).ip).toBe("192.0.2.7");
  });

  it("keeps the ip as SRS gave it in the decision's log line, next to the cleaned one", async () => {
    const s = uniqueStream();
    await createStream(s);
    const lines: string[] = [];
    vi.spyOn(console, "log").mockImplementation((line: unknown) => void lines.push(String(line)));
    expect(await hook({ ...play("live", s, { ...newEdge(), client: "view0001" }), ip: " 203.0.113.9, 10.0.0.1" })).toEqual(ALLOW);
    const logged = lines.map((l) => JSON.parse(l)).find((l) => l.action === "on_play" && l.client === "view0001");
    expect(logged).toMatchObject({ ip: "203.0.113.9", ipGiven: " 203.0.113.9, 10.0.0.1" });
  });
});
