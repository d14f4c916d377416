#!/usr/bin/env node
// The CLI runs from the build (npm ci builds it). Pipeline files are TypeScript: the CLI
// registers tsx just before loading one, so they need no build of their own.
// First, with plain Node only, the installed effect: under Effect 4 the CLI could not even load.
import { installProblem } from "../dist/EffectVersion.js"

const problem = installProblem()
if (problem === undefined) {
  await import("../dist/bin.js")
} else {
  process.stderr.write(`sluice: error: ${problem}\n`)
  process.exitCode = 2
}
