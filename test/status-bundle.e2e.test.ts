/**
 * Plain `sluice status <run-dir>` runs the bundled status-only program (dist/status.bundle.mjs,
 * src/statusBin.ts) instead of the full CLI. These tests run both on the same arguments — the
 * bundle through bin/sluice.js, the full CLI as dist/bin.js — and require the same stdout, stderr
 * and exit code: a run with a batch in flight refreshed from the emulator (through the bundle's
 * own HTTP client), `--json`, `--no-refresh`, and bad arguments. They also show which program ran.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as QuickAnswer from "../packages/runner/src/QuickAnswer.js"
import {
  fullCli,
  describeResult,
  emulatorEnv,
  fastRunFlags,
  makeProject,
  runCli,
  runNode,
  sluiceBin,
  startTestEmulator,
  type TempProject,
  type TestEmulator,
  writePipeline,
  writeRows
} from "./support/cli.js"
import { effectLoaded, moduleLogHooks, readModuleLog } from "./support/moduleLog.js"


let project: TempProject
let emulator: TestEmulator
let hooks: string
let runDir: string

beforeAll(async () => {
  project = await makeProject("sluice-status-bundle-")
  hooks = moduleLogHooks(project.dir)
  // Batches stay validating for an hour: the run's one batch is in flight while the tests ask.
  emulator = await startTestEmulator({ validatingMs: 3_600_000 })
  await writeRows(project, "data/rows.jsonl", 6)
  await writePipeline(project, "p.pipeline.ts", { name: "bundled" })
  const detached = await runCli(["run", "p.pipeline.ts", "--detach", ...fastRunFlags(10)], { cwd: project.dir, env: emulatorEnv(emulator.url) })
  expect(detached.stderr, describeResult(detached)).not.toContain("error")
  runDir = project.path(".sluice", "runs", "bundled")
}, 180_000)

afterAll(async () => {
  await emulator?.close()
  await project?.cleanup()
})

const exec = (nodeArgs: ReadonlyArray<string>, env: Record<string, string | undefined> = {}) => runNode(nodeArgs, project.dir, env)

/** bin/sluice.js (watched: which modules it loaded) and the full CLI on `args`. */
const both = async (args: ReadonlyArray<string>) => {
  const log = project.path(`modules-${Math.random().toString(36).slice(2)}.txt`)
  const env = emulatorEnv(emulator.url)
  const viaBin = await exec(["--import", hooks, sluiceBin, ...args], { ...env, SLUICE_TEST_MODULE_LOG: log })
  const full = await exec([fullCli, ...args], env)
  return { viaBin, full, modules: readModuleLog(log) }
}

const bundled = (modules: ReadonlyArray<string>) => modules.some((m) => m.endsWith("/dist/status.bundle.mjs"))

describe("sluice status through the bundled status program", () => {
  it("a batch in flight, refreshed from the provider: the same text and JSON as the full CLI, from the bundle alone", async () => {
    const retrievals = () => emulator.log.filter((l) => l.startsWith("GET /v1/batches/")).length
    const before = retrievals()
    for (const args of [["status", runDir], ["status", runDir, "--json"]]) {
      const { viaBin, full, modules } = await both(args)
      expect(full.code, full.stderr).toBe(0)
      expect(viaBin).toEqual(full)
      expect(bundled(modules)).toBe(true)
      // The bundle holds its effect: none is loaded from node_modules.
      expect(effectLoaded(modules)).toBe(false)
    }
    const { viaBin } = await both(["status", runDir, "--json"])
    const status = JSON.parse(viaBin.stdout) as { shards: Array<{ live: boolean; phase: string; status: string }>; refreshError: string | null }
    expect(status.refreshError).toBeNull()
    expect(status.shards.length).toBeGreaterThan(0)
    for (const shard of status.shards) expect(shard).toMatchObject({ phase: "created", live: true, status: "validating" })
    // Each status asked the emulator for each batch (bundle and full CLI alike).
    expect(retrievals() - before).toBeGreaterThanOrEqual(6 * status.shards.length)
  }, 120_000)

  it("--no-refresh, --prices, and bad arguments: the same output and exit code as the full CLI", async () => {
    await import("node:fs/promises").then((fs) => fs.writeFile(project.path("bad-prices.json"), "{"))
    const cases: Array<ReadonlyArray<string>> = [
      ["status", "--no-refresh", runDir],
      ["status", runDir, "--prices", project.path("bad-prices.json")],
      ["status", project.path("missing")],
      ["status", project.path("missing"), "--json"],
      ["status", project.dir]
    ]
    for (const args of cases) {
      const { viaBin, full, modules } = await both(args)
      expect(viaBin, args.join(" ")).toEqual(full)
      expect(bundled(modules)).toBe(true)
    }
  }, 120_000)

  it("only plain status arguments go to the bundle; help, other flags and other commands to the full CLI", async () => {
    for (const args of [["status", "d"], ["status", "--json", "d"], ["status", "d", "--no-refresh", "--prices", "p.json", "--json"]]) {
      expect(QuickAnswer.statusOnly(args), args.join(" ")).toBe(true)
    }
    for (const args of [["status"], ["status", "a", "b"], ["status", "--help", "d"], ["status", "d", "--log-level", "debug"], ["status", "d", "--prices"], ["status", "d", "--prices", "--json"], ["report", "d"], ["--json", "status", "d"]]) {
      expect(QuickAnswer.statusOnly(args), args.join(" ")).toBe(false)
    }
    const { viaBin, full, modules } = await both(["status", runDir, "--log-level", "info", "--no-refresh"])
    expect(viaBin).toEqual(full)
    expect(bundled(modules)).toBe(false)
    expect(effectLoaded(modules)).toBe(true)
  }, 120_000)
})
