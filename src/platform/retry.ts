/**
 * Platform errors of Durable Object calls: which to retry, and how the rest
 * fail closed.
 *
 * Cloudflare, "Durable Objects › Error handling"
 * (https://developers.cloudflare.com/durable-objects/best-practices/error-handling/):
 * an error with `.retryable === true` may be retried if the request is
 * idempotent, with exponential backoff and a new stub (an exception can leave
 * a stub broken); one with `.overloaded === true` must not be (a retry only
 * adds load to an object that cannot keep up); `.remote === true` marks an
 * error thrown by the object's own code (or its memory or CPU limits). The
 * runtime itself already retries calls that never reached the object
 * ("Automatic retries", same docs); what reaches us is the rest.
 *
 * So: retry only `retryable && !overloaded`, at most RETRY.attempts times,
 * full-jitter exponential backoff, a fresh stub each attempt, and no retry
 * starts after RETRY.budgetMs. Everything else is rethrown at once. Only
 * calls that are safe to repeat go through here; each caller says why its
 * call is.
 *
 * A call that neither answers nor fails (an object stuck behind a slow
 * neighbour) is bounded apart: every object call of one hook shares the
 * hook's HOOK_DEADLINE_MS (Deadline), past which the hook fails closed with
 * its reason, well before the 30 s after which SRS gives up on the hook and
 * refuses the client with no reason anyone can read.
 * (cloudflare/partykit's partyserver does the same for its routing calls:
 * `isRetryableDurableObjectError`, packages/partyserver/src/index.ts.)
 */
import { StatusError } from "itty-router";

export interface RetryOptions {
  /** Attempts in all, the first included. */
  attempts: number;
  /** Backoff before retry n is random in [0, min(capMs, baseMs·2^(n-1))). */
  baseMs: number;
  capMs: number;
  /** No retry starts once this much time has passed since the first attempt (nor when its backoff would end later). */
  budgetMs: number;
}

export const RETRY: RetryOptions = { attempts: 3, baseMs: 50, capMs: 500, budgetMs: 2_000 };

/** Every object call of one hook together, retries included, gets this long (SRS waits 30 s). */
export const HOOK_DEADLINE_MS = 10_000;
/** An undo after the deadline passed still gets this long (it voids an attempt that may still admit). */
export const UNDO_WAIT_MS = 2_000;

/** The time left to a hook's object calls. */
export class Deadline {
  /** A hook's deadline: HOOK_DEADLINE_MS (tests shorten it to make an object miss it). */
  static hookMs = HOOK_DEADLINE_MS;
  private readonly at: number;

  constructor(ms = Deadline.hookMs) {
    this.at = Date.now() + ms;
  }

  /** Milliseconds left, at least `floor`. */
  left(floor = 0): number {
    return Math.max(floor, this.at - Date.now());
  }
}

/** An object call that did not answer in the time it had. */
export class NoAnswer extends Error {
  constructor(readonly ms: number) {
    super(`no answer within ${ms} ms`);
  }
}

/** The platform marks it safe to try again, and not because the object is overloaded. */
export function isRetryable(err: unknown): boolean {
  if (typeof err !== "object" || err === null) return false;
  const e = err as { retryable?: unknown; overloaded?: unknown };
  return e.retryable === true && e.overloaded !== true;
}

/** What kind of failure it was, as the platform marks it: for logs and the reason SRS sees. */
export type ErrorClass = "overloaded" | "retryable" | "remote" | "timeout" | "other";

export function errorClass(err: unknown): ErrorClass {
  if (err instanceof NoAnswer) return "timeout";
  const e = (typeof err === "object" && err !== null ? err : {}) as { retryable?: unknown; overloaded?: unknown; remote?: unknown };
  if (e.overloaded === true) return "overloaded";
  if (e.retryable === true) return "retryable";
  if (e.remote === true) return "remote";
  return "other";
}

/**
 * Calls `call` on a stub from `stub()`; on a retryable platform error, waits
 * (full jitter) and calls again on a fresh stub, within `options`' bounds.
 * Any other error, or the last one, is rethrown as it is.
 */
export async function withRetry<S, T>(stub: () => S, call: (stub: S) => Promise<T>, options: RetryOptions = RETRY): Promise<T> {
  const began = Date.now();
  for (let attempt = 1; ; attempt++) {
    try {
      return await call(stub());
    } catch (err) {
      if (attempt >= options.attempts || !isRetryable(err)) throw err;
      const delay = Math.floor(Math.random() * Math.min(options.capMs, options.baseMs * 2 ** (attempt - 1)));
      if (Date.now() - began + delay > options.budgetMs) throw err;
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

/** Rejects (NoAnswer) when `promise` takes longer than `ms` (the call itself goes on; its answer is dropped). */
export function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new NoAnswer(ms)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export type Target = "stream object" | "registry" | "viewer shard" | "viewer seats";

/**
 * A hook that could not be carried out because an object call failed: SRS
 * gets a non-2xx answer whose reason says which object and how, and the
 * Worker logs one line (src/index.ts) with the hook's fields and the error's
 * class. Overloaded and retryable-but-still-failing objects answer 503; an
 * error thrown by our own object code 500. The cause's message goes to the
 * log only, never to SRS.
 */
export class ObjectCallFailed extends StatusError {
  readonly errorClass: ErrorClass;
  readonly target: Target;
  readonly detail: string;
  readonly fields: Record<string, unknown>;

  constructor(target: Target, cause: unknown, outcome: string, fields: Record<string, unknown>) {
    const kind = errorClass(cause);
    const how = {
      overloaded: "unavailable (overloaded)",
      retryable: "unavailable (still failing after retries)",
      timeout: "unavailable (no answer in time)",
      remote: "failed",
      other: "failed",
    }[kind];
    super(kind === "remote" || kind === "other" ? 500 : 503, `${target} ${how}: ${outcome}`);
    this.errorClass = kind;
    this.target = target;
    this.detail = String(cause).slice(0, 300);
    this.fields = fields;
  }
}

/**
 * An object that could not reach another object it needed for a hook (a
 * viewer shard asking the registry or the stream): it answers this instead
 * of throwing, so the Worker names the object that failed, with its class,
 * and does not retry the whole hook (the inner call was retried already).
 */
export interface Unreachable {
  unreachable: Target;
  errorClass: ErrorClass;
  detail: string;
}

/** Thrown inside the calling object by `nested`; turned into an Unreachable answer at its RPC method. */
export class NestedCallFailed extends Error {
  constructor(
    readonly target: Target,
    readonly cause: unknown,
  ) {
    super(`${target}: ${String(cause)}`);
  }

  get unreachable(): Unreachable {
    return { unreachable: this.target, errorClass: errorClass(this.cause), detail: String(this.cause).slice(0, 300) };
  }
}

/** withRetry for a call from one object to another; what still fails is a NestedCallFailed naming the callee. */
export async function nested<S, T>(target: Target, stub: () => S, call: (stub: S) => Promise<T>): Promise<T> {
  try {
    return await withRetry(stub, call);
  } catch (err) {
    throw new NestedCallFailed(target, err);
  }
}

/** The ObjectCallFailed a hook ends with when its object answered Unreachable. */
export function unreachableFailure(u: Unreachable, outcome: string, fields: Record<string, unknown>): ObjectCallFailed {
  if (u.errorClass === "timeout") return new ObjectCallFailed(u.unreachable, new NoAnswer(0), outcome, fields);
  const flags = { overloaded: u.errorClass === "overloaded", retryable: u.errorClass === "retryable", remote: u.errorClass === "remote" };
  return new ObjectCallFailed(u.unreachable, Object.assign(new Error(u.detail), flags), outcome, fields);
}

/**
 * withRetry within `withinMs` (a hook's Deadline: what is left of it), and a
 * failure that is left becomes an ObjectCallFailed when it came from the
 * object call (the platform marked it overloaded, retryable or remote, or it
 * did not answer in time). Anything else arose in the Worker itself (a
 * setting it could not read, a broken binding) and passes through unchanged:
 * a StatusError as it is, the rest as the generic "internal error" of
 * src/index.ts.
 */
export async function callObject<S, T>(
  target: Target,
  stub: () => S,
  call: (stub: S) => Promise<T>,
  outcome: string,
  fields: Record<string, unknown>,
  withinMs = HOOK_DEADLINE_MS,
): Promise<T> {
  try {
    if (withinMs <= 0) throw new NoAnswer(0);
    return await withTimeout(withRetry(stub, call), withinMs);
  } catch (err) {
    if (err instanceof StatusError || errorClass(err) === "other") throw err;
    throw new ObjectCallFailed(target, err, outcome, fields);
  }
}
