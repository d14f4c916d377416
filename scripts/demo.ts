/**
 * `npm run demo`: starts the built-in emulator, points the OpenAI env vars at it, and runs
 * examples/reviews.pipeline.ts through the real CLI in a child process. Then checks the
 * output (one labeled line per review, every id once) and says what the run spent.
 *
 * Paid once: the emulator listens on the same port every time (remembered in
 * `.sluice/demo.json`), so a second demo run finds every answer in the response cache, whose
 * answers are keyed by the provider's address, and submits nothing. Should that port be taken,
 * the demo takes another and says that this run pays again: answers of different endpoints
 * never mix.
 *
 * Files are relative to the current directory (`.sluice/`, `out/`), like those of `sluice run`.
 * `--fast` runs the emulator at test speed (for the test suite).
 */
import { spawn } from "node:child_process"
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { startEmulator } from "@sluice/emulator"
import type { EmulatorHandle, EmulatorOptions } from "@sluice/emulator"
import { status } from "@sluice/runner/promise"

const repo = join(dirname(fileURLToPath(import.meta.url)), "..")
const fast = process.argv.includes("--fast")
const settings: EmulatorOptions = {
  ...(fast ? { validatingMs: 20, requestsPerSecond: 5000, finalizingMs: 20 } : { validatingMs: 300, requestsPerSecond: 400, finalizingMs: 300 }),
  // A few requests fail the first time, as they do in real batches: sluice resubmits them.
  errorRate: 0.02
}

// The port of earlier demo runs: the response cache knows answers by the address they came from.
const memory = ".sluice/demo.json"
const remembered = existsSync(memory) ? (JSON.parse(readFileSync(memory, "utf8")) as { port?: number }).port : undefined
let emulator: EmulatorHandle
try {
  emulator = await startEmulator({ ...settings, port: remembered ?? 0 })
} catch (e) {
  if (remembered === undefined) throw e
  emulator = await startEmulator({ ...settings, port: 0 })
  console.error(
    `demo: port ${remembered}, where earlier demo runs had the emulator, is taken (${e instanceof Error ? e.message : String(e)}); ` +
      `using ${emulator.port}. Answers cached from ${remembered} are not reused for another address, so this run pays again`
  )
}
mkdirSync(dirname(memory), { recursive: true })
writeFileSync(memory, JSON.stringify({ port: emulator.port }) + "\n")
console.error(`demo: emulator listening on ${emulator.url}`)

const runDir = `.sluice/runs/demo-${new Date().toISOString().replace(/[:.]/g, "-")}`
const code = await new Promise<number>((resolve) => {
  const child = spawn(
    process.execPath,
    [
      join(repo, "packages/runner/bin/sluice.js"),
      "run",
      join(repo, "examples/reviews.pipeline.ts"),
      "--run-dir",
      runDir,
      "--shard-size",
      "250",
      "--concurrency",
      "4",
      "--poll-interval",
      fast ? "0.05" : "0.25"
    ],
    {
      stdio: "inherit",
      env: { ...process.env, OPENAI_BASE_URL: `${emulator.url}/v1`, OPENAI_API_KEY: "demo-key-for-the-emulator" }
    }
  )
  child.on("exit", (c) => resolve(c ?? 1))
})
await emulator.close()

if (code !== 0) {
  console.error(`demo: sluice exited with ${code}`)
  process.exit(code)
}
const lines = readFileSync("out/reviews.labeled.jsonl", "utf8").trim().split("\n")
const ids = new Set(lines.map((l) => (JSON.parse(l) as { input: { id: string } }).input.id))
const expected = readFileSync(join(repo, "examples/data/reviews.jsonl"), "utf8").trim().split("\n").length
console.error(`demo: out/reviews.labeled.jsonl has ${lines.length} lines, ${ids.size} distinct ids (expected ${expected})`)
if (lines.length !== expected || ids.size !== expected) process.exit(1)

// What this run spent, from its run directory.
const run = await status(runDir, { refresh: false })
const count = (n: number) => n.toLocaleString("en-US")
const spent = run.cost === null ? "an unknown amount" : `$${run.cost.batch.toFixed(run.cost.batch === 0 ? 2 : 4)}`
if (run.batches === 0 && run.fromCache === run.rows) {
  console.error(`demo: paid once: ${count(run.rows)} rows answered from the response cache, no batch submitted, $0.00 spent`)
} else {
  const fromProvider = run.rows - run.fromCache
  console.error(
    `demo: ${count(fromProvider)} rows answered by the emulator in ${count(run.batches)} batches (${spent} at batch prices)` +
      (run.fromCache > 0 ? `, ${count(run.fromCache)} from the response cache` : "") +
      `. Run it again: every answer comes from the response cache, and nothing is spent`
  )
}
console.error(`demo: see the run: npx sluice report ${runDir} (one HTML file), or npx sluice ui ${runDir} (a live page on 127.0.0.1)`)
