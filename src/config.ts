import { StatusError } from "itty-router";
import type { Env } from "./env";

export const DEFAULT_SERVER_TIMEOUT_S = 30;

/**
 * SERVER_TIMEOUT_S ([vars]): heartbeat silence after which a server is dead.
 * A value that is set but not a positive number is a configuration error.
 */
export function serverTimeoutMs(env: Env): number {
  const raw = env.SERVER_TIMEOUT_S;
  if (raw === undefined || raw === "") return DEFAULT_SERVER_TIMEOUT_S * 1000;
  const seconds = Number(raw);
  if (!Number.isFinite(seconds) || seconds <= 0) {
    throw new StatusError(500, `SERVER_TIMEOUT_S must be a positive number of seconds, not "${raw}"`);
  }
  return seconds * 1000;
}
