/**
 * How a command's failure is reported: one message on stderr (and with `--json` an error object
 * on stdout), the documented exit code, and how to continue the run. Shared by every command
 * (Cli.ts, StatusCommand.ts).
 */
import { Cause, Effect } from "effect"
import * as Failure from "./failure.js"

/** What a command's failure report needs to know: its run directory, once known (the resume hint). */
export interface Reporting {
  runDir: string | undefined
}

/**
 * Runs a command's work and reports how it failed. Ctrl-C is reported the same way, naming
 * the run directory.
 */
export const reported = <E, R>(json: boolean, work: (reporting: Reporting) => Effect.Effect<void, E, R>) =>
  Effect.suspend(() => {
    const reporting: Reporting = { runDir: undefined }
    const report = (r: Failure.Report) =>
      Effect.sync(() => {
        Failure.print(r, json)
        process.exitCode = r.exitCode
      })
    return work(reporting).pipe(
      Effect.catchAllCause((cause) => (Cause.isInterruptedOnly(cause) ? Effect.failCause(cause) : report(Failure.describe(cause, reporting.runDir)))),
      Effect.onInterrupt(() => report(Failure.interrupted(reporting.runDir)))
    )
  })
