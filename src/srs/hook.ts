import { StatusError } from "itty-router";
import { isObject, MAX_BODY_BYTES } from "../http";
import { LIMITS, within } from "../limits";
import { DEFAULT_VHOST, HLS_SUFFIX, withoutHlsSuffix, type StreamName } from "../stream/name";

/**
 * One client session on one SRS process. client_id alone is not unique across
 * a fleet (SRS #442), and service_id changes on every SRS restart while
 * server_id does not, so all three together name a session.
 */
export interface SessionId {
  serverId: string;
  serviceId: string;
  clientId: string;
}

export type Role = "publisher" | "viewer";

/** What every hook on a named stream carries. */
interface OnStream {
  session: SessionId;
  /** on_publish / on_unpublish concern the publisher, on_play / on_stop a viewer. */
  role: Role;
  /** The client's ip as cleaned for counting (see cleanIp). */
  ip: string;
  /** The ip field as SRS sent it, when cleaning changed it (cut to 256 characters), for the log. */
  ipGiven?: string;
  stream: StreamName;
}

/** on_publish / on_play: a client asks to start a session; the gate decides. */
export interface StartHook extends OnStream {
  kind: "start";
  action: "on_publish" | "on_play";
  /** The client's query string, without a leading "?". */
  param: string;
  /** SRS serves this client unless allowed or kicked (see servedUnlessAllowed). */
  servedIfRefused: boolean;
  /** A WebRTC client (see isWebrtc): SRS's API has it only once the answer reached SRS. */
  webrtc: boolean;
}

/** on_unpublish / on_stop: a session ended. */
export interface StopHook extends OnStream {
  kind: "stop";
  action: "on_unpublish" | "on_stop";
}

export type StreamHook = StartHook | StopHook;

/** on_close carries no stream: it ends whatever that client still holds. */
export interface CloseHook {
  kind: "close";
  action: "on_close";
  session: SessionId;
}

/** The process a hook that gates nothing came from, when it names one (SRS 5 and later do): proof it is alive. */
export type SenderProcess = Omit<SessionId, "clientId"> | null;

/** on_forward: SRS asks where to forward a publish (nowhere). */
export interface ForwardHook {
  kind: "forward";
  action: "on_forward";
  sender: SenderProcess;
}

/** on_connect, on_dvr, on_hls and anything newer than this code: allowed, not stateful. */
export interface PassiveHook {
  kind: "passive";
  action: string;
  sender: SenderProcess;
}

/** Every hook, told apart by `kind`, so no handler needs a cast. */
export type Hook = StartHook | StopHook | CloseHook | ForwardHook | PassiveHook;

export interface Heartbeat {
  serverId: string;
  serviceId: string;
  deviceId: string;
  ip: string;
  pid: string;
}

/** Turns an SRS hook body (already JSON-parsed) into a typed event, or throws 400. */
export function parseHook(body: unknown): Hook {
  if (!isObject(body)) throw new StatusError(400, "body must be a JSON object");
  const action = requiredString(body, "action");
  switch (action) {
    case "on_publish":
    case "on_play":
      return {
        kind: "start",
        action,
        role: action === "on_publish" ? "publisher" : "viewer",
        ...onStream(body),
        param: within("param", optionalString(body, "param"), LIMITS.param).replace(/^\?/, ""),
        servedIfRefused: servedUnlessAllowed(body),
        webrtc: isWebrtc(body),
      };
    case "on_unpublish":
    case "on_stop":
      // A stop's param is never read, so never a reason to refuse it: SRS does not retry a stop, and one refused leaves a ghost.
      return { kind: "stop", action, role: action === "on_unpublish" ? "publisher" : "viewer", ...onStream(body) };
    case "on_close":
      return { kind: "close", action, session: parseSession(body) };
    case "on_forward":
      return { kind: "forward", action, sender: senderOf(body) };
    default:
      return { kind: "passive", action, sender: senderOf(body) };
  }
}

/** The server_id and service_id of a hook that gates nothing; missing or malformed: null (never a 400). */
function senderOf(body: Record<string, unknown>): SenderProcess {
  const { server_id: serverId, service_id: serviceId } = body;
  const ok = (v: unknown): v is string => typeof v === "string" && v.length <= LIMITS.id.max && LIMITS.id.pattern.test(v);
  return ok(serverId) && ok(serviceId) ? { serverId, serviceId } : null;
}

function onStream(body: Record<string, unknown>): Omit<OnStream, "role"> {
  return {
    session: parseSession(body),
    ip: cleanIp(body.ip),
    ...ipAsGiven(body.ip),
    stream: parseStreamName(body),
  };
}

export function parseHeartbeat(body: unknown): Heartbeat {
  if (!isObject(body)) throw new StatusError(400, "body must be a JSON object");
  return {
    serverId: within("server", requiredString(body, "server"), LIMITS.id),
    serviceId: within("service", requiredString(body, "service"), LIMITS.id),
    deviceId: within("device_id", optionalString(body, "device_id"), LIMITS.label),
    ip: cleanIp(body.ip),
    pid: within("pid", optionalString(body, "pid"), LIMITS.label),
  };
}

/** The longest client ip kept: an IPv6 address with a zone fits. */
export const MAX_IP_LENGTH = 64;

/**
 * The client's `ip` as SRS reports it is informational: the decision log shows
 * it and the brute-force limit counts failed guesses by it, but it is never a
 * reason to fail a hook (a 400 would refuse the client over a label). Some
 * setups send "UNKNOWN", a trailing space, or a proxy list
 * ("203.0.113.9, 10.0.0.1"). Kept: the first element of a comma list,
 * without control characters, trimmed, at most MAX_IP_LENGTH characters;
 * anything but a string is "".
 */
export function cleanIp(value: unknown): string {
  if (typeof value !== "string") return "";
  return value.split(",")[0].replace(/[\x00-\x1f\x7f-\x9f]/g, "").trim().slice(0, MAX_IP_LENGTH);
}

/** The raw ip field, for the decision's log line, when it is not what streamgate counts under. */
function ipAsGiven(value: unknown): { ipGiven?: string } {
  if (value === undefined || value === null || value === cleanIp(value)) return {};
  return { ipGiven: (typeof value === "string" ? value : JSON.stringify(value) ?? String(value)).slice(0, 256) };
}

/** A value of the client's query string: `?key=abc&foo=1`, `key=abc` (WHIP, SRT). */
export function paramValue(param: string, name: string): string | null {
  return new URLSearchParams(param).get(name);
}

function parseSession(body: Record<string, unknown>): SessionId {
  return {
    serverId: within("server_id", requiredString(body, "server_id"), LIMITS.id),
    serviceId: within("service_id", requiredString(body, "service_id"), LIMITS.id),
    clientId: within("client_id", requiredString(body, "client_id"), LIMITS.id),
  };
}

/**
 * SRS serves this client whatever the hook answers, until it is kicked: an HLS viewer whose
 * playlist request named its session id (`hls_ctx` anywhere in its query). SRS 7 registers an HLS
 * session before asking on_play and keeps it whatever the answer is, a refusal, a 400 or a 5xx
 * (srs_app_http_static.cpp, SrsHlsStream::serve_m3u8_ctx calls alive() after the error), so the
 * client's next request with that id is served without a hook. SRS reads the id from the raw query
 * its own way (no percent-decoding; ";", "," and "&" separate; the last value wins): rather than
 * parse it like SRS, any mention of hls_ctx counts, and the id to kick is the hook's client_id,
 * which is the one SRS used. A session id SRS chose is never told to a refused client.
 */
export function servedUnlessAllowed(body: Record<string, unknown>): boolean {
  return (
    body.action === "on_play" &&
    typeof body.stream === "string" && body.stream.endsWith(HLS_SUFFIX) &&
    typeof body.param === "string" && body.param.includes("hls_ctx")
  );
}

/**
 * A WebRTC client: SRS 7 sends a WHEP or WHIP hook with an empty tcUrl, one of its legacy RTC API with
 * the tcUrl of the `streamurl` the client posted (`webrtc://host/app` from SRS's own players). A WHEP
 * player is in SRS's API only once the on_play answer reached SRS (srs_app_rtc_api.cpp: the hook, then
 * create_session), so a ghost check must not ask about it before then. Both ways the tcUrl can lie: an
 * RTMP client connecting with `webrtc://…` passes for one (SRS refuses an RTMP tcUrl without a schema, so
 * not with an empty one), and is then spared ghost checks for a few seconds, nothing more; a legacy RTC
 * client posting `rtmp://…` passes for RTMP, and is asked about at once (README, "SRS caveats").
 */
export function isWebrtc(body: Record<string, unknown>): boolean {
  return body.tcUrl === "" || (typeof body.tcUrl === "string" && /^webrtc:\/\//i.test(body.tcUrl));
}

/**
 * The session and stream of a refused hook's client that SRS serves anyway (servedUnlessAllowed), also
 * when its body failed validation (a param too long, a name outside the rules) or was read only in part
 * (readLeniently), whenever the session parses: what its kick needs (null: no such session).
 */
export function servedSessionOf(body: unknown): { session: SessionId; stream: StreamName } | null {
  if (!isObject(body) || !servedUnlessAllowed(body)) return null;
  try {
    const session = {
      serverId: within("server_id", requiredString(body, "server_id"), LIMITS.id),
      serviceId: within("service_id", requiredString(body, "service_id"), LIMITS.id),
      // The hls_ctx the player chose, which SRS takes at any length: one too long for a session (the hook's 400) is
      // still the id SRS serves and its API kicks. Bounded only by the body (MAX_BODY_BYTES): not as param is, since a
      // param over its limit is itself a reason for the 400, and SRS serves that session all the same.
      clientId: within("client_id", requiredString(body, "client_id"), { ...LIMITS.id, max: MAX_BODY_BYTES }),
    };
    return { session, stream: namedAsSent(body) };
  } catch {
    return null;
  }
}

/**
 * A hook whose body could not be read (over MAX_BODY_BYTES, not UTF-8, not JSON), as far as its first
 * bytes tell, for servedSessionOf: SRS may serve its client whatever the answer. SRS writes a player's X-Forwarded-For into the hook's ip as it came (bytes that are
 * not UTF-8 included), and its HTTP parser takes 80 KiB of request head: such a header, or a long one
 * (with a long query), made the hook unreadable and left the session SRS serves unkicked (e2e run 51).
 * Not UTF-8: read with U+FFFD in their place (an id with such a byte cannot be named in SRS's API: the
 * kick fails and says so). Cut at the limit: SRS writes the
 * session first (srs_app_http_hooks.cpp, on_play: server_id, service_id, action, client_id, ip, vhost,
 * app, stream, tcUrl, param), so the session is read from the head; a stream seen there and not a
 * playlist is no HLS session; one not seen (a long ip before it) may be, and is kicked (a kick asks
 * SRS's API first, and never takes an admitted viewer's id).
 */
export function readLeniently(head: Uint8Array): unknown {
  const text = new TextDecoder().decode(head);
  try {
    return JSON.parse(text);
  } catch {
    return cutOnPlay(text);
  }
}

/** A JSON string as SRS writes it (quotes, backslashes and control characters escaped). */
const JSON_STRING = String.raw`"(?:[^"\\]|\\.)*"`;
const CUT_ON_PLAY = new RegExp(
  String.raw`^\s*\{\s*"server_id"\s*:\s*(${JSON_STRING})\s*,\s*"service_id"\s*:\s*(${JSON_STRING})\s*,\s*"action"\s*:\s*"on_play"\s*,\s*"client_id"\s*:\s*(${JSON_STRING})`,
);

/**
 * The fields of an on_play cut short that servedSessionOf reads: its session,
 * and its names when they came before the cut. Its param is taken to name hls_ctx (it may, past the cut),
 * and its stream, when cut, to be a playlist.
 */
function cutOnPlay(text: string): Record<string, unknown> | null {
  const session = CUT_ON_PLAY.exec(text);
  if (!session) return null;
  const named = (field: string): string | undefined => {
    const m = new RegExp(String.raw`,\s*"${field}"\s*:\s*(${JSON_STRING})\s*[,}]`).exec(text.slice(session[0].length));
    return m ? (JSON.parse(m[1]) as string) : undefined;
  };
  const stream = named("stream");
  return {
    server_id: JSON.parse(session[1]),
    service_id: JSON.parse(session[2]),
    action: "on_play",
    client_id: JSON.parse(session[3]),
    vhost: named("vhost"),
    app: named("app"),
    stream: stream ?? HLS_SUFFIX,
    param: "hls_ctx",
  };
}

/**
 * The stream as the hook names it, for a kick's decision log: a name outside the rules is still the name of a
 * session SRS serves (an app from the path as it came: "/live/./cam.m3u8" is app "live/.", e2e run 51), and the
 * playlist it serves is the file at that path. Such a name is no stream's: the kick
 * is logged by no stream object.
 */
function namedAsSent(body: Record<string, unknown>): StreamName {
  try {
    return parseStreamName(body);
  } catch {
    const named = (v: unknown) => (typeof v === "string" ? v : "");
    return { vhost: named(body.vhost) || DEFAULT_VHOST, app: named(body.app), stream: withoutHlsSuffix(named(body.stream)) };
  }
}

function parseStreamName(body: Record<string, unknown>): StreamName {
  return {
    vhost: within("vhost", optionalString(body, "vhost") || DEFAULT_VHOST, LIMITS.vhost),
    app: within("app", requiredString(body, "app"), LIMITS.app),
    stream: within("stream", withoutHlsSuffix(requiredString(body, "stream")), LIMITS.stream),
  };
}

function requiredString(body: Record<string, unknown>, field: string): string {
  const value = body[field];
  if (typeof value !== "string" || value === "") {
    throw new StatusError(400, `field "${field}" must be a non-empty string`);
  }
  return value;
}

function optionalString(body: Record<string, unknown>, field: string): string {
  const value = body[field];
  if (value === undefined || value === null) return "";
  if (typeof value !== "string") throw new StatusError(400, `field "${field}" must be a string`);
  return value;
}
