/**
 * The set-up of the enqueued-token tests (enqueued-tokens.e2e, recut.e2e): an emulator that
 * enforces an organisation limit per model the way OpenAI does, a project per test, the CLI
 * against them, and the emulator's record of what it had enqueued. What a test starts is closed
 * after it.
 */
import { afterEach, expect } from "vitest"
import { describeResult, emulatorEnv, makeProject, runCli, startTestEmulator, writePipeline, writeRows } from "./cli.js"
import type { CliResult, Row, TempProject, TestEmulator } from "./cli.js"
import { runFlags } from "./runs.js"

export const KEY = "sk-test-fake-key"
export const MODEL = "gpt-4o-mini"

/** The emulator's record: its limit and the most tokens of a model enqueued at once. */
export const enqueued = async (emulator: TestEmulator): Promise<{ limit: number | null; maxSeen: Record<string, number> }> => {
  const response = await fetch(`${emulator.url}/_emulator/enqueued`)
  expect(response.status).toBe(200)
  return (await response.json()) as { limit: number | null; maxSeen: Record<string, number> }
}

export const tokenLimitFailures = (emulator: TestEmulator): number => emulator.log.filter((l) => l.includes("token_limit_exceeded")).length

/** Call at the top of a test file: its helpers, whose emulators and projects close after each test. */
export const tokenLimitHarness = (projectPrefix: string) => {
  const cleanups: Array<() => Promise<void>> = []
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
  })

  /** An emulator closed after the test. */
  const emulator = async (options: Parameters<typeof startTestEmulator>[0]): Promise<TestEmulator> => {
    const started = await startTestEmulator(options)
    cleanups.push(() => started.close())
    return started
  }
  const emulatorWith = (limit: number): Promise<TestEmulator> => emulator({ enqueuedTokenLimit: limit })

  const project = async (): Promise<TempProject> => {
    const p = await makeProject(projectPrefix)
    cleanups.push(() => p.cleanup())
    return p
  }

  const cli = (p: TempProject, on: TestEmulator, args: ReadonlyArray<string>, env: Record<string, string> = {}): Promise<CliResult> =>
    runCli(args, { cwd: p.dir, env: { ...emulatorEnv(on.url, KEY), ...env }, timeoutMs: 60_000 })

  const pipelineOf = async (p: TempProject, name: string, rows: number | ReadonlyArray<Row>) => {
    await writeRows(p, `data/${name}.jsonl`, rows)
    return writePipeline(p, `${name}.pipeline.ts`, { name, model: MODEL, source: `data/${name}.jsonl`, sink: `out/${name}.jsonl` })
  }

  /**
   * Tokens of one row's request as the emulator counts them: one shard of ten rows, run under a
   * limit no run reaches, and read from its record (once for the file).
   */
  let measured: Promise<number> | undefined
  const tokensPerRow = (): Promise<number> =>
    (measured ??= (async () => {
      const on = await emulatorWith(1_000_000_000)
      const p = await project()
      const file = await pipelineOf(p, "probe", 10)
      const done = await cli(p, on, ["run", file, ...runFlags(p.path("run-probe"), 10)])
      expect(done.code, describeResult(done)).toBe(0)
      const seen = (await enqueued(on)).maxSeen[MODEL]!
      expect(seen).toBeGreaterThan(0)
      return Math.ceil(seen / 10)
    })())

  return { emulator, emulatorWith, project, cli, pipelineOf, tokensPerRow }
}
