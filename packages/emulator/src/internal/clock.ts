/**
 * Time source of the emulator. The batch lifecycle is a pure function of
 * time (no per-batch timers), so a restarted emulator continues where the
 * previous one left off, and a test can drive it: inject a clock, or hold,
 * advance and release this one through `POST /_emulator/clock`.
 */
import { invalidRequest } from "./errors.js"

export type Clock = () => number

export const systemClock: Clock = () => Date.now()

/** OpenAI timestamps are Unix seconds. */
export const toUnixSeconds = (ms: number): number => Math.floor(ms / 1000)

export const toUnixSecondsOrNull = (ms: number | null | undefined): number | null =>
  ms === null || ms === undefined ? null : toUnixSeconds(ms)

export interface ClockState {
  /** The emulator's time (ms since epoch). */
  readonly now: number
  /** Whether it stands still until advanced or released. */
  readonly held: boolean
}

/**
 * The emulator's clock: a source (the system clock or an injected one) that can be held
 * (it stands still), moved forward, and released (it runs on from where it stood, never
 * jumping back or ahead). Time never goes backwards.
 */
export class EmulatorClock {
  private heldAt: number | null = null
  private offsetMs = 0

  constructor(
    private readonly source: Clock,
    /** An injected source is driven by its owner, as a held clock is by its controller. */
    private readonly injected: boolean
  ) {}

  readonly now: Clock = () => this.heldAt ?? this.source() + this.offsetMs

  /**
   * Whether a test drives time (an injected source, or held). A poll then waits for slow
   * work (validation, result files) instead of answering "validating"/"finalizing" meanwhile:
   * what a poll answers depends on the clock alone, never on how busy the machine is.
   */
  get driven(): boolean {
    return this.injected || this.heldAt !== null
  }

  get state(): ClockState {
    return { now: this.now(), held: this.heldAt !== null }
  }

  hold(): void {
    this.heldAt ??= this.now()
  }

  advance(ms: number): void {
    if (this.heldAt !== null) this.heldAt += ms
    else this.offsetMs += ms
  }

  release(): void {
    if (this.heldAt === null) return
    this.offsetMs = this.heldAt - this.source()
    this.heldAt = null
  }

  /**
   * Applies a `POST /_emulator/clock` body: `{hold: true}`, `{advanceMs: N}`, `{release: true}`,
   * combined in that order (`{advanceMs: 5000, release: true}` moves, then lets it run).
   */
  apply(body: unknown): void {
    if (typeof body !== "object" || body === null || Array.isArray(body)) {
      throw invalidRequest("Expected a JSON object: {\"hold\": true}, {\"advanceMs\": N} and/or {\"release\": true}.")
    }
    const { hold, advanceMs, release, ...unknown } = body as Record<string, unknown>
    const extra = Object.keys(unknown)[0]
    if (extra !== undefined) throw invalidRequest(`Unknown clock setting '${extra}'. Known: hold, advanceMs, release.`, extra)
    if (hold !== undefined && hold !== true) throw invalidRequest("'hold' must be true.", "hold")
    if (release !== undefined && release !== true) throw invalidRequest("'release' must be true.", "release")
    if (hold === true && release === true) throw invalidRequest("Give 'hold' or 'release', not both.", "hold")
    if (advanceMs !== undefined && (typeof advanceMs !== "number" || !Number.isFinite(advanceMs) || advanceMs < 0)) {
      throw invalidRequest("'advanceMs' must be a number of ms >= 0 (time never goes backwards).", "advanceMs")
    }
    if (hold === true) this.hold()
    if (typeof advanceMs === "number") this.advance(advanceMs)
    if (release === true) this.release()
  }
}

/** How long a poll on the running clock waits for slow work before answering "still at it". */
const POLL_WAIT_MS = 250

/**
 * Whether `work` (validating an input, writing result files) is done in time for a poll's
 * answer. On the running clock a big input or result file takes a while, and the poll
 * answers "validating"/"finalizing" meanwhile, as the real service would (after 250 ms).
 * On a driven clock (`driven`) it waits for the work: the answer depends on the clock alone.
 */
export const settledForPoll = (work: Promise<unknown>, driven: boolean): Promise<boolean> => {
  const settled = work.then(() => true, () => true)
  if (driven) return settled
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), POLL_WAIT_MS)
  })
  return Promise.race([settled, timeout]).finally(() => clearTimeout(timer))
}
