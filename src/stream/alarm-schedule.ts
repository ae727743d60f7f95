/**
 * When the stream object's alarm fires. A Durable Object has one alarm, and
 * the stream has two kinds of work for it:
 * - the check: rounds for viewer shards waiting for slots, and a push of the
 *   policy still owed (shard-policy.ts), soon after they are owed;
 * - the sweep: the registry asked about the processes holding sessions here,
 *   ghosts of lost stop events, the events outbox, every 2 × SERVER_TIMEOUT_S
 *   while there are sessions.
 * The alarm is set for the earlier of the two; when it fires, the stream
 * object's alarm handler asks which is due.
 */
import { serverTimeoutMs } from "../config";
import type { Env } from "../env";

export class AlarmSchedule {
  /** While shards wait for slots or a push is owed: the next round (at alarm time). */
  private checkAt: number | null = null;
  /** When the next sweep is due (alarm): the registry's view of the processes holding sessions here. */
  private sweepAt: number | null = null;
  /** When the alarm is set to fire (null: not set). */
  private alarmAt: number | null = null;

  constructor(
    private storage: DurableObjectStorage,
    private env: () => Env,
  ) {}

  /** The alarm as stored, when the object starts. */
  async load(): Promise<void> {
    this.alarmAt = await this.storage.getAlarm();
  }

  armSweep(): void {
    if (this.sweepAt !== null) return;
    // The registry tells streams about silences and restarts itself;
    // this slower sweep catches whatever its notices missed.
    this.sweepAt = Date.now() + 2 * serverTimeoutMs(this.env());
    this.setAlarmBy(this.sweepAt);
  }

  armCheck(at: number): void {
    if (this.checkAt !== null && this.checkAt <= at) return;
    this.checkAt = at;
    this.setAlarmBy(at);
  }

  /**
   * No check is owed any more: the alarm set for it is not needed, and goes if nothing else wants it (`idle`: no
   * sessions to sweep, no events waiting).
   */
  dropCheck(idle: () => boolean): void {
    this.checkAt = null;
    if (this.sweepAt === null && idle() && this.alarmAt !== null) {
      this.alarmAt = null;
      void this.storage.deleteAlarm();
    }
  }

  /** The alarm fired: none is set now. */
  fired(): void {
    this.alarmAt = null;
  }

  /** At alarm time: is the check due (`owed`: rounds are owed, else no check is)? A check due is taken now. */
  takeCheck(owed: boolean, now: number): boolean {
    if (!owed) this.checkAt = null;
    const due = owed && (this.checkAt === null || now >= this.checkAt);
    if (due) this.checkAt = null;
    return due;
  }

  /** At alarm time: the sweep is not due yet (the alarm fired early for a check). */
  sweepLater(now: number): boolean {
    return this.sweepAt !== null && now < this.sweepAt;
  }

  /** At alarm time: the sweep runs (its next one is armed by whoever needs it). */
  takeSweep(): void {
    this.sweepAt = null;
  }

  /** After the alarm's work: the alarm is set again for what is still scheduled. */
  setNext(): void {
    const next = Math.min(this.checkAt ?? Infinity, this.sweepAt ?? Infinity);
    if (next !== Infinity) this.setAlarmBy(next);
  }

  /** The alarm fires at `at` or earlier. */
  private setAlarmBy(at: number): void {
    if (this.alarmAt !== null && this.alarmAt <= at) return;
    this.alarmAt = at;
    void this.storage.setAlarm(at);
  }
}
