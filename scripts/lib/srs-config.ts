// The SRS configuration for one server of a fleet that streamgate gates: a pure function, so the
// Node CLI (scripts/srs-config.ts, `npm run srs-config`) and the tests inside workerd
// (test/srs-config.test.ts) run the same code. No imports, no Node APIs.
//
// Directive names are SRS's own (conf/full.conf and the checks in SrsConfig::check_normal_config,
// srs_app_config.cpp, SRS 7.0.18): top-level listen, daemon, srs_log_tank, server_id, http_api,
// http_server, heartbeat, rtc_server; vhost http_hooks, cluster, http_remux, hls, rtc. SRS's tokenizer ends a word at
// an unquoted `;`, `{` or whitespace and a directive at the end of its line, so every value written
// here is checked to be one plain word (or a quoted one without quotes inside).

export type Role = "edge" | "standalone" | "origin";
export const ROLES: readonly Role[] = ["edge", "standalone", "origin"];

export interface SrsConfigOptions {
  role: Role;
  /** The Worker's origin, e.g. https://gate.example.com (edge and standalone). */
  gate?: string;
  /** HOOK_SECRET, written into the hook and heartbeat URLs (edge and standalone). */
  hookSecret?: string;
  /** The heartbeat's device_id: a label shown in GET /admin/servers (edge and standalone). */
  deviceId?: string;
  /** The origins an edge pulls from and pushes to, host[:port] (edge only). */
  origin?: readonly string[];
  /** A stable server_id for this server; without it the output explains how to set one per pod. */
  serverId?: string;
  /** WebRTC (WHIP, WHEP) on, with this ICE candidate: the address clients reach the server at, or "*" (standalone only). */
  webrtc?: string;
}

export class SrsConfigError extends Error {}

/** The hook actions streamgate handles (README, "POST /hooks/srs/{HOOK_SECRET}"). */
export const HOOK_ACTIONS = ["on_publish", "on_unpublish", "on_play", "on_stop", "on_connect", "on_close"] as const;

const SECRET = /^[A-Za-z0-9._~-]{32,}$/;
const LABEL = /^[A-Za-z0-9._:@-]+$/;
/** The host of --gate as new URL() leaves it: a DNS name (IDNs in punycode), IPv4, or [IPv6]. */
const GATE_HOST = /^(?:[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?|\[[0-9A-Fa-f:.]+\])$/;
/**
 * An --origin: a host name or IPv4 (labels of letters, digits, - and _, not starting with -), with an
 * optional port; or [IPv6] with its port (SRS reads "[::1]" without one as the host "[::1]", brackets and all).
 */
/** An ICE candidate SRS takes: a host name or IPv4 address, or * (every address SRS finds on the machine). */
const CANDIDATE = /^(?:\*|[A-Za-z0-9_][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_][A-Za-z0-9_-]*)*)$/;
const HOST_PORT = /^(?:[A-Za-z0-9_][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_][A-Za-z0-9_-]*)*\.?(?::[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\]:[0-9]{1,5})$/;

/** A complete srs.conf for one server of the given role. Throws SrsConfigError on a bad option. */
export function srsConfig(options: SrsConfigOptions): string {
  const { role } = options;
  if (!ROLES.includes(role)) throw new SrsConfigError(`--role must be one of ${ROLES.join(", ")}`);
  const serverId = options.serverId === undefined ? undefined : label("--server-id", options.serverId, 64);

  if (role === "origin") {
    if (options.origin?.length) throw new SrsConfigError("--origin is for --role edge: an origin pulls from nobody");
    // An origin calls nothing: a gate or device id given for it is a mistake (the wrong --role?).
    if (options.gate !== undefined) throw new SrsConfigError("--gate is for --role edge or standalone: an origin never calls streamgate");
    if (options.deviceId !== undefined) throw new SrsConfigError("--device-id is for --role edge or standalone: an origin sends no heartbeat");
    if (options.webrtc !== undefined) throw new SrsConfigError(WEBRTC_STANDALONE);
    return origin(serverId);
  }
  const gate = gateUrl(options.gate);
  const secret = options.hookSecret ?? "";
  if (!SECRET.test(secret)) {
    throw new SrsConfigError(
      "HOOK_SECRET must be at least 32 characters of letters, digits, . _ ~ - (what npm run secrets generates), " +
        "so that it fits unquoted in a URL path and in srs.conf",
    );
  }
  if (options.deviceId === undefined) throw new SrsConfigError("--device-id is required: the heartbeat's label for this server");
  const deviceId = label("--device-id", options.deviceId, 128);
  const origins = (options.origin ?? []).map((o) => o.trim()).filter(Boolean);
  if (role === "edge" && origins.length === 0) throw new SrsConfigError("--role edge needs --origin host:port (the origin it pulls from and pushes to)");
  if (role === "standalone" && origins.length > 0) throw new SrsConfigError("--origin is for --role edge; a standalone server is its own origin");
  if (options.webrtc !== undefined && role !== "standalone") throw new SrsConfigError(WEBRTC_STANDALONE);
  if (options.webrtc !== undefined && !CANDIDATE.test(options.webrtc)) {
    throw new SrsConfigError(`--webrtc "${options.webrtc}" is not a host name, an IPv4 address or * (the address WebRTC clients reach this server at)`);
  }
  for (const o of origins) {
    if (!HOST_PORT.test(o)) throw new SrsConfigError(`--origin "${o}" is not host[:port] (or [IPv6]:port)`);
    // SRS takes any number here (srs -t passes "o:99999") and the edge fails only when it pulls.
    const port = /:([0-9]+)$/.exec(o)?.[1];
    if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) {
      throw new SrsConfigError(`--origin "${o}": the port must be 1 to 65535`);
    }
  }

  const hook = `${gate}/hooks/srs/${secret}`;
  const title = role === "edge" ? `edge "${deviceId}", pulling from and pushing to ${origins.join(" ")}` : `standalone server "${deviceId}"`;
  return [
    `# srs.conf for ${title}, gated by streamgate.`,
    "# Generated by `npm run srs-config`; for SRS 5, 6 or 7 (streamgate needs hooks with service_id, from",
    "# 5.0.143 / 6.0.28, and heartbeats with server and service, from 5.0.215 / 6.0.156 / 7.0.15).",
    "# The hook and heartbeat URLs carry HOOK_SECRET: treat this file like the secret (SRS logs the URLs too).",
    "",
    ...globals(serverId, `this server ("${deviceId}")`, [
      "# SRS's HTTP API. With SRS_API_URL set, streamgate asks it whether clients still exist before a",
      "# refusal rests on them (GET /api/v1/clients/{id}); you can kick a client with DELETE. Reach it",
      "# by a host name (Workers cannot fetch bare IPs), keep it off the public internet otherwise, and",
      "# turn on its basic auth with the values of SRS_API_USERNAME / SRS_API_PASSWORD.",
    ]),
    "",
    "# SRS drops the query string of the heartbeat URL, so the secret is a path segment. Heartbeats let",
    "# streamgate suspend the sessions of a server that went silent (SERVER_TIMEOUT_S, 30 s: three beats).",
    "heartbeat {",
    `    enabled         on;`,
    `    interval        10;`,
    `    url             ${hook}/heartbeat;`,
    `    device_id       "${deviceId}";`,
    "}",
    "",
    ...(options.webrtc === undefined
      ? []
      : [
          "# WebRTC. WHIP publishers and WHEP players POST their offers to the HTTP API's port (1985), which",
          "# then faces clients: turn on the API's basic auth above (SRS applies it to /api/ only, so WHIP and",
          "# WHEP need none; without it anyone who reaches the port can list and kick clients):",
          "#   http://<this server>:1985/rtc/v1/whip/?app=live&stream=cam1&key=<publishKey>",
          "#   http://<this server>:1985/rtc/v1/whep/?app=live&stream=cam1&token=<play token>",
          "# Media flows over UDP 8000. candidate is the address clients reach this server at (* : every",
          "# address SRS finds on the machine; behind NAT, the public one; an IP address for Firefox, which",
          "# takes no host name here). SRS reads a value that names an environment variable (candidate",
          "# edge1: $EDGE1, dots as _) from that variable.",
          "rtc_server {",
          `    enabled         on;`,
          `    listen          8000;`,
          `    candidate       ${options.webrtc};`,
          "}",
          "",
        ]),
    "vhost __defaultVhost__ {",
    ...(role === "edge"
      ? [
          "    # Remote mode: this edge pulls each stream its viewers ask for from the origin and pushes its",
          "    # publishers' streams to it. SRS runs http_hooks on the server a client connects to, whatever",
          "    # the cluster mode, so this edge asks streamgate for its own clients; its pulls and pushes to",
          "    # the origin are not hooks here (the origin sees them as clients, which is why it must not",
          "    # call streamgate: see `npm run srs-config -- --role origin`).",
          "    cluster {",
          `        mode            remote;`,
          `        origin          ${origins.join(" ")};`,
          "    }",
        ]
      : []),
    "    # Every client is checked: publish keys on on_publish, play tokens and viewer caps on on_play;",
    "    # stops and closes end sessions. Each URL ends with the secret; SRS posts JSON to it.",
    "    # on_dvr and on_hls are left out: they gate nothing, and on_hls is one hook per HLS segment of",
    "    # every stream. Adding them (same URL) is harmless: streamgate allows them, as proof of life.",
    "    http_hooks {",
    `        enabled         on;`,
    ...HOOK_ACTIONS.map((action) => `        ${action.padEnd(16)}${hook};`),
    "    }",
    "    http_remux {",
    `        enabled         on;`,
    `        mount           [vhost]/[app]/[stream].flv;`,
    "    }",
    ...(role === "standalone"
      ? [
          "    # HLS viewers are counted only with hls_ctx on (each HLS session is one viewer); see the",
          "    # README's \"SRS caveats\". Remove this block if you do not serve HLS.",
          "    hls {",
          `        enabled         on;`,
          `        hls_ctx         on;`,
          `        hls_ts_ctx      on;`,
          "    }",
        ]
      : []),
    ...(options.webrtc === undefined
      ? []
      : [
          "    # RTMP and SRT streams play over WHEP too, and WHIP streams over RTMP, HTTP-FLV and HLS (SRS's",
          "    # default build has the --ffmpeg-fit these need). A WHEP player counts like any viewer; see the",
          "    # README's \"SRS caveats\" for how SRS refuses WebRTC clients and when their slots come back.",
          "    rtc {",
          `        enabled         on;`,
          `        rtmp_to_rtc     on;`,
          `        rtc_to_rtmp     on;`,
          "    }",
        ]),
    "}",
    "",
    "# Stream keys: publishers put the key in the stream URL, rtmp://<this server>/live/cam1?key=<publishKey>",
    "# (OBS: server rtmp://<this server>/live, stream key cam1?key=<publishKey>); WHIP adds &key=<publishKey>",
    "# to its query, SRT puts key=<publishKey> in its streamid. Viewers of a stream with playAuth \"token\"",
    "# add ?token=<play token>. Create streams and keys with PUT /admin/streams/{app}/{stream}.",
    "",
  ].join("\n");
}

const WEBRTC_STANDALONE =
  "--webrtc is for --role standalone: SRS 7's WebRTC has no edge cluster (a WHIP publish is not pushed to an origin, and a " +
  "WHEP player on an edge sees only what that edge's own RTMP players pulled)";

function origin(serverId: string | undefined): string {
  return [
    "# srs.conf for an origin behind streamgate-gated edges.",
    "# Generated by `npm run srs-config`; for SRS 5, 6 or 7.",
    "#",
    "# This server does not call streamgate: no http_hooks, no heartbeat. The edges already asked",
    "# streamgate for each of their clients. Hooks here would see the edges, not the clients: each",
    "# edge's pull of a stream is one more on_play (counted against the viewer cap, with the param of",
    "# whichever viewer came last), and each edge's push of a publisher's stream is a second",
    "# on_publish from another server, which streamgate's one-publisher rule refuses: every publish",
    "# through an edge would fail. Heartbeats would list this origin as a server with no clients.",
    "#",
    "# Nothing here checks a key or a token, so only your edges may reach this server: keep its",
    "# ports (1935 RTMP, 8080 HTTP, 1985 API) on a private network or behind a firewall.",
    "",
    ...globals(serverId, "this origin", [
      "# SRS's HTTP API, for you and your tools only: streamgate never calls an origin's (SRS_API_URL is",
      "# filled in from heartbeats, which an origin does not send; the edges' APIs know the clients).",
      "# Keep it on the private network; its basic auth takes any username and password of your own.",
    ]),
    "",
    "vhost __defaultVhost__ {",
    "    http_remux {",
    `        enabled         on;`,
    `        mount           [vhost]/[app]/[stream].flv;`,
    "    }",
    "}",
    "",
  ].join("\n");
}

function globals(serverId: string | undefined, who: string, httpApiComment: string[]): string[] {
  return [
    `listen              1935;`,
    `daemon              off;`,
    `srs_log_tank        console;`,
    "",
    "# Every SRS process needs its own stable server_id: streamgate tells a restart (new service_id,",
    "# same server_id) from a new server by it. Without one, SRS draws an id at first start and keeps",
    "# it in objs/srs.id; a pod that loses that file is a new server at every restart, and pods that",
    "# share it claim one id. The SRS_SERVER_ID environment variable (set to the pod's name) wins",
    "# over this line, so one file can serve many pods.",
    serverId === undefined
      ? `# server_id         <a name unique to ${who}>;`
      : `server_id           ${serverId};`,
    "",
    ...httpApiComment,
    "http_api {",
    `    enabled         on;`,
    `    listen          1985;`,
    "    # auth {",
    "    #     enabled     on;",
    "    #     username    <SRS_API_USERNAME>;",
    "    #     password    <SRS_API_PASSWORD>;",
    "    # }",
    "}",
    "http_server {",
    `    enabled         on;`,
    `    listen          8080;`,
    `    dir             ./objs/nginx/html;`,
    "}",
  ];
}

function gateUrl(gate: string | undefined): string {
  if (!gate) throw new SrsConfigError("--gate is required: the Worker's URL, e.g. https://gate.example.com");
  let url: URL;
  try {
    url = new URL(gate);
  } catch {
    throw new SrsConfigError(`--gate "${gate}" is not a URL (e.g. https://gate.example.com)`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") throw new SrsConfigError("--gate must be an https:// (or, locally, http://) URL");
  if (url.username || url.password || url.search || url.hash || (url.pathname !== "/" && url.pathname !== "")) {
    throw new SrsConfigError("--gate is the Worker's origin only (scheme, host, port): no path, query, fragment or user");
  }
  // new URL() keeps ; { } " ' , ( ) * $ and more in a host name, and maps a full-width ； or %3B to ;:
  // written into `on_publish https://gate;x/…;`, SRS would end the directive there. A host is a DNS
  // name (punycode, after new URL()) or an IP address.
  const dnsName = !url.hostname.startsWith("[");
  const tooLong = dnsName && (url.hostname.replace(/\.$/, "").length > 253 || url.hostname.split(".").some((l) => l.length > 63));
  if (!GATE_HOST.test(url.hostname) || tooLong) {
    throw new SrsConfigError(`--gate "${gate}": "${url.hostname}" is not a host name (labels of 1 to 63 letters, digits, - _, joined by dots; 253 at most) or an IP address`);
  }
  if (url.port === "0") throw new SrsConfigError(`--gate "${gate}": the port must be 1 to 65535`);
  return url.origin;
}

function label(flag: string, value: string, max: number): string {
  if (value.length < 1 || value.length > max || !LABEL.test(value)) {
    throw new SrsConfigError(`${flag} must be 1 to ${max} characters of letters, digits, . _ : @ -`);
  }
  return value;
}
