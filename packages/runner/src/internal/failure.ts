/**
 * What a failed command tells its user: one message, the exit code the README documents, and
 * for a run that can go on, the command that continues it. The same report is the `--json`
 * error object.
 */
import type { HelpDoc } from "@effect/cli"
import { Cause } from "effect"
import { existsSync } from "node:fs"
import { join } from "node:path"
import { databaseUrlVariable } from "./clusterEnv.js"
import { docText } from "./help.js"
import { describeSystemError, isSystemError } from "./ioError.js"

/** Exit codes, documented in the README. */
export const ExitCode = {
  ok: 0,
  rowsFailed: 1,
  usage: 2,
  unfinished: 3,
  runtime: 4,
  interrupted: 130
} as const

/** Failures that are the user's to fix (input, configuration) rather than the run's. */
const usageTags = new Set([
  "ClusterUsage",
  "JournalElsewhere",
  "PipelineLoadError",
  "PipelineFileChanged",
  "PipelineTypeError",
  "TypeCheckUnavailable",
  "PipelineInvalid",
  "ModeUnsupported",
  "PipelineChanged",
  "ProviderChanged",
  "RebindRefused",
  "BaseDirMismatch",
  "UnknownProvider",
  "ProviderConfigError",
  "InvalidInput",
  "DuplicateRow",
  "ConflictingKeys",
  "RunDirError",
  "WebhookServerError",
  "NotARunDirectory",
  "RunLocked",
  "ValidationError",
  "InitError",
  "LocalEmulatorError",
  "UnpricedBudget",
  "PricesFileError",
  "ReportError",
  "InvalidSettings",
  "EmulatorStartError",
  "ModeUnsupported",
  "PreviewUnsupported",
  "GcUsageError"
])

/** @effect/cli's own errors for bad arguments: it has printed them (with usage) already. */
const isArgumentError = (tag: string): boolean =>
  tag === "MissingValue" || tag === "InvalidValue" || tag === "CommandMismatch" || tag === "HelpRequested" ||
  tag.endsWith("Option") || tag === "UnclusteredFlag" || tag === "InvalidArgument" || tag === "MultipleValuesDetected" ||
  tag === "CorrectedFlag"

export interface Report {
  /** The failure's tag: "ProviderError", "PipelineLoadError", "SystemError", "Interrupted", … */
  readonly tag: string
  readonly message: string
  readonly exitCode: number
  /** ProviderError's reason ("Transport", "Unauthorized", …), SystemError's ("PermissionDenied", …). */
  readonly reason?: string
  /** The run directory, once the command knows it. */
  readonly runDir?: string
  /** The command that continues the run, when there is a run to continue. */
  readonly resume?: string
  /** False when @effect/cli has printed the message already (argument errors). */
  readonly printed?: boolean
}

const resumeCommand = (runDir: string | undefined, cluster = false): string | undefined =>
  runDir !== undefined && existsSync(join(runDir, "manifest.json"))
    ? `sluice resume ${runDir}${cluster ? ` --cluster "$${databaseUrlVariable}"` : ""}`
    : undefined

/** The report of a command's failure; `runDir` is the run it worked on, when it knows. */
export const describe = (cause: Cause.Cause<unknown>, runDir?: string): Report => {
  const where = runDir === undefined ? {} : { runDir }
  if (Cause.isInterruptedOnly(cause)) return interrupted(runDir)
  const failure = Cause.failureOption(cause)
  if (failure._tag === "Some") {
    const e = failure.value as { _tag?: unknown; message?: unknown; reason?: unknown; error?: unknown }
    const tag = typeof e?._tag === "string" ? e._tag : "Error"
    if (isArgumentError(tag)) {
      const text = typeof e.error === "object" && e.error !== null ? docText(e.error as HelpDoc.HelpDoc) : tag
      return { tag, message: text, exitCode: ExitCode.usage, printed: true }
    }
    const reason = typeof e.reason === "string" ? { reason: e.reason } : {}
    const message = isSystemError(e)
      ? describeSystemError(e)
      : typeof e.message === "string" && e.message !== ""
        ? e.message
        : String(failure.value)
    // A rejected key is configuration to fix, not a run to resume.
    const unauthorized = tag === "ProviderError" && e.reason === "Unauthorized"
    const exitCode = usageTags.has(tag) || unauthorized ? ExitCode.usage : ExitCode.runtime
    // A distributed run's workflow that failed goes on as a new attempt on the cluster (the URL never printed).
    const resume = exitCode === ExitCode.runtime ? resumeCommand(runDir, tag === "StepFailed") : undefined
    return { tag, message, exitCode, ...reason, ...where, ...(resume === undefined ? {} : { resume }) }
  }
  const defect = Cause.squash(cause)
  // @effect/cli checks path arguments with the file system and dies when it cannot.
  if (isSystemError(defect)) {
    return { tag: "SystemError", message: describeSystemError(defect), exitCode: ExitCode.runtime, reason: defect.reason, ...where }
  }
  return {
    tag: "Defect",
    message: `internal error: ${defect instanceof Error ? defect.message : String(defect)}`,
    exitCode: ExitCode.runtime,
    ...where
  }
}

/** The report of a command stopped by Ctrl-C or SIGTERM. */
export const interrupted = (runDir?: string): Report => {
  const resume = resumeCommand(runDir)
  return {
    tag: "Interrupted",
    message: "interrupted",
    exitCode: ExitCode.interrupted,
    ...(runDir === undefined ? {} : { runDir }),
    ...(resume === undefined ? {} : { resume })
  }
}

/** The lines a report prints on stderr: the error, then how to continue. */
export const textLines = (report: Report): Array<string> => {
  if (report.printed === true) return []
  const hint = report.resume === undefined ? undefined : `run \`${report.resume}\` to continue`
  if (report.tag === "Interrupted") return [`sluice: interrupted${hint === undefined ? "" : `; ${hint}`}`]
  return [`sluice: error: ${report.message}`, ...(hint === undefined ? [] : [`sluice: ${hint}`])]
}

/** The `--json` error object: `{"error": {tag, message, exitCode, reason?, runDir?, resume?}}`. */
export const jsonText = (report: Report): string => {
  const { printed: _, ...error } = report
  return JSON.stringify({ error }, null, 2)
}

/** Prints a report: the lines on stderr, and with `json` the error object on stdout. */
export const print = (report: Report, json: boolean): void => {
  for (const line of textLines(report)) process.stderr.write(line + "\n")
  if (json) process.stdout.write(jsonText(report) + "\n")
}
