/**
 * What the viewer shards are told of a stream: its viewer policy (the
 * settings and the token revocations in force) at a version. Every PUT,
 * DELETE and revocation makes a new version (policy-pushes.ts stores it and
 * the push owed); the admin call pushes it at once, and the stream object's
 * alarm pushes again, every PUSH_RETRY_MS, to the shards a push could not
 * reach. A shard a push reached late ends the sessions the revocations
 * cover that it admitted meanwhile.
 */
import type { Env } from "../env";
import type { WebhookEvent } from "../events/event";
import type { Revocation, ViewerPolicy } from "../viewers/lease";
import { endRevokedSessions } from "../viewers/revoked";
import type { LeaseBook } from "./leases";
import { PolicyPushes, type PendingPush } from "./policy-pushes";
import { Revocations } from "./revocations";
import type { StreamSettings } from "./settings";
import type { SlotRounds } from "./slot-rounds";

/** A push of the policy that did not reach every shard is tried again this often, from the alarm, until it does. */
export const PUSH_RETRY_MS = 5_000;

/** What the stream object lends: its settings, its leases and rounds, its alarm. */
export interface ShardPolicyHost {
  env(): Env;
  settings(): StreamSettings;
  /** The stream exists (created, not deleted). */
  exists(): boolean;
  leases(): LeaseBook;
  rounds(): SlotRounds;
  /** The alarm runs a check by `at`. */
  armCheck(at: number): void;
  /** Every shard has the policy: the check the alarm was armed for may not be needed. */
  pushSettled(): void;
  /** Events of sessions ended here, for the stream's outbox. */
  keepEvents(events: WebhookEvent[]): void;
}

export class ShardPolicy {
  /** The policy's version (advanced by every PUT, DELETE and revocation) and the push of it owed to the shards. */
  private pushes: PolicyPushes;
  private revocations: Revocations;
  /** The active revocations, as the shards are told them (read once, then kept with every change). */
  private revoked: Revocation[];

  /** The stream object's tables exist. */
  constructor(sql: SqlStorage, private host: ShardPolicyHost) {
    this.revocations = new Revocations(sql, host.env());
    this.revoked = this.revocations.list(nowSeconds());
    this.pushes = new PolicyPushes(sql);
  }

  get version(): number {
    return this.pushes.version;
  }

  /** The push still owed, for the alarm. */
  pending(): PendingPush | null {
    return this.pushes.pending();
  }

  viewerPolicy(): ViewerPolicy | null {
    if (!this.host.exists()) return null;
    // Expired revocations go (each expires once every token it covers has).
    if (this.revoked.some((r) => r.expires !== null && r.expires <= nowSeconds())) this.revoked = this.revocations.list(nowSeconds());
    return this.host.settings().viewerPolicy(this.revoked);
  }

  /** Adds a revocation (Revocations.add) and makes the new policy version; null when MAX_REVOCATIONS are active already. */
  revoke(key: string, sub: string | null, before: number, expires: number): Revocation | null {
    const added = this.revocations.add(sub, before, expires, nowSeconds());
    if (!added) return null;
    this.revoked = this.revocations.list(nowSeconds());
    this.bumpVersion(key);
    return added;
  }

  revocationList(): Revocation[] {
    this.revoked = this.revocations.list(nowSeconds());
    return this.revoked;
  }

  /** A stream created again (after a DELETE) has no revocations. */
  forgetRevocations(): void {
    this.revocations.clear();
    this.revoked = [];
  }

  /**
   * A new policy version, stored with a push to every viewer shard pending
   * (the admin call pushes it at once; if that call never comes or a shard
   * cannot be reached, the alarm tries again every PUSH_RETRY_MS).
   */
  bumpVersion(key: string): void {
    this.pushes.advance(key);
    // Until a push reaches a shard, its viewers are unknown (an unlimited stream's record never shows them, and
    // its silence is no reason to forget it): no slot is granted on its last report, and its record stays.
    this.host.leases().allUnreached();
    this.host.armCheck(Date.now() + PUSH_RETRY_MS);
  }

  /** The new policy to every shard, taking back their unused slots (StreamObject.pushPolicy). */
  async push(key: string): Promise<string[]> {
    const version = this.version;
    const unreached = await this.host.rounds().recall(key, null, "none", "all");
    this.pushed(version, unreached);
    return unreached;
  }

  /** The revocations to every shard, leaving them their slots (StreamObject.pushRevocations). */
  async pushRevocations(key: string): Promise<string[]> {
    const version = this.version;
    // The admin call ends the covered sessions on every shard itself.
    const unreached = await this.host.rounds().recall(key, null, "none", "all", true, "none");
    this.pushed(version, unreached);
    return unreached;
  }

  /** The alarm's try at a push still pending. */
  async retry(pending: PendingPush): Promise<void> {
    // No round reached anyone yet (the admin's push call failed): every shard may still serve revoked sessions.
    const unreached = await this.host.rounds().recall(pending.key, null, "none", pending.whole ? "all" : "unreached", false, pending.whole ? "all" : "again");
    this.pushed(pending.version, unreached);
  }

  /** After a round of pushes for `version`: done, or only the shards it could not reach are left. */
  private pushed(version: number, unreached: string[]): void {
    const pending = this.pushes.pending();
    if (!pending || pending.version !== version) return;
    if (unreached.length === 0 && !this.host.leases().anyUnreached()) {
      this.pushes.settled();
      this.host.pushSettled();
      return;
    }
    this.pushes.reachedSome();
    this.host.armCheck(Date.now() + PUSH_RETRY_MS);
  }

  /**
   * Ends, on a shard a push reached late, the live sessions the active
   * revocations cover (they were admitted before it knew of them), and kicks
   * them. Not reached: the shard is pushed to again (and this runs again).
   */
  async endRevokedOn(key: string, serverId: string, revocations: Revocation[]): Promise<void> {
    if (this.host.settings().playAuth === "open") return; // its viewers need no token (see postRevocation)
    const { unreached } = await endRevokedSessions(this.host.env(), key, [serverId], revocations, (events) => this.host.keepEvents(events)).catch((err) => {
      console.error(JSON.stringify({ error: "revoked sessions not ended", server: serverId, stream: key, detail: String(err) }));
      return { unreached: [serverId] };
    });
    if (unreached.length === 0) return;
    this.host.leases().unreached(serverId);
    if (!this.pushes.pending()) this.pushes.owe(key, false);
    this.host.armCheck(Date.now() + PUSH_RETRY_MS);
  }
}

function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}
