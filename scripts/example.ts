/**
 * Runs an example pipeline against the built-in emulator through the real CLI:
 *
 *   npm run example -- examples/providers/anthropic.pipeline.ts
 *
 * The emulator serves every wire format at one origin, so the env points each provider at it.
 */
import { spawn } from "node:child_process"
import { startEmulator } from "../packages/emulator/src/Emulator.js"

const pipeline = process.argv[2]
if (pipeline === undefined) {
  console.error("usage: npm run example -- <pipeline.ts> [sluice run flags]")
  process.exit(2)
}
const emulator = await startEmulator({ validatingMs: 200, requestsPerSecond: 1000, finalizingMs: 200, errorRate: 0.02 })
const key = "example-key-for-the-emulator"
const code = await new Promise<number>((resolve) => {
  const child = spawn(
    process.execPath,
    [
      "packages/runner/bin/sluice.js",
      "run",
      pipeline,
      "--run-dir",
      `.sluice/runs/example-${Date.now()}`,
      "--shard-size",
      "250",
      "--poll-interval",
      "0.25",
      ...process.argv.slice(3)
    ],
    {
      stdio: "inherit",
      env: {
        ...process.env,
        OPENAI_BASE_URL: `${emulator.url}/v1`,
        OPENAI_API_KEY: key,
        ANTHROPIC_BASE_URL: emulator.url,
        ANTHROPIC_API_KEY: key,
        GEMINI_BASE_URL: emulator.url,
        GEMINI_API_KEY: key
      }
    }
  )
  child.on("exit", (c) => resolve(c ?? 1))
})
await emulator.close()
process.exit(code)
