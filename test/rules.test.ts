import { describe, expect, it } from "vitest";
import { decidePlay, decidePublish, type StreamPolicy } from "../src/stream/rules";

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
    expect(decidePlay(policy({ playAuth: "token" }), 0, false, OK, () => true)).toEqual({ allow: true, admit: true });
    expect(decidePlay(policy({ playAuth: "token" }), 0, false, { ok: false, problem: "bad signature" }, () => true)).toEqual({
      allow: false,
      denial: { code: 4029, reason: "rate limited" },
    });
    // An expired token was genuine: no guess, so no limit.
    expect(decidePlay(policy({ playAuth: "token" }), 0, false, { ok: false, problem: "expired" }, () => true)).toMatchObject({ denial: { code: 4013 } });
    expect(decidePlay(policy(), 0, false, OK, () => true).allow).toBe(true);
  });
});

describe("decidePlay", () => {
  it("refuses at the cap and admits under it", () => {
    expect(decidePlay(policy({ maxViewers: 2 }), 1, false, OK, () => false)).toEqual({ allow: true, admit: true });
    expect(decidePlay(policy({ maxViewers: 2 }), 2, false, OK, () => false).allow).toBe(false);
  });
  it("allows a live viewer's repeat at the cap without admitting again", () => {
    expect(decidePlay(policy({ maxViewers: 2 }), 2, true, OK, () => false)).toEqual({ allow: true, admit: false });
  });
  it("on a token stream, refuses with the token's problem before looking at the cap", () => {
    const d = decidePlay(policy({ playAuth: "token", maxViewers: 0 }), 0, false, { ok: false, problem: "expired" }, () => false);
    expect(d).toEqual({ allow: false, denial: { code: 4013, reason: "expired" } });
    expect(decidePlay(policy({ playAuth: "token" }), 0, false, OK, () => false)).toEqual({ allow: true, admit: true });
  });
  it("ignores the token on an open stream", () => {
    expect(decidePlay(policy(), 0, false, { ok: false, problem: "missing token" }, () => false)).toEqual({ allow: true, admit: true });
  });
  it("a cap of 0 refuses everyone", () => {
    expect(decidePlay(policy({ maxViewers: 0 }), 0, false, OK, () => false).allow).toBe(false);
  });
});
