import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { callsOf, countCalls } from "../src/platform/load";
import { admin } from "./srs";

/** An object shaped like a Durable Object: the counters key it by class and ctx.id. */
class Counted {
  constructor(public ctx: { id: { toString(): string } }) {
    countCalls(this, { LOAD_COUNTERS: "1" }, ["call"]);
  }
  call(): string {
    return "answered";
  }
}

const id = (name: string) => ({ id: { toString: () => name } });

describe("load counters (npm run bench)", () => {
  it("an object started again keeps the calls counted before, and counts its starts", () => {
    const first = new Counted(id("a"));
    expect(first.call()).toBe("answered");
    first.call();
    // The runtime dropped the object; the next call starts it again with the same id.
    const again = new Counted(id("a"));
    again.call();
    expect(callsOf(again)).toEqual({ calls: 3, starts: 2, methods: { call: 3 } });
    expect(callsOf(new Counted(id("b"))).calls).toBe(0);
  });

  it("nothing is counted unless the bench turns the counters on", () => {
    class Quiet {
      constructor(public ctx: { id: { toString(): string } }) {
        countCalls(this, {}, ["call"]);
      }
      call(): void {}
    }
    const quiet = new Quiet(id("q"));
    quiet.call();
    expect(callsOf(quiet)).toEqual({ calls: 0, starts: 0, methods: {} });
  });

  it("GET /admin/load does not exist unless the bench turns the counters on", async () => {
    expect("LOAD_COUNTERS" in env).toBe(false);
    const res = await admin("GET", "/admin/load?stream=live/x&servers=a");
    expect(res.status).toBe(404);
  });
});
