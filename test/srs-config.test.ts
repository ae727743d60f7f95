// `npm run srs-config` prints a complete srs.conf for each role; SRS must be able to start with
// every one of them. test/srs-conf.ts parses them the way SRS 7 does (and knows its directive names).
import { describe, expect, it } from "vitest";
import readme from "../README.md?raw";
import { HOOK_ACTIONS, SrsConfigError, srsConfig, type SrsConfigOptions } from "../scripts/lib/srs-config";
import { checkDirectiveNames, find, parseSrsConf, SrsConfSyntaxError, type Directive } from "./srs-conf";

const GATE = "https://gate.example.com";
const SECRET = "Zr0H5f2YcW-uq8N1sJxk_3dVb7LmTa9pEoGi4QnBtKw";
const HOOK = `${GATE}/hooks/srs/${SECRET}`;

const EDGE: SrsConfigOptions = { role: "edge", gate: GATE, hookSecret: SECRET, deviceId: "edge-eu-1", origin: ["origin.internal:1935"] };
const STANDALONE: SrsConfigOptions = { role: "standalone", gate: GATE, hookSecret: SECRET, deviceId: "live-1" };
const ORIGIN: SrsConfigOptions = { role: "origin" };

/** Parsed as SRS parses it, with every directive name one SRS accepts. */
function parsed(options: SrsConfigOptions): Directive[] {
  const conf = parseSrsConf(srsConfig(options));
  checkDirectiveNames(conf);
  return conf;
}

/** Directives anywhere in the tree with this name. */
function all(directives: Directive[], name: string): Directive[] {
  return directives.flatMap((d) => [...(d.name === name ? [d] : []), ...all(d.block ?? [], name)]);
}

describe("the SRS configuration of each role is well-formed srs.conf that SRS 7 accepts", () => {
  for (const options of [EDGE, STANDALONE, ORIGIN, { ...EDGE, serverId: "edge-eu-1" }, { ...STANDALONE, webrtc: "203.0.113.7" }, { ...STANDALONE, webrtc: "*" }]) {
    it(`${options.role}${options.serverId ? " with a server_id" : ""}${options.webrtc ? ` with WebRTC (candidate ${options.webrtc})` : ""}`, () => {
      const conf = parsed(options);
      expect(find(conf, "listen")?.args).toEqual(["1935"]);
      expect(find(conf, "vhost")?.args).toEqual(["__defaultVhost__"]);
    });
  }
});

describe("an edge and a standalone server call streamgate for every client", () => {
  for (const options of [EDGE, STANDALONE]) {
    it(`${options.role}: every hook action posts to the gate with the secret in the path`, () => {
      const hooks = find(parsed(options), "vhost", "http_hooks")!;
      expect(find(hooks.block!, "enabled")?.args).toEqual(["on"]);
      for (const action of HOOK_ACTIONS) expect(find(hooks.block!, action)?.args, action).toEqual([HOOK]);
      expect(hooks.block!.map((d) => d.name).sort()).toEqual(["enabled", ...HOOK_ACTIONS].sort());
    });

    it(`${options.role}: heartbeats carry the secret in the path (SRS drops the query) and the device id`, () => {
      const heartbeat = find(parsed(options), "heartbeat")!;
      expect(Object.fromEntries(heartbeat.block!.map((d) => [d.name, d.args]))).toEqual({
        enabled: ["on"],
        interval: ["10"],
        url: [`${HOOK}/heartbeat`],
        device_id: [options.deviceId],
      });
    });
  }

  for (const options of [EDGE, STANDALONE]) {
    it(`${options.role}: says why on_dvr and on_hls are left out, and that adding them is harmless`, () => {
      const text = srsConfig(options);
      expect(text).toMatch(/# on_dvr and on_hls are left out: they gate nothing, and on_hls is one hook per HLS segment/);
      expect(text).toMatch(/Adding them \(same URL\) is harmless: streamgate allows them, as proof of life/);
    });
  }

  it("an edge runs in remote mode against its origins", () => {
    const cluster = find(parsed({ ...EDGE, origin: ["10.0.0.5:1935", "10.0.0.6", "[fd00::5]:1935", "origin-2.internal."] }), "vhost", "cluster")!;
    expect(Object.fromEntries(cluster.block!.map((d) => [d.name, d.args]))).toEqual({ mode: ["remote"], origin: ["10.0.0.5:1935", "10.0.0.6", "[fd00::5]:1935", "origin-2.internal."] });
  });

  it("a standalone server is its own origin and counts HLS viewers", () => {
    const conf = parsed(STANDALONE);
    expect(find(conf, "vhost", "cluster")).toBeUndefined();
    expect(find(conf, "vhost", "hls", "hls_ctx")?.args).toEqual(["on"]);
  });

  it("a standalone server with --webrtc serves WHIP and WHEP (rtc_server with the candidate, rtc in the vhost); without it, no WebRTC", () => {
    const conf = parsed({ ...STANDALONE, webrtc: "live-1.example.com" });
    const block = (d: Directive | undefined) => Object.fromEntries((d?.block ?? []).map((x) => [x.name, x.args]));
    expect(block(find(conf, "rtc_server"))).toEqual({ enabled: ["on"], listen: ["8000"], candidate: ["live-1.example.com"] });
    expect(block(find(conf, "vhost", "rtc"))).toEqual({ enabled: ["on"], rtmp_to_rtc: ["on"], rtc_to_rtmp: ["on"] });
    expect(srsConfig({ ...STANDALONE, webrtc: "*" })).toContain("/rtc/v1/whep/?app=live&stream=cam1&token=<play token>");
    for (const options of [EDGE, STANDALONE, ORIGIN]) {
      expect(find(parsed(options), "rtc_server")).toBeUndefined();
      expect(find(parsed(options), "vhost", "rtc")).toBeUndefined();
    }
  });

  it("the stream-key note tells publishers where the key goes", () => {
    for (const options of [EDGE, STANDALONE]) expect(srsConfig(options)).toContain("?key=<publishKey>");
  });
});

describe("an origin behind edges never calls streamgate, and says why", () => {
  it("has no hooks, no heartbeat and no secret", () => {
    const text = srsConfig(ORIGIN);
    const conf = parsed(ORIGIN);
    expect(all(conf, "http_hooks")).toEqual([]);
    expect(all(conf, "heartbeat")).toEqual([]);
    expect(text).not.toContain("/hooks/srs");
  });

  it("its HTTP API comment does not say streamgate asks it (streamgate calls only the APIs of servers that send heartbeats)", () => {
    const text = srsConfig(ORIGIN);
    expect(text).not.toContain("streamgate asks it");
    expect(text).toContain("streamgate never calls an origin's");
  });

  it("its comment gives the reasons: the edges already asked, edge pulls count as viewers, edge pushes are second publishers", () => {
    const text = srsConfig(ORIGIN);
    expect(text).toContain("The edges already asked");
    expect(text).toContain("on_play (counted against the viewer cap");
    expect(text).toMatch(/second\n?#? ?on_publish from another server/);
    expect(text).toContain("only your edges may reach this server");
  });
});

describe("server_id", () => {
  it("is a top-level directive when given, and only a commented hint otherwise", () => {
    expect(find(parsed({ ...EDGE, serverId: "edge-eu-1" }), "server_id")?.args).toEqual(["edge-eu-1"]);
    expect(find(parsed(EDGE), "server_id")).toBeUndefined();
    expect(srsConfig(EDGE)).toContain("SRS_SERVER_ID");
  });
});

describe("options that would make a broken or unsafe configuration are refused", () => {
  const refused: [string, SrsConfigOptions][] = [
    ["a short secret", { ...EDGE, hookSecret: "too-short" }],
    ["a secret that would end the directive", { ...EDGE, hookSecret: `${SECRET};x` }],
    ["a secret with a space", { ...EDGE, hookSecret: `${SECRET} x` }],
    ["no secret", { ...EDGE, hookSecret: undefined }],
    ["a gate with a path", { ...EDGE, gate: `${GATE}/hooks` }],
    ["a gate with a query", { ...EDGE, gate: `${GATE}?x=1` }],
    ["a gate that is not http(s)", { ...EDGE, gate: "ftp://gate.example.com" }],
    ["no gate", { ...EDGE, gate: undefined }],
    ["an edge without origin", { ...EDGE, origin: [] }],
    ["a standalone server with an origin", { ...STANDALONE, origin: ["o:1935"] }],
    ["an origin with an origin", { ...ORIGIN, origin: ["o:1935"] }],
    // An origin calls nothing: what is given for calls is a mistake (the wrong --role?), not ignored.
    ["an origin with a gate", { ...ORIGIN, gate: GATE }],
    ["an origin with a device id", { ...ORIGIN, deviceId: "origin-1" }],
    ["a device id with a quote", { ...EDGE, deviceId: 'edge"1' }],
    ["a device id with a space", { ...EDGE, deviceId: "edge 1" }],
    ["no device id", { ...EDGE, deviceId: undefined }],
    ["a server id with a semicolon", { ...EDGE, serverId: "a;b" }],
    ["an origin that is not host:port", { ...EDGE, origin: ["rtmp://o/live"] }],
    // SRS's own check (srs -t) passes these; the edge would fail at its first pull.
    ["an origin port over 65535", { ...EDGE, origin: ["origin.internal:99999"] }],
    ["an origin port 0", { ...EDGE, origin: ["origin.internal:0"] }],
    // SRS reads "[::1]" without a port as the host "[::1]", brackets and all: no origin it can reach.
    ["an IPv6 origin without its port", { ...EDGE, origin: ["[::1]"] }],
    ["an origin that is only dots", { ...EDGE, origin: ["."] }],
    ["an origin that looks like an option", { ...EDGE, origin: ["-o"] }],
    ["an origin with an empty label", { ...EDGE, origin: ["origin..internal:1935"] }],
    ["an unknown role", { ...EDGE, role: "relay" as never }],
    // SRS 7's WebRTC has no edge cluster.
    ["WebRTC on an edge", { ...EDGE, webrtc: "*" }],
    ["WebRTC on an origin", { ...ORIGIN, webrtc: "*" }],
    ["a WebRTC candidate that would end the directive", { ...STANDALONE, webrtc: "1.2.3.4; listen 1" }],
    ["a WebRTC candidate with a space", { ...STANDALONE, webrtc: "a b" }],
    ["an empty WebRTC candidate", { ...STANDALONE, webrtc: "" }],
  ];
  for (const [name, options] of refused) {
    it(name, () => expect(() => srsConfig(options)).toThrow(SrsConfigError));
  }

  it("a gate's trailing slash and default port are dropped", () => {
    expect(srsConfig({ ...EDGE, gate: "https://gate.example.com:443/" })).toContain(`on_play         ${HOOK};`);
  });
});

describe("the checker refuses what SRS refuses", () => {
  const broken: [string, string][] = [
    ["an unclosed block", "vhost v {\n  enabled on;\n"],
    ["a stray closing brace", "listen 1935;\n}\n"],
    ["a directive without ;", "listen 1935\n"],
    ["a directive over two lines", "listen\n  1935;\n"],
    ["a word glued to a closing quote", 'heartbeat { device_id "a"b; }\n'],
    ["a closing brace inside a directive", "vhost v { enabled on }\n"],
    ["a lone ;", ";\n"],
    ["an unknown top-level directive", "listne 1935;\n"],
    ["an unknown hook", "vhost v { http_hooks { on_publsh http://x; } }\n"],
    ["an unknown heartbeat directive", "heartbeat { device \"x\"; }\n"],
  ];
  for (const [name, text] of broken) {
    it(name, () => expect(() => checkDirectiveNames(parseSrsConf(text))).toThrow(SrsConfSyntaxError));
  }

  it("accepts comments, quotes, # inside a word and one-line blocks", () => {
    const conf = parseSrsConf(
      '# comment\nheartbeat { enabled on; url http://h/p#x; device_id \'a b\'; } # trailing\nvhost v { hls { enabled on; hls_ctx on; } }\n',
    );
    checkDirectiveNames(conf);
    expect(find(conf, "heartbeat", "url")?.args).toEqual(["http://h/p#x"]);
    expect(find(conf, "heartbeat", "device_id")?.args).toEqual(["a b"]);
    expect(find(conf, "vhost", "hls", "hls_ctx")?.args).toEqual(["on"]);
  });
});

describe("README", () => {
  const blocks = [...readme.matchAll(/```nginx\n([\s\S]*?)```/g)].map((m) => m[1]);

  it("has SRS configuration blocks, and SRS would accept each of them", () => {
    expect(blocks.length).toBeGreaterThan(0);
    for (const block of blocks) checkDirectiveNames(parseSrsConf(block));
  });
});
