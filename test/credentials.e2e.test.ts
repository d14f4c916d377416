/**
 * Keys and base URLs through the real CLI: a base URL with credentials is refused before
 * anything is sent or recorded (no run directory holds them), and a key read with a trailing
 * newline (`OPENAI_API_KEY=$(cat key.txt)`) just works against an emulator that checks it.
 */
import { existsSync } from "node:fs"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  describeResult,
  fastRunFlags,
  filesContaining,
  makeProject,
  readJsonl,
  runCli,
  startTestEmulator,
  writePipeline,
  writeRows
} from "./support/cli.js"
import type { TempProject, TestEmulator } from "./support/cli.js"

const KEY = "sk-e2e-credentials-0123456789"
const PASSWORD = "hunter2-e2e-password"

let emulator: TestEmulator
let project: TempProject

beforeAll(async () => {
  emulator = await startTestEmulator({ apiKey: KEY })
  project = await makeProject("sluice-credentials-")
  await writeRows(project, "data/rows.jsonl", 12)
  await writePipeline(project, "label.pipeline.ts", { name: "credentials" })
})

afterAll(async () => {
  await emulator?.close()
  await project?.cleanup()
})

describe("credentials through the CLI", () => {
  it("a base URL with credentials is refused, masked, before any request and before any file holds it", async () => {
    const url = new URL(emulator.url)
    const result = await runCli(["run", "label.pipeline.ts", "--run-dir", "runs/userinfo", ...fastRunFlags(6)], {
      cwd: project.dir,
      env: { OPENAI_BASE_URL: `http://admin:${PASSWORD}@${url.host}/v1`, OPENAI_API_KEY: KEY }
    })
    expect(result.code, describeResult(result)).not.toBe(0)
    expect(result.stderr).toContain(`OPENAI_BASE_URL carries credentials (http://***:***@${url.host}/v1)`)
    expect(result.stdout + result.stderr).not.toContain(PASSWORD)
    expect(result.stdout + result.stderr).not.toContain(KEY)
    expect(emulator.log).toEqual([])
    if (existsSync(project.path("runs/userinfo"))) {
      expect(await filesContaining(project.path("runs/userinfo"), PASSWORD)).toEqual([])
    }
  })

  it("a key read with a trailing newline is trimmed: the run completes against an emulator that checks the key", async () => {
    const result = await runCli(["run", "label.pipeline.ts", "--run-dir", "runs/newline", ...fastRunFlags(6)], {
      cwd: project.dir,
      // No retries: an untrimmed key would fail at once instead of after a minute.
      env: { OPENAI_BASE_URL: `${emulator.url}/v1`, OPENAI_API_KEY: `${KEY}\n`, SLUICE_HTTP_RETRIES: "0" }
    })
    expect(result.code, describeResult(result)).toBe(0)
    expect(await readJsonl(project.path("out/labeled.jsonl"))).toHaveLength(12)
    expect(await filesContaining(project.path("runs/newline"), KEY)).toEqual([])
  })
})
