/**
 * Where a publisher is admitted: an on_publish decided by the rules
 * (rules.ts decidePublish), and decided again after whatever its refusal or
 * its admission rests on was checked. Only the last decision stores the
 * admission.
 *
 * Before a decision rests on the status of other processes, the stream asks
 * the registry (liveness-rounds.ts):
 * - a refusal because another publisher is live may rest on a ghost (a
 *   crashed, restarted or silent server's session);
 * - an admission possible only because other sessions are suspended may rest
 *   on a server that has just come back.
 * Either way one round of questions to the registry, shared by every hook
 * that arrives while it runs, and the decision is taken again. Admissions that
 * rest on nothing of the kind never pay for it. (Slots work alike: a grant
 * that rests on suspended viewers, or a refusal on viewers elsewhere, has their
 * shards check them first: src/stream/slot-rounds.ts.) A refusal still busy
 * then asks SRS's API about ghosts of lost on_unpublish, and a takeover kicks
 * the holder through it (publisher-api.ts).
 */
import type { VoidedHooks } from "../session/voided-hooks";
import type { SessionId } from "../srs/hook";
import type { DecisionRecords } from "./decision-records";
import type { LivenessRounds } from "./liveness-rounds";
import { sessionKey, type PublishAttempts } from "./publish-attempts";
import type { PublisherApi } from "./publisher-api";
import { decidePublish, Denials, type Decision } from "./rules";
import type { SessionBook } from "./sessions";
import type { StreamSettings } from "./settings";

/**
 * What an on_publish keeps of the time its Worker gives it (HOOK_DEADLINE_MS less what went before)
 * for the answer's way back and the Worker's steps after it: the SRS API calls of a ghost check or a
 * takeover end before.
 */
const ANSWER_MARGIN_MS = 500;

/** What a publisher's admission and its end (publisher-ends.ts) both work with, lent by the stream object. */
export interface PublisherParts {
  sessions(): SessionBook;
  liveness: LivenessRounds;
  publisherApi: PublisherApi;
  attempts: PublishAttempts;
  voidHooks: VoidedHooks;
  records: DecisionRecords;
}

/** What the stream object lends (its tables exist: the stream object admits nobody before). */
export interface PublisherAdmissionHost extends PublisherParts {
  settings(): StreamSettings | null;
  /** A publisher was admitted: the alarm's sweep looks after it. */
  armSweep(): void;
}

export class PublisherAdmission {
  constructor(private host: PublisherAdmissionHost) {}

  private get settings(): StreamSettings | null {
    return this.host.settings();
  }

  private get sessions(): SessionBook {
    return this.host.sessions();
  }

  /** `late()`: the refusal of an attempt that must admit nothing any more (its hook undone, its session stopped meanwhile). */
  async decide(session: SessionId, ip: string, presentedKeyHash: string | null, guessLimit: number, hookId: string, answerWithinMs: number, late: () => Decision | null): Promise<Decision> {
    const { liveness, publisherApi, attempts, voidHooks } = this.host;
    const answerBy = Date.now() + answerWithinMs - ANSWER_MARGIN_MS;
    // A start hook of a process this stream holds suspended: it is back, and the registry says what of it survived.
    if (this.sessions.isSuspended(session.serverId, session.serviceId)) await liveness.refresh(session, true);
    // An attempt that reached the object after the Worker undid its hook (it gave up waiting) admits nothing.
    let decision = late() ?? this.tryPublish(session, ip, presentedKeyHash, guessLimit, false);
    const restsOnSuspended = decision.allow && decision.admit && this.sessions.hasSuspendedPublishers();
    if ((!decision.allow && decision.restsOn === "publisher") || restsOnSuspended) {
      await liveness.refresh(session);
      // Decided again in any case: the blocker may have unpublished meanwhile.
      decision = late() ?? this.tryPublish(session, ip, presentedKeyHash, guessLimit, true);
      // Still busy: the blocker may be a ghost of a lost on_unpublish; its server's SRS API says (src/srs/ghosts.ts).
      if (!decision.allow && decision.restsOn === "publisher" && (await publisherApi.endGhosts(this.sessions.livePublishersBesides(session), answerBy))) {
        decision = late() ?? this.tryPublish(session, ip, presentedKeyHash, guessLimit, true);
      }
      // The right key, another publisher live, and onDuplicatePublish "replace": the old one is kicked first.
      if (!decision.allow && decision.restsOn === "publisher" && this.settings?.onDuplicatePublish === "replace") {
        // Until its kick is sent, an operator's change calls it off: "deny" again, a rotated key, the stream deleted.
        const stillReplaces = () => this.settings?.onDuplicatePublish === "replace" && this.settings.keyHash === presentedKeyHash;
        const { refused, indexed } = await publisherApi.takeOver(session, hookId, answerBy, late, stillReplaces);
        decision = late() ?? refused ?? this.tryPublish(session, ip, presentedKeyHash, guessLimit, true);
        if (indexed && decision.allow && hookId) attempts.indexed(sessionKey(session), hookId);
      }
    } else if (decision.allow && decision.admit) {
      this.admitPublisher(session, ip);
    }
    if (decision.allow && hookId) voidHooks.confirm(sessionKey(session), hookId);
    // Its index entry was written by this hook's takeover (this attempt's, or an earlier one whose answer was lost, the
    // session held since): the Worker must not undo it for a failure of its own write (the old one is kicked).
    if (decision.allow && hookId && attempts.isIndexedBy(sessionKey(session), hookId) && this.sessions.isPublishing(session)) decision = { ...decision, indexed: true };
    this.host.records.recordDecision("on_publish", session, ip, decision);
    return decision;
  }

  /** `admit`: store the admission (the second, final decision); otherwise only decide. */
  private tryPublish(session: SessionId, ip: string, presentedKeyHash: string | null, guessLimit: number, admit: boolean): Decision {
    if (this.sessions.isReplaced(session)) return { allow: false, denial: Denials.retiredProcess };
    this.sessions.heardFrom(session);
    const decision = decidePublish(
      this.settings?.policy() ?? null,
      this.sessions.livePublishersBesides(session),
      this.sessions.isPublishing(session),
      presentedKeyHash,
      () => this.host.records.overLimit("publish", ip, guessLimit),
    );
    this.host.records.countFailure("publish", ip, decision);
    if (admit && decision.allow && decision.admit) this.admitPublisher(session, ip);
    return decision;
  }

  private admitPublisher(session: SessionId, ip: string): void {
    this.sessions.admitPublisher(session, ip);
    this.host.armSweep();
  }
}
