/**
 * Entry point of the `sluice` command: runs the CLI, and turns every failure into one
 * clear line on stderr and a documented exit code — never a stack trace.
 */
import { NodeContext, NodeHttpClient, NodeRuntime } from "@effect/platform-node"
import { Cause, Effect, Exit, Layer, Logger, LogLevel } from "effect"
import { ExitCode, cli } from "./Cli.js"
import { Registry } from "@sluice/providers"

/** Failures that are the user's to fix (input, configuration) rather than the run's. */
const usageTags = new Set([
  "PipelineLoadError",
  "PipelineInvalid",
  "PipelineChanged",
  "UnknownProvider",
  "ProviderConfigError",
  "InvalidInput",
  "DuplicateRow",
  "ConflictingKeys",
  "RunDirError",
  "RunLocked",
  "ValidationError"
])

const describe = (cause: Cause.Cause<unknown>): { message: string; code: number } => {
  const failure = Cause.failureOption(cause)
  if (failure._tag === "Some") {
    const e = failure.value as { _tag?: string; message?: string }
    const tag = e?._tag ?? ""
    // @effect/cli has already printed its own help for bad arguments.
    if (tag === "MissingValue" || tag === "InvalidValue" || tag === "CommandMismatch" || tag === "HelpRequested" || tag.endsWith("Option") || tag === "UnclusteredFlag" || tag === "InvalidArgument" || tag === "MultipleValuesDetected" || tag === "CorrectedFlag") {
      return { message: "", code: ExitCode.usage }
    }
    // A rejected key is configuration to fix, not a run to resume.
    const unauthorized = tag === "ProviderError" && (e as { reason?: string }).reason === "Unauthorized"
    return {
      message: typeof e?.message === "string" && e.message !== "" ? e.message : String(failure.value),
      code: usageTags.has(tag) || unauthorized ? ExitCode.usage : ExitCode.runtime
    }
  }
  if (Cause.isInterruptedOnly(cause)) return { message: "interrupted; run `sluice resume <run-dir>` to continue", code: 130 }
  const defect = Cause.squash(cause)
  return { message: `internal error: ${defect instanceof Error ? defect.message : String(defect)}`, code: ExitCode.runtime }
}

const logger = Logger.replace(
  Logger.defaultLogger,
  Logger.make(({ logLevel, message }) => {
    const text = Array.isArray(message) ? message.join(" ") : String(message)
    process.stderr.write(`sluice: ${logLevel.label.toLowerCase()}: ${text}\n`)
  })
)

const MainLive = Layer.mergeAll(NodeContext.layer, Registry.layerFromEnv().pipe(Layer.provide(NodeHttpClient.layerUndici)), logger)

cli(process.argv).pipe(
  Effect.catchAllCause((cause) =>
    Effect.sync(() => {
      const { message, code } = describe(cause)
      if (message !== "") process.stderr.write(`sluice: error: ${message}\n`)
      process.exitCode = code
    })
  ),
  Logger.withMinimumLogLevel(LogLevel.Info),
  Effect.provide(MainLive),
  NodeRuntime.runMain({
    disableErrorReporting: true,
    disablePrettyLogger: true,
    // Ctrl-C or SIGTERM interrupts the program from outside, past `catchAllCause`: say so and
    // exit 130 rather than the runtime's 0.
    teardown: (exit, onExit) => {
      if (Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)) {
        process.stderr.write("sluice: interrupted; run `sluice resume <run-dir>` to continue\n")
        onExit(130)
      } else {
        onExit(Exit.isFailure(exit) ? 1 : 0)
      }
    }
  })
)
