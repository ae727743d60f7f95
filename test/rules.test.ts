import { describe, expect, it } from "vitest";
import { decidePublish, decideToken, type StreamPolicy } from "../src/stream/rules";

const HASH = "a".repeat(64);
const policy = (p: Partial<StreamPolicy> = {}): StreamPolicy => ({ keyHash: HASH, maxViewers: null, playAuth: "open", ...p });
const A = { serverId: "vid-a", serviceId: "s1", clientId: "c1" };
const OK = { ok: true } as const;

describe("decidePublish", () => {
  it("admits the right key on an idle stream", () => {
    expect(decidePublish(policy(), [], false, HASH, () => false)).toEqual({ allow: true, admit: true });
  });
  it("refuses a different session while one is live, even with the right key", () => {
    const d = decidePublish(policy(), [A], false, HASH, () => false);
    expect(d.allow).toBe(false);
  });
  it("treats the live session's repeat as a no-op allow", () => {
    expect(decidePublish(policy(), [], true, HASH, () => false)).toEqual({ allow: true, admit: false });
  });
  it("refuses a wrong key before saying whether the stream is busy", () => {
    const d = decidePublish(policy(), [A], false, "b".repeat(64), () => false);
    expect(d.allow === false && d.denial.reason).toBe("invalid publish key");
  });
});

describe("brute-force limit", () => {
  it("never refuses the right key, even from an ip over the limit; turns a wrong key into 'rate limited'", () => {
    expect(decidePublish(policy(), [], false, HASH, () => true)).toEqual({ allow: true, admit: true });
    expect(decidePublish(policy(), [], false, "b".repeat(64), () => true)).toEqual({ allow: false, denial: { code: 4029, reason: "rate limited" } });
    expect(decidePublish(policy(), [], true, "b".repeat(64), () => true)).toEqual({ allow: true, admit: false });
  });
  it("never refuses a valid token; a forged one from an ip over the limit is 'rate limited'", () => {
    expect(decideToken(policy({ playAuth: "token" }), OK, () => true)).toEqual({ allow: true, admit: true });
    expect(decideToken(policy({ playAuth: "token" }), { ok: false, problem: "bad signature" }, () => true)).toEqual({
      allow: false,
      denial: { code: 4029, reason: "rate limited" },
    });
    // An expired token was genuine: no guess, so no limit.
    expect(decideToken(policy({ playAuth: "token" }), { ok: false, problem: "expired" }, () => true)).toMatchObject({ denial: { code: 4013 } });
    expect(decideToken(policy(), OK, () => true).allow).toBe(true);
  });
});

describe("decideToken", () => {
  it("on a token stream, refuses with the token's problem", () => {
    expect(decideToken(policy({ playAuth: "token" }), { ok: false, problem: "expired" }, () => false)).toEqual({ allow: false, denial: { code: 4013, reason: "expired" } });
    expect(decideToken(policy({ playAuth: "token" }), OK, () => false)).toEqual({ allow: true, admit: true });
  });
  it("ignores the token on an open stream", () => {
    expect(decideToken(policy(), { ok: false, problem: "missing token" }, () => false)).toEqual({ allow: true, admit: true });
  });
  it("refuses every token of a stream that does not exist", () => {
    expect(decideToken(null, OK, () => false)).toMatchObject({ allow: false, denial: { code: 4001 } });
  });
});
