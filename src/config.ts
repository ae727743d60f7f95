import { StatusError } from "itty-router";
import type { Env } from "./env";

/** Secrets shorter than this are refused: the Worker will not run with them. */
export const MIN_SECRET_LENGTH = 32;

type SecretName = "HOOK_SECRET" | "HOOK_SECRET_PREVIOUS" | "ADMIN_TOKEN" | "TOKEN_SIGNING_KEY" | "TOKEN_SIGNING_KEY_PREVIOUS";

/** Whether a secret that is set is too short to be used. */
export function tooShort(value: string): boolean {
  return value.length < MIN_SECRET_LENGTH;
}

/**
 * A secret the caller's path cannot work without: unset or shorter than
 * MIN_SECRET_LENGTH is a 500 naming it, and `consequence` says what that
 * stops ("refusing every hook").
 */
export function requiredSecret(env: Env, name: SecretName, consequence: string): string {
  const value = env[name];
  if (!value) throw new StatusError(500, `${name} is not configured: ${consequence}`);
  return checkedSecret(name, value, consequence);
}

/** A secret that may be unset (the _PREVIOUS ones during a rotation); set but too short is a 500 naming it. */
export function optionalSecret(env: Env, name: SecretName, consequence: string): string | undefined {
  const value = env[name];
  return value ? checkedSecret(name, value, consequence) : undefined;
}

function checkedSecret(name: SecretName, value: string, consequence: string): string {
  if (tooShort(value)) {
    throw new StatusError(
      500,
      `${name} is shorter than ${MIN_SECRET_LENGTH} characters: ${consequence} (set a random one, e.g. openssl rand -hex 24)`,
    );
  }
  return value;
}

export const DEFAULT_SERVER_TIMEOUT_S = 30;

/**
 * SERVER_TIMEOUT_S ([vars]): heartbeat silence after which a server is silent: its sessions are
 * suspended (they neither count nor block) until its process is heard from again.
 * A value that is set but not a positive number is a configuration error.
 */
export function serverTimeoutMs(env: Env): number {
  return positiveSeconds("SERVER_TIMEOUT_S", env.SERVER_TIMEOUT_S, DEFAULT_SERVER_TIMEOUT_S);
}

export const DEFAULT_AUTH_FAILURES_PER_MINUTE = 10;

/**
 * AUTH_FAILURES_PER_MINUTE ([vars]): failed key or token guesses one client ip
 * may make at one stream per minute; past it, its further failures there are
 * answered "rate limited" (a right key or a valid token is never refused).
 * It gates start hooks, so a malformed value fails them closed (a 500 naming it).
 */
export function authFailuresPerMinute(env: Env): number {
  const raw = env.AUTH_FAILURES_PER_MINUTE;
  if (raw === undefined || raw === "") return DEFAULT_AUTH_FAILURES_PER_MINUTE;
  const limit = Number(raw);
  if (!Number.isSafeInteger(limit) || limit < 1) {
    throw new StatusError(500, `AUTH_FAILURES_PER_MINUTE must be a positive integer, not "${raw}"`);
  }
  return limit;
}

export const DEFAULT_SESSION_GRACE_S = 86_400;

/**
 * SESSION_GRACE_S ([vars]): how long the sessions of a silent server are kept,
 * suspended, in case the same process is heard from again (a partition that
 * heals). Past it they end for good. Suspended sessions neither count nor
 * block, so a malformed value is logged and the default applies (orDefault).
 */
export function sessionGraceMs(env: Env): number {
  return orDefault("SESSION_GRACE_S", env.SESSION_GRACE_S, DEFAULT_SESSION_GRACE_S, "a positive number of seconds", (n) => n > 0) * 1000;
}

export const DEFAULT_SERVER_RETENTION_S = 7 * 86_400;

/** SERVER_RETENTION_S ([vars]): a server silent and without sessions this long is forgotten (malformed: orDefault). */
export function serverRetentionMs(env: Env): number {
  return orDefault("SERVER_RETENTION_S", env.SERVER_RETENTION_S, DEFAULT_SERVER_RETENTION_S, "a positive number of seconds", (n) => n > 0) * 1000;
}

/** A [vars] duration in seconds, as milliseconds; set but not a positive number: a 500 naming it. */
function positiveSeconds(name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined || raw === "") return fallback * 1000;
  const seconds = Number(raw);
  if (!Number.isFinite(seconds) || seconds <= 0) {
    throw new StatusError(500, `${name} must be a positive number of seconds, not "${raw}"`);
  }
  return seconds * 1000;
}

const malformedLogged = new Set<string>();

/**
 * A [vars] number that no access decision rests on (how long suspended
 * sessions, idle records or usage are kept): set but malformed, it is
 * logged once per isolate, naming it, and `fallback` applies, so a typo
 * never fails a hook, a heartbeat or an alarm that does not need it.
 */
function orDefault(name: string, raw: string | undefined, fallback: number, expected: string, valid: (n: number) => boolean): number {
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (Number.isFinite(n) && valid(n)) return n;
  if (!malformedLogged.has(`${name}=${raw}`)) {
    malformedLogged.add(`${name}=${raw}`);
    console.error(JSON.stringify({ error: `${name} must be ${expected}, not "${raw}": the default ${fallback} applies` }));
  }
  return fallback;
}

export const DEFAULT_MAX_TOKEN_TTL_S = 30 * 86_400;

/**
 * MAX_TOKEN_TTL_S ([vars]): a play token whose expiry lies further ahead than
 * this is refused, whoever signed it, so a leaked token (or one minted by
 * mistake for years) is worth at most this long. Minting never goes beyond it.
 */
export function maxTokenTtlS(env: Env): number {
  const raw = env.MAX_TOKEN_TTL_S;
  if (raw === undefined || raw === "") return DEFAULT_MAX_TOKEN_TTL_S;
  const seconds = Number(raw);
  if (!Number.isSafeInteger(seconds) || seconds < 1) {
    throw new StatusError(500, `MAX_TOKEN_TTL_S must be a positive integer number of seconds, not "${raw}"`);
  }
  return seconds;
}

export const DEFAULT_USAGE_RETENTION_DAYS = 90;

/**
 * USAGE_RETENTION_DAYS ([vars]): how long hourly usage is kept, in milliseconds. Read where
 * sessions end, so a malformed value never fails a hook: it is logged and the default applies.
 */
export function usageRetentionMs(env: Env): number {
  return orDefault("USAGE_RETENTION_DAYS", env.USAGE_RETENTION_DAYS, DEFAULT_USAGE_RETENTION_DAYS, "a positive number of days", (n) => n > 0) * 86_400_000;
}
