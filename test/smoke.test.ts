import { describe, expect, it } from "vitest";
import { createStream, hook, publish, streamState, uniqueStream } from "./srs";

describe("smoke", () => {
  it("publishes", async () => {
    const s = uniqueStream();
    const key = await createStream(s);
    const r = await hook(publish("live", s, key));
    expect(r).toEqual({ status: 200, body: { code: 0 } });
    expect((await streamState(s)).live).toBe(true);
  });
});
