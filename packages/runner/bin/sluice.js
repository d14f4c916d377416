#!/usr/bin/env node
// The CLI runs from the build (npm ci builds it). Pipeline files are TypeScript: the CLI
// registers tsx just before loading one, so they need no build of their own.
// First, with plain Node only, the installed effect: under Effect 4 the CLI could not even load.
// Then, still without Effect, `--help`, `<command> --help` and `--version` from the texts the
// build stored; plain `status <run-dir>` runs the bundled status program; everything else loads
// the CLI (QuickAnswer.ts).
import { installProblem } from "../dist/EffectVersion.js"
import { programFor, run as quickAnswer } from "../dist/QuickAnswer.js"

const problem = installProblem()
if (problem !== undefined) {
  process.stderr.write(`sluice: error: ${problem}\n`)
  process.exitCode = 2
} else if (!quickAnswer(process.argv.slice(2))) {
  await import(programFor(process.argv.slice(2)))
}
