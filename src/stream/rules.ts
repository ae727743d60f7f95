import { hashesEqual } from "../auth/secrets";
import { MAX_CLOCK_SKEW_S, type TokenVerdict } from "../auth/token";
import type { SessionId } from "../srs/hook";

/**
 * The allow/deny rules, as pure functions of the stream's state and the event.
 * The Durable Object loads the state, calls these, and stores what they admit.
 */

export type PlayAuth = "open" | "token";

/** What an on_publish with the right key does while another publisher holds the stream. */
export type OnDuplicatePublish = "deny" | "replace";

/** What an on_play does when its viewer id (token `sub`) already has maxSessionsPerViewer live sessions. */
export type OnExtraViewerSession = "deny" | "replace";

export interface StreamPolicy {
  keyHash: string;
  maxViewers: number | null;
  playAuth: PlayAuth;
}

export interface Denial {
  /** Non-zero integer code SRS logs; one per reason so operators can grep for it. */
  code: number;
  reason: string;
  /** The gate's own configuration is wrong (a signing key unset or too short): answered 500, not 403. */
  misconfigured?: true;
}

/**
 * `admit` says whether the event starts a new session (false: repeat of a live one).
 * `restsOn: "publisher"` marks a refusal because another publisher is live: one a ghost (a
 * silent or restarted server's session, a lost on_unpublish) could cause, so the stream checks
 * that the publisher is still there before the refusal stands. (A viewer refused at the cap rests
 * on the viewers of every shard: the stream checks them when a shard asks for slots,
 * src/stream/slot-rounds.ts.)
 */
export type Decision =
  /**
   * `indexed`: the stream itself wrote this hook's publisher index entry before it kicked the old
   * publisher (a takeover, src/stream/publisher-api.ts), so the Worker's own write beside the decision
   * is not needed: were it to fail, undoing the admission would leave the old publisher kicked for nothing.
   */
  | { allow: true; admit: boolean; indexed?: boolean }
  | { allow: false; denial: Denial; restsOn?: "publisher" };

export const Denials = {
  unknownStream: { code: 4001, reason: "unknown stream: create it with PUT /admin/streams/{app}/{stream}" },
  missingKey: { code: 4002, reason: "missing publish key: add ?key=<publishKey> to the stream URL" },
  badKey: { code: 4003, reason: "invalid publish key" },
  rateLimited: { code: 4029, reason: "rate limited" },
  retiredProcess: {
    code: 4006,
    reason: "stale server process: this server restarted and the hook comes from its replaced process (old service_id)",
  },
  /** A second WebRTC session on one HTTP connection: SRS gives it the live one's client id (src/viewers/admission.ts webrtcTwin). */
  webrtcTwin: { code: 4007, reason: "client id already live: a second WebRTC session on the same HTTP connection cannot be counted apart" },
  /** Never reaches SRS: an attempt of a hook the Worker already answered (and undid) finishing late. */
  admissionUndone: { code: 4008, reason: "admission undone: an earlier answer of this hook was lost and the hook failed" },
  /** Never reaches SRS either: a late attempt whose session's stop event came while it was decided (another attempt was answered). */
  stoppedWhileDeciding: { code: 4008, reason: "admission undone: the session's stop event arrived while this attempt was decided" },
  /** maxSessionsPerViewer: the token's viewer id has that many live sessions on the stream. */
  viewerSessionLimit: { code: 4016, reason: "viewer session limit" },
  /** maxSessionsPerViewer on a token stream: only tokens that name their viewer (sub) can be counted. */
  noViewerId: { code: 4018, reason: "token names no viewer (sub): this stream limits sessions per viewer" },
  /** POST /admin/streams/{app}/{stream}/revocations covers this token. */
  tokenRevoked: { code: 4019, reason: "token revoked" },
} satisfies Record<string, Denial>;

/** What the Worker found out about an on_play's ?token= before asking the stream. */
export type PlayToken = TokenVerdict | { ok: false; problem: "not configured" | "signing key too short" | "previous signing key too short" };

/** The viewer id a token names, once its signature was checked (a refused genuine token names it too); else null. */
export function tokenSub(token: PlayToken): string | null {
  return ("sub" in token && token.sub) || null;
}

/** Denials of streams with playAuth "token", one code per problem. */
export const TokenDenials: Record<Exclude<PlayToken, { ok: true }>["problem"], Denial> = {
  "missing token": { code: 4010, reason: "missing token" },
  "malformed token": { code: 4011, reason: "malformed token" },
  "bad signature": { code: 4012, reason: "bad signature" },
  expired: { code: 4013, reason: "expired" },
  "issued in the future": { code: 4020, reason: `token issued in the future: iat more than ${MAX_CLOCK_SKEW_S} s ahead of the gate's clock` },
  "lifetime too long": { code: 4017, reason: "token lifetime exceeds MAX_TOKEN_TTL_S" },
  "wrong stream": { code: 4014, reason: "wrong stream" },
  "not configured": { code: 4015, reason: "play tokens are not configured: TOKEN_SIGNING_KEY is not set", misconfigured: true },
  "signing key too short": { code: 4015, reason: "play tokens are not configured: TOKEN_SIGNING_KEY is shorter than 32 characters", misconfigured: true },
  "previous signing key too short": {
    code: 4015,
    reason: "play tokens are not configured: TOKEN_SIGNING_KEY_PREVIOUS is shorter than 32 characters",
    misconfigured: true,
  },
};

/**
 * Denials that count as a guess at a key or token, for the brute-force limit.
 * A missing key or token is no guess, and an expired token was genuine.
 * Every one of them is a failed key or token, never a valid one.
 */
export function isFailedGuess(denial: Denial): boolean {
  return [Denials.badKey, TokenDenials["malformed token"], TokenDenials["bad signature"], TokenDenials["wrong stream"]].some(
    (d) => d.code === denial.code,
  );
}

export function publisherBusy(publisher: SessionId): Denial {
  return {
    code: 4004,
    reason: `stream busy: already published by client ${publisher.clientId} on server ${publisher.serverId}`,
  };
}

/** The code of a refused takeover (takeoverFailed). */
export const TAKEOVER_FAILED = 4009;

/** onDuplicatePublish "replace" could not take the stream over: the old publisher could not be kicked. */
export function takeoverFailed(holder: SessionId, why: string): Denial {
  return { code: TAKEOVER_FAILED, reason: `publisher takeover failed: ${why} (client ${holder.clientId} on server ${holder.serverId} keeps the stream)` };
}

export function viewerCapReached(maxViewers: number): Denial {
  return { code: 4005, reason: `viewer cap reached: ${maxViewers} of ${maxViewers} viewers` };
}

/*
 * A repeat of a live session is checked first: it was authorised when it was
 * admitted, and it changes nothing. So a denial always means "this session is
 * not live in this role", which the hook handler relies on.
 */

/**
 * One publisher per stream; a repeated on_publish of the live session changes
 * nothing. `livePublishers`: publisher sessions that count now (their server
 * is not silent). `overLimit`: has the client's ip used up its failed guesses
 * at this stream lately? Asked only when the key is wrong (it costs a read), so
 * a right key is never refused by the limit.
 */
export function decidePublish(
  policy: StreamPolicy | null,
  livePublishers: SessionId[],
  alreadyPublishing: boolean,
  presentedKeyHash: string | null,
  overLimit: () => boolean,
): Decision {
  if (alreadyPublishing) return { allow: true, admit: false };
  if (!policy) return deny(Denials.unknownStream);
  if (presentedKeyHash === null) return deny(Denials.missingKey);
  if (!hashesEqual(presentedKeyHash, policy.keyHash)) return deny(overLimit() ? Denials.rateLimited : Denials.badKey);
  if (livePublishers.length > 0) return { allow: false, denial: publisherBusy(livePublishers[0]), restsOn: "publisher" };
  return { allow: true, admit: true };
}

/**
 * The play token of an on_play: on a playAuth "token" stream a missing or bad one is refused with
 * its problem, and `overLimit` turns a failed guess into "rate limited" (a valid token never is).
 * Allowed otherwise: the cap, session limits and repeats are the viewer shard's (src/viewers/admission.ts).
 */
export function decideToken(policy: StreamPolicy | null, token: PlayToken, overLimit: () => boolean): Decision {
  if (!policy) return deny(Denials.unknownStream);
  if (policy.playAuth === "token" && !token.ok) {
    const denial = TokenDenials[token.problem];
    return deny(isFailedGuess(denial) && overLimit() ? Denials.rateLimited : denial);
  }
  return { allow: true, admit: true };
}

function deny(denial: Denial): Decision {
  return { allow: false, denial };
}
