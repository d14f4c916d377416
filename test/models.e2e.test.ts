/**
 * A misspelt model name is caught offline: `sluice emulator` refuses unknown models as the real
 * APIs do, so `sluice run` against it fails every row with a clear, permanent error naming the
 * model — the run ends, and `sluice retry` does not resend them. `--models` extends the list
 * (here with an Azure-style deployment name).
 */
import type { ChildProcess } from "node:child_process"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  describeResult,
  emulatorEnv,
  fastRunFlags,
  getLedger,
  makeProject,
  readJsonl,
  runCli,
  startCliEmulator,
  type TempProject,
  writePipeline,
  writeRows
} from "./support/cli.js"

const SLOW = { timeout: 180_000 }

describe("unknown model names against `sluice emulator`", SLOW, () => {
  let project: TempProject
  let emulator: { url: string; child: ChildProcess }

  beforeAll(async () => {
    project = await makeProject("sluice-models-")
    await writeRows(project, "data/rows.jsonl", 6)
    emulator = await startCliEmulator(["--validating-ms", "20", "--finalizing-ms", "20", "--models", "default,my-gpt4o-deployment"], project.dir)
  }, SLOW.timeout)
  afterAll(async () => {
    const exited = new Promise((resolve) => emulator?.child.on("exit", resolve))
    emulator?.child.kill("SIGTERM")
    await exited
    await project?.cleanup()
  })

  it("a typo (gpt-4o-minni) fails every row permanently, naming the model; retry does not resend them", async () => {
    await writePipeline(project, "typo.pipeline.ts", { name: "typo", model: "gpt-4o-minni" })
    const env = emulatorEnv(emulator.url)
    const run = await runCli(["run", "typo.pipeline.ts", "--run-dir", "runs/typo", ...fastRunFlags(10)], { cwd: project.dir, env })
    expect(run.code, describeResult(run)).toBe(1)

    const failures = await readJsonl<{ key: string; class: string; code: string; message: string }>(project.path("runs", "typo", "failures.jsonl"))
    expect(failures.map((f) => f.key).sort()).toEqual(["r0001", "r0002", "r0003", "r0004", "r0005", "r0006"])
    for (const failure of failures) {
      expect(failure).toMatchObject({
        class: "permanent",
        code: "model_not_found",
        message: "The model `gpt-4o-minni` does not exist or you do not have access to it."
      })
    }

    // Permanent failures are not retried by default: nothing more reaches the emulator.
    const retry = await runCli(["retry", "runs/typo", "--poll-interval", "0.05"], { cwd: project.dir, env })
    expect(retry.code, describeResult(retry)).toBe(1)
    const ledger = await getLedger(emulator.url)
    expect(ledger.batches).toHaveLength(1)
    expect(ledger.batches[0]!.custom_ids).toHaveLength(6)
    expect(ledger.deliveries).toEqual([])
  })

  it("a name added with --models is accepted", async () => {
    await writePipeline(project, "deployment.pipeline.ts", { name: "deployment", model: "my-gpt4o-deployment" })
    const run = await runCli(["run", "deployment.pipeline.ts", "--run-dir", "runs/deployment", ...fastRunFlags(10)], {
      cwd: project.dir,
      env: emulatorEnv(emulator.url)
    })
    expect(run.code, describeResult(run)).toBe(0)
    expect(await readJsonl(project.path("out", "labeled.jsonl"))).toHaveLength(6)
  })
})
