/**
 * `sluice`, `sluice --help`, `sluice <command> --help` and `sluice --version`, answered by
 * bin/sluice.js before any Effect module loads: loading effect, @effect/cli and the commands
 * costs about a CPU second on Node 20, printing a page of help should not.
 *
 * The answers are the real CLI's: the build runs it (scripts/write-help.mjs) and stores its
 * help as data (internal/help.ts `describe`) and its `--version` output in dist/help.json;
 * the help is laid out by the same code as the real CLI's (internal/helpText.ts), so it
 * wraps to the terminal and styles as that does. Only those exact argument lists are
 * answered here; anything else (another flag, `--help` with more arguments, an unknown
 * command), or a help.json missing or of another version, goes to the real CLI.
 *
 * Plain `status <run-dir>` arguments go to the bundled status-only program (statusBin.ts).
 *
 * Plain Node only, like EffectVersion.ts.
 */
import { readFileSync, statSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { runner } from "./internal/Installed.js"
import { keptInDatabase } from "./internal/journalMarker.js"
import * as HelpText from "./internal/helpText.js"
import type { ProgramHelp } from "./internal/helpText.js"

/** What dist/help.json holds. */
export interface Stored {
  readonly help: ProgramHelp
  /** The real CLI's stdout for `sluice --version`, as it printed it at build time. */
  readonly versionOutput: string
}

export const storedFile = fileURLToPath(new URL("./help.json", import.meta.url))

/** What tsc -b rewrites whenever it builds anything (not in the published package). */
const buildInfoFile = fileURLToPath(new URL("./.tsbuildinfo", import.meta.url))

/**
 * Whether a file the build generates after tsc (help.json, status.bundle.cjs) exists and is not
 * older than tsc's last build: after a `tsc -b` alone it may no longer match the modules, so
 * the full CLI answers until `npm run build` writes it again.
 */
export const isFresh = (file: string, buildInfo: string = buildInfoFile): boolean => {
  let written: number
  try {
    written = statSync(file).mtimeMs
  } catch {
    return false
  }
  try {
    return written >= statSync(buildInfo).mtimeMs
  } catch {
    return true
  }
}

/** dist/help.json, when present, fresh (isFresh) and written for this version of the package. */
export const readStored = (file: string = storedFile, buildInfo: string = buildInfoFile): Stored | undefined => {
  if (!isFresh(file, buildInfo)) return undefined
  try {
    const stored = JSON.parse(readFileSync(file, "utf8")) as Stored
    return stored.help.version === runner.version ? stored : undefined
  } catch {
    return undefined
  }
}

const isHelpFlag = (arg: string | undefined) => arg === "--help" || arg === "-h"

/**
 * What the real CLI prints on stdout for `args`, when `args` is one of the forms answered here;
 * undefined otherwise.
 */
export const answer = (
  args: ReadonlyArray<string>,
  stored: Stored,
  stdout: { readonly isTTY?: boolean; readonly columns?: number },
  env: NodeJS.ProcessEnv = process.env
): string | undefined => {
  if (args.length === 1 && args[0] === "--version") return stored.versionOutput
  const help =
    args.length === 0 || (args.length === 1 && isHelpFlag(args[0]))
      ? []
      : args.length === 2 && isHelpFlag(args[1]) && stored.help.commands.some((c) => c.name === args[0])
      ? [args[0]!]
      : undefined
  // The real CLI prints its help with console.log: one newline after it.
  return help === undefined ? undefined : `${HelpText.render(stored.help, help, HelpText.optionsFor(stdout, env))}\n`
}

/** Answers `args` on stdout and returns true, or returns false for the real CLI to answer. */
export const run = (args: ReadonlyArray<string>): boolean => {
  const stored = readStored()
  const text = stored === undefined ? undefined : answer(args, stored, process.stdout)
  if (text === undefined) return false
  // console (not process.stdout.write), as the real CLI: a closed pipe (`| head`) is ignored, not thrown.
  console.log(text.endsWith("\n") ? text.slice(0, -1) : text)
  return true
}

/**
 * Plain `status` arguments: `status <run-dir>` with any of `--json`, `--no-refresh`,
 * `--prices <file>`. statusBin.ts's program parses them as the full CLI does (the same command);
 * anything else (help, `--log-level`, an unknown flag, no run directory) goes to the full CLI.
 */
export const statusOnly = (args: ReadonlyArray<string>): boolean => {
  if (args[0] !== "status") return false
  let positional = 0
  for (let i = 1; i < args.length; i++) {
    const arg = args[i]!
    if (arg === "--json" || arg === "--no-refresh") continue
    if (arg === "--prices" && i + 1 < args.length && !args[i + 1]!.startsWith("-")) {
      i++
      continue
    }
    if (arg.startsWith("-")) return false
    positional++
  }
  return positional === 1
}

const statusBundle = new URL("./status.bundle.cjs", import.meta.url)

/**
 * Whether the run at the `status` arguments' run directory keeps its journal in a cluster's
 * database (its manifest's `journal`: JournalStore.ts): the bundle holds no database client.
 */
const journalInDatabase = (args: ReadonlyArray<string>): boolean => {
  const runDir = args.slice(1).find((arg, i, rest) => !arg.startsWith("-") && rest[i - 1] !== "--prices")
  return runDir !== undefined && keptInDatabase(runDir)
}

/**
 * The module that runs `args`: the bundled status program (statusMain.ts) for plain `status`
 * arguments (when built and fresh) of a run whose journal is in its directory, else the full CLI.
 */
export const programFor = (args: ReadonlyArray<string>): string =>
  new URL(statusOnly(args) && isFresh(fileURLToPath(statusBundle)) && !journalInDatabase(args) ? "./statusMain.js" : "./bin.js", import.meta.url).href
