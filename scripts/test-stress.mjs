#!/usr/bin/env node
/**
 * `npm run test:stress`: the test suite on a saturated machine, as a busy CI runner is.
 * Starts busy processes (CPU burners at normal priority; 2× the cores by default,
 * SLUICE_STRESS_PROCS=N to choose), runs `vitest run` with the given arguments, stops the
 * burners whatever happens and exits with vitest's code.
 *
 *   npm run test:stress                                   # the whole suite
 *   npm run test:stress -- test/cache.e2e.test.ts          # some files
 */
import { spawn } from "node:child_process"
import { availableParallelism, constants } from "node:os"
import { fileURLToPath } from "node:url"

const requested = process.env.SLUICE_STRESS_PROCS
const count = requested === undefined ? 2 * availableParallelism() : Number(requested)
if (!Number.isInteger(count) || count < 0) {
  console.error(`SLUICE_STRESS_PROCS must be a whole number >= 0, got '${requested}'`)
  process.exit(2)
}

// A burner spins, and stops by itself once its parent is gone (a `kill -9` of this script
// must not leave busy processes behind): every 100 ms it checks that it was not re-parented.
const burner = `
const parent = ${process.pid}
let next = Date.now() + 100
for (;;) {
  if (Date.now() >= next) {
    if (process.ppid !== parent) process.exit(0)
    next = Date.now() + 100
  }
}`

const burners = Array.from({ length: count }, () => spawn(process.execPath, ["-e", burner], { stdio: "ignore" }))
const stopBurners = () => {
  for (const child of burners) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
}
process.on("exit", stopBurners)

const vitestBin = fileURLToPath(new URL("../node_modules/vitest/vitest.mjs", import.meta.url))
console.error(`test:stress: ${count} busy processes on ${availableParallelism()} cores while vitest runs`)
const vitest = spawn(process.execPath, [vitestBin, "run", ...process.argv.slice(2)], { stdio: "inherit" })

// Ctrl-C reaches vitest through the terminal's process group; a signal sent to this script
// alone is passed on. Either way the burners stop when vitest does.
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(signal, () => {
    if (vitest.exitCode === null) vitest.kill(signal)
  })
}
vitest.on("error", (error) => {
  console.error(`test:stress: could not start vitest: ${error.message}`)
  stopBurners()
  process.exit(1)
})
vitest.on("exit", (code, signal) => {
  stopBurners()
  process.exit(code ?? 128 + (constants.signals[signal] ?? 0))
})
