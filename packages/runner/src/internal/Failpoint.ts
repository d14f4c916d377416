/**
 * Failpoints for crash tests: `SLUICE_FAILPOINT=<name>:<n>` makes the process kill itself
 * with SIGKILL the n-th time it passes `<name>` — a real crash at an exact point, which a
 * timer-based kill can only hit by luck. Unset (always, outside tests), it costs one lookup.
 */
const spec = process.env["SLUICE_FAILPOINT"]
const [target, nth] = spec === undefined ? [undefined, 0] : [spec.slice(0, spec.lastIndexOf(":")), Number(spec.slice(spec.lastIndexOf(":") + 1))]
let seen = 0

export const hit = (name: string): void => {
  if (target !== name) return
  seen++
  if (seen === nth) process.kill(process.pid, "SIGKILL")
}
