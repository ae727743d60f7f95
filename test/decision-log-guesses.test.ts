/**
 * The decision log keeps failed guesses in a ring of their own: a guesser
 * rotating spoofed ips, however patient, never pushes real decisions out.
 */
import { beforeEach, describe, expect, it } from "vitest";
import { ALLOW, admin, createStream, type Edge, hook, newEdge, publish, uniqueStream } from "./srs";
import { at, useFakeClock } from "./fleet";


let edge: Edge;
useFakeClock();
beforeEach(() => {
  edge = newEdge();
});

const publishFrom = (ip: string, stream: string, key: string, client: string) => ({ ...publish("live", stream, key, { ...edge, client }), ip });

describe("a guesser rotating spoofed ips and the decision log", () => {
  it("the stream's real decisions are still in its log after five minutes of guessing", async () => {
    // README (Security): "a guesser cannot flush real decisions out of the 100-entry log";
    // auth-failures.ts: "Past it (a guesser rotating spoofed ips), failures cost no write and no log line: the log keeps the real decisions."
    const s = uniqueStream();
    const key = await createStream(s);
    expect(await hook(publishFrom("198.51.100.20", s, key, "encoder1"))).toEqual(ALLOW);
    for (let minute = 0; minute < 5; minute++) {
      at(minute * 60_000 + 1000);
      for (let i = 0; i < 25; i++) {
        const res = await hook(publishFrom(`203.0.${minute}.${i}`, s, `guess-${minute}-${i}`, `atk${minute}x${i}`));
        expect(res.status).toBe(403);
      }
    }
    const events = (await admin("GET", `/streams/live/${s}/events`)).body.events;
    const guesses = events.filter((e: any) => e.reason === "invalid publish key" || e.action === "guesses").length;
    expect(guesses, "log lines the guesser's failures fill: their own ring").toBeLessThanOrEqual(20);
    expect(events.some((e: any) => e.client === "encoder1" && e.decision === "allow"), "the encoder's admission is still logged").toBe(true);
  });
});
