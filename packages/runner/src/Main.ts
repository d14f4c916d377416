/**
 * Runs a `sluice` program (the CLI, or statusBin.ts's status-only one) and turns every failure
 * into one clear line on stderr and a documented exit code — never a stack trace. Commands
 * report their own failures (with the run directory and `--json`, see internal/reported.ts);
 * what reaches this file failed before a command started (arguments) or outside one.
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Effect, Exit, Layer, Logger, LogLevel } from "effect"
import * as Failure from "./internal/failure.js"
import { say } from "./internal/stderrLines.js"
import { Registry } from "@sluice/providers"

const logger = Logger.replace(
  Logger.defaultLogger,
  Logger.make(({ logLevel, message }) => {
    const text = Array.isArray(message) ? message.join(" ") : String(message)
    say(`sluice: ${logLevel.label.toLowerCase()}: ${text}`)
  })
)

const MainLive = Layer.mergeAll(NodeContext.layer, Registry.layerFromEnv().pipe(Layer.provide(NodeHttpClient.layerUndici)), logger)

/** `--json` anywhere before `--`: the caller wants the error object on stdout too. */
const wantsJson = (args: ReadonlyArray<string>): boolean => {
  const end = args.indexOf("--")
  return (end === -1 ? args : args.slice(0, end)).includes("--json")
}

/** Runs `program` on this process's arguments, over Node, the provider registry and sluice's logger. */
export const main = <E>(program: (argv: ReadonlyArray<string>) => Effect.Effect<void, E, Layer.Layer.Success<typeof MainLive>>) =>
  program(process.argv).pipe(
    Effect.catchAllCause((cause) =>
      Effect.sync(() => {
        const report = Failure.describe(cause)
        Failure.print(report, wantsJson(process.argv.slice(2)))
        process.exitCode = report.exitCode
      })
    ),
    Logger.withMinimumLogLevel(LogLevel.Info),
    Effect.provide(MainLive),
    NodeRuntime.runMain({
      disableErrorReporting: true,
      disablePrettyLogger: true,
      // Ctrl-C or SIGTERM interrupts the program from outside, past `catchAllCause`. A command
      // has said so already, naming its run directory (and set 130); otherwise say it here.
      teardown: (exit, onExit) => {
        if (Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)) {
          if (process.exitCode !== Failure.ExitCode.interrupted) Failure.print(Failure.interrupted(), false)
          onExit(Failure.ExitCode.interrupted)
        } else {
          onExit(Exit.isFailure(exit) ? 1 : 0)
        }
      }
    })
  )
