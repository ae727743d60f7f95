import type { Role } from "../srs/hook";
import { newEvent, streamData, type WebhookEvent } from "./event";

/** A session an operator ended (DELETE …/sessions) or had kicked (a rotated key, a deleted stream). */
export interface OperatorEnded {
  streamKey: string;
  role: Role;
  serverId: string;
  clientId: string;
}

/** One session.ended_by_operator event per session; `kicked`: SRS is asked to disconnect the client too. */
export function operatorEvents(sessions: OperatorEnded[], reason: string, kicked: boolean): WebhookEvent[] {
  const now = Date.now();
  return sessions.map((s) =>
    newEvent("session.ended_by_operator", { ...streamData(s.streamKey), role: s.role, server_id: s.serverId, client_id: s.clientId, reason, kicked }, now),
  );
}
