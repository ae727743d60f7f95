/**
 * The README's curl examples of the admin API (those against https://gate.example.com), run
 * against the Worker in README order: an example that no longer works fails here
 * (test/node/readme-commands.mjs checks that every README command is run somewhere).
 */
import { describe, expect, it } from "vitest";
import { readmeText } from "./token-vectors";
import { admin } from "./srs";

interface Example {
  command: string;
  method: string;
  path: string;
  body: unknown;
}

/** Every `curl -X <method> -H "authorization: Bearer $ADMIN_TOKEN" https://gate.example.com/admin/… -d '<json>'` of a sh block. */
function readmeAdminExamples(): Example[] {
  const blocks = [...readmeText().matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1].replace(/\\\n\s*/g, ""));
  const pattern = /^curl -X ([A-Z]+) -H "authorization: Bearer \$ADMIN_TOKEN" https:\/\/gate\.example\.com\/admin(\/\S*)(?: -d '([^']*)')?$/;
  return blocks
    .flatMap((b) => b.split("\n"))
    .map((line) => line.trim())
    .filter((line) => line.startsWith("curl ") && line.includes("https://gate.example.com/admin/"))
    .map((command) => {
      const m = pattern.exec(command);
      if (!m) throw new Error(`README example not in the expected shape: ${command}`);
      return { command, method: m[1], path: m[2], body: m[3] === undefined ? undefined : JSON.parse(m[3]) };
    });
}

describe("the README's admin examples", () => {
  const examples = readmeAdminExamples();

  it("are found (the viewer-id policy and both revocations)", () => {
    expect(examples.map((e) => `${e.method} ${e.path}`)).toEqual([
      "PUT /streams/live/cam1",
      "POST /streams/live/cam1/revocations",
      "POST /streams/live/cam1/revocations",
    ]);
  });

  it("each succeeds against the Worker, in order", async () => {
    for (const e of examples) {
      const r = await admin(e.method, e.path, e.body);
      expect(r.status, `${e.command} → ${JSON.stringify(r.body)}`).toBeGreaterThanOrEqual(200);
      expect(r.status, `${e.command} → ${JSON.stringify(r.body)}`).toBeLessThan(300);
    }
    expect(await admin("GET", "/streams/live/cam1")).toMatchObject({ body: { playAuth: "token", maxSessionsPerViewer: 1, onExtraViewerSession: "deny" } });
    const listed = (await admin("GET", "/streams/live/cam1/revocations")).body.revocations;
    expect(listed.map((r: any) => r.sub).sort()).toEqual(["alice", null].sort());
  });
});
