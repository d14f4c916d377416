#!/usr/bin/env node
// The CLI runs from the build (npm ci builds it). Pipeline files are TypeScript: the CLI
// registers tsx just before loading one, so they need no build of their own.
// First, with plain Node only, the installed effect: under Effect 4 the CLI could not even load.
import { setFlagsFromString } from "node:v8"
import { installProblem } from "../dist/EffectVersion.js"

// The heap grows at most 2× what the last full GC left live (the factor V8 itself uses for a
// heap under 512 MB) instead of up to 4× (its factor for big machines): sluice's live heap is
// small, and RSS followed the allocation rate (BENCHMARKS.md, H6). Not when the user set a
// heap option of their own, in NODE_OPTIONS or on node's command line: theirs wins.
const heapOption = /--(max[-_]old[-_]space[-_]size|max[-_]heap[-_]size|heap[-_]growing[-_]percent)\b/
if (!heapOption.test(`${process.env.NODE_OPTIONS ?? ""} ${process.execArgv.join(" ")}`)) {
  setFlagsFromString("--heap-growing-percent=100")
}

const problem = installProblem()
if (problem === undefined) {
  await import("../dist/bin.js")
} else {
  process.stderr.write(`sluice: error: ${problem}\n`)
  process.exitCode = 2
}
