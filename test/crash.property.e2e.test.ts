/**
 * The end-to-end form of the journal property: a real run (the CLI in a child process,
 * against the emulator) killed with SIGKILL at a crash point fast-check picks (any failpoint,
 * the first to third time it is passed), its journal then left as a crash in the middle of an
 * append would leave it (the last line cut at any byte, or bytes after the last newline), and
 * resumed: every row reaches the sink once, and nothing is paid twice. Few runs (each is two
 * CLI processes); a failure prints the seed and the crash point, and is not shrunk.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs"
import fc from "fast-check"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { describeResult, emulatorEnv, getLedger, makeProject, runCli, startTestEmulator, writeRows } from "./support/cli.js"
import type { TempProject, TestEmulator } from "./support/cli.js"
import { checkAsync } from "./support/properties.js"
import { expectPaidOnce, journalPath, readSink, runFlags, runIdOf, writeRecoveryPipeline } from "./support/runs.js"

const ROWS = 24

let emulator: TestEmulator
let project: TempProject

beforeAll(async () => {
  emulator = await startTestEmulator()
  project = await makeProject("sluice-crash-props-")
  await writeRows(project, "data/rows.jsonl", ROWS)
})

afterAll(async () => {
  await emulator?.close()
  await project?.cleanup()
})

/** Every place a run can be killed (packages/runner/src/internal/Failpoint.ts and its callers). */
const failpoints = [
  "plan-row",
  "after:ShardPlanned",
  "after:SubmitIntent",
  "after-upload",
  "after:Staged",
  "after-create",
  "after:Created",
  "after:StatusChanged",
  "after:Terminal",
  "collect-before-commit",
  "after:Collected",
  "after:PlanComplete"
] as const

/**
 * How the crash leaves the journal. After `after:<event>` the kill may as well have come while
 * that event was appended (its line cut anywhere: the action it guards has not happened), and
 * after any crash point the next append may have begun (bytes after the last newline).
 */
const tear = fc.oneof(
  fc.constant({ kind: "none" as const }),
  fc.record({ kind: fc.constant("garbage" as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 40 }).map((b) => b.filter((x) => x !== 10)) }),
  fc.record({ kind: fc.constant("cut" as const), at: fc.nat() })
)

let trial = 0

describe("crash anywhere, torn journal, resume", () => {
  it("every row once, nothing paid twice", async () => {
    await checkAsync(
      fc.asyncProperty(fc.constantFrom(...failpoints), fc.integer({ min: 1, max: 3 }), tear, async (point, nth, torn) => {
        const slug = `t${++trial}`
        const runDir = project.path("runs", slug)
        const sink = `out/${slug}.jsonl`
        const pipeline = await writeRecoveryPipeline(project, `${slug}.pipeline.ts`, { name: `props-${slug}`, sink, system: `Label (${slug}).` })
        const args = ["run", pipeline, ...runFlags(runDir, 8)]
        const env = emulatorEnv(emulator.url)

        const crashed = await runCli(args, { cwd: project.dir, env: { ...env, SLUICE_FAILPOINT: `${point}:${nth}` } })
        // A crash point passed fewer than `nth` times lets the run finish.
        expect(crashed.signal === "SIGKILL" || crashed.code === 0, describeResult(crashed)).toBe(true)

        const journal = journalPath(runDir)
        if (existsSync(journal) && torn.kind !== "none") {
          const bytes = readFileSync(journal)
          if (torn.kind === "garbage") writeFileSync(journal, Buffer.concat([bytes, torn.bytes]))
          else if (point.startsWith("after:") && crashed.signal === "SIGKILL") {
            // Cut inside the last line, the event the run was killed after.
            const lastStart = bytes.subarray(0, bytes.length - 1).lastIndexOf(10) + 1
            writeFileSync(journal, bytes.subarray(0, lastStart + (torn.at % (bytes.length - lastStart))))
          }
        }

        const resumed = await runCli(args, { cwd: project.dir, env })
        expect(resumed.code, `${point}:${nth}, ${torn.kind}: ${describeResult(resumed)}`).toBe(0)
        const ids = (await readSink(project.path(sink))).map((line) => line.input.id)
        expect(ids.length, `${point}:${nth}, ${torn.kind}: rows in the sink`).toBe(ROWS)
        expect(new Set(ids).size).toBe(ROWS)
        const delivered = expectPaidOnce(await getLedger(emulator.url), await runIdOf(runDir))
        expect(delivered.length).toBe(ROWS)
      }),
      2,
      { endOnFailure: true }
    )
  }, 240_000)
})
