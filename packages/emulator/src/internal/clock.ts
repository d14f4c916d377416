/**
 * Time source of the emulator. The batch lifecycle is a pure function of
 * wall-clock time (no per-batch timers), so a restarted emulator continues
 * where the previous one left off, and tests can inject a fake clock.
 */
export type Clock = () => number

export const systemClock: Clock = () => Date.now()

/** OpenAI timestamps are Unix seconds. */
export const toUnixSeconds = (ms: number): number => Math.floor(ms / 1000)

export const toUnixSecondsOrNull = (ms: number | null | undefined): number | null =>
  ms === null || ms === undefined ? null : toUnixSeconds(ms)
