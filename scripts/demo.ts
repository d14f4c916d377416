/**
 * `npm run demo`: starts the built-in emulator, points the OpenAI env vars at it, and runs
 * examples/reviews.pipeline.ts through the real CLI in a child process. Then checks the
 * output: one labeled line per review, every id once.
 */
import { spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { startEmulator } from "../packages/emulator/src/Emulator.js"

const emulator = await startEmulator({
  validatingMs: 300,
  requestsPerSecond: 400,
  finalizingMs: 300,
  // A few requests fail the first time, as they do in real batches: sluice resubmits them.
  errorRate: 0.02
})
console.error(`demo: emulator listening on ${emulator.url}`)

const runDir = `.sluice/runs/demo-${new Date().toISOString().replace(/[:.]/g, "-")}`
const code = await new Promise<number>((resolve) => {
  const child = spawn(
    process.execPath,
    [
      "packages/runner/bin/sluice.js",
      "run",
      "examples/reviews.pipeline.ts",
      "--run-dir",
      runDir,
      "--shard-size",
      "250",
      "--concurrency",
      "4",
      "--poll-interval",
      "0.25"
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
const expected = readFileSync("examples/data/reviews.jsonl", "utf8").trim().split("\n").length
console.error(`demo: out/reviews.labeled.jsonl has ${lines.length} lines, ${ids.size} distinct ids (expected ${expected})`)
if (lines.length !== expected || ids.size !== expected) process.exit(1)
