import { hashesEqual } from "../auth/secrets";
import type { SessionId } from "../srs/hook";

/**
 * The allow/deny rules, as pure functions of the stream's state and the event.
 * The Durable Object loads the state, calls these, and stores what they admit.
 */

export type PlayAuth = "open" | "token";

export interface StreamPolicy {
  keyHash: string;
  maxViewers: number | null;
  playAuth: PlayAuth;
}

export interface Denial {
  /** Non-zero integer code SRS logs; one per reason so operators can grep for it. */
  code: number;
  reason: string;
}

/**
 * `admit` says whether the event starts a new session (false: repeat of a live one).
 * `restsOn` marks denials caused by other live sessions: those are the ones
 * a ghost (a crashed or restarted server's session) could cause, so the stream
 * checks that the sessions are still alive before the denial stands.
 */
export type Decision =
  | { allow: true; admit: boolean }
  | { allow: false; denial: Denial; restsOn?: "publisher" | "viewers" };

export const Denials = {
  unknownStream: { code: 4001, reason: "unknown stream: create it with PUT /admin/streams/{app}/{stream}" },
  missingKey: { code: 4002, reason: "missing publish key: add ?key=<publishKey> to the stream URL" },
  badKey: { code: 4003, reason: "invalid publish key" },
  retiredProcess: {
    code: 4006,
    reason: "stale server process: this server restarted and the hook comes from its replaced process (old service_id)",
  },
  tokenRequired: { code: 4010, reason: "missing token: this stream requires a play token" },
} satisfies Record<string, Denial>;

export function publisherBusy(publisher: SessionId): Denial {
  return {
    code: 4004,
    reason: `stream busy: already published by client ${publisher.clientId} on server ${publisher.serverId}`,
  };
}

export function viewerCapReached(maxViewers: number): Denial {
  return { code: 4005, reason: `viewer cap reached: ${maxViewers} of ${maxViewers} viewers` };
}

export function sameSession(a: SessionId, b: SessionId): boolean {
  return a.serverId === b.serverId && a.serviceId === b.serviceId && a.clientId === b.clientId;
}

/*
 * A repeat of a live session is checked first: it was authorised when it was
 * admitted, and it changes nothing. So a denial always means "this session is
 * not live in this role", which the hook handler relies on.
 */

/** One publisher per stream; a repeated on_publish of the live session changes nothing. */
export function decidePublish(
  policy: StreamPolicy | null,
  publisher: SessionId | null,
  session: SessionId,
  presentedKeyHash: string | null,
): Decision {
  if (publisher && sameSession(publisher, session)) return { allow: true, admit: false };
  if (!policy) return deny(Denials.unknownStream);
  if (presentedKeyHash === null) return deny(Denials.missingKey);
  if (!hashesEqual(presentedKeyHash, policy.keyHash)) return deny(Denials.badKey);
  if (publisher) return { allow: false, denial: publisherBusy(publisher), restsOn: "publisher" };
  return { allow: true, admit: true };
}

/** A viewer is admitted while live viewers are under the cap; a repeat is not counted twice. */
export function decidePlay(policy: StreamPolicy | null, viewers: number, alreadyViewing: boolean): Decision {
  if (alreadyViewing) return { allow: true, admit: false };
  if (!policy) return deny(Denials.unknownStream);
  if (policy.playAuth === "token") return deny(Denials.tokenRequired);
  if (policy.maxViewers !== null && viewers >= policy.maxViewers) {
    return { allow: false, denial: viewerCapReached(policy.maxViewers), restsOn: "viewers" };
  }
  return { allow: true, admit: true };
}

function deny(denial: Denial): Decision {
  return { allow: false, denial };
}
