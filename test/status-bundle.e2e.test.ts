/**
 * Plain `sluice status <run-dir>` runs the bundled status-only program (dist/status.bundle.cjs,
 * src/statusBin.ts, through src/statusMain.ts) instead of the full CLI. These tests run both on
 * the same arguments — the bundle through bin/sluice.js, the full CLI as dist/bin.js — and
 * require the same stdout, stderr and exit code: a run with a batch in flight refreshed from the
 * emulator (through the bundle's own HTTP client), `--json`, `--no-refresh`, and bad arguments;
 * and with the bundle's code cache missing, written, used, corrupt, another script's, or in a
 * directory it cannot or must not use. They also show which program ran.
 */
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import * as vm from "node:vm"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { readCache, writeCache } from "../packages/runner/src/internal/codeCache.js"
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

const bundled = (modules: ReadonlyArray<string>) => modules.some((m) => m.endsWith("/dist/statusMain.js"))

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

describe("the bundle's code cache", () => {
  it("written 0600 by the first status and used by the next; corrupt, another script's, stale, or where it cannot or must not be: the full CLI's answer, and never a word about it", async () => {
    const args = ["status", runDir, "--no-refresh"]
    const full = await exec([fullCli, ...args], emulatorEnv(emulator.url))
    expect(full.code, full.stderr).toBe(0)
    const status = (env: Record<string, string>) => exec([sluiceBin, ...args], { ...emulatorEnv(emulator.url), ...env })
    const dir = project.path("code-cache")
    const env = { SLUICE_CODE_CACHE_DIR: dir }
    const caches = (d = dir) => (existsSync(d) ? readdirSync(d).filter((f) => f.endsWith(".v8cache")) : [])

    // A status that fails (no such run) leaves none: it compiled little of what the next one runs.
    const missing = ["status", project.path("missing"), "--no-refresh"]
    const failed = await exec([sluiceBin, ...missing], { ...emulatorEnv(emulator.url), ...env })
    expect(failed).toEqual(await exec([fullCli, ...missing], emulatorEnv(emulator.url)))
    expect(failed.code).not.toBe(0)
    expect(caches()).toEqual([])
    // None yet: the program compiles, answers, and leaves its compiled code at exit.
    expect(await status(env)).toEqual(full)
    expect(caches()).toHaveLength(1)
    const name = caches()[0]!
    const file = join(dir, name)
    const first = statSync(file)
    expect(first.mode & 0o777).toBe(0o600)
    expect(readCache(file)).toBeDefined()
    // V8 took it: a cache it rejects is written again (a new file, renamed into place).
    expect(await status(env)).toEqual(full)
    expect(statSync(file).ino).toBe(first.ino)

    // Corrupt bytes: its checksum fails, V8 never sees it; a whole cache is written again.
    const bytes = readFileSync(file)
    for (let i = bytes.length - 64; i < bytes.length; i++) bytes[i] = bytes[i]! ^ 0xff
    writeFileSync(file, bytes)
    expect(readCache(file)).toBeUndefined()
    expect(await status(env)).toEqual(full)
    expect(readCache(file)).toBeDefined()

    // Whole, but another script's code: V8 rejects it; answered and written again.
    writeCache([dir], name, new vm.Script("1 + 1").createCachedData())
    const foreign = statSync(file)
    expect(await status(env)).toEqual(full)
    expect(statSync(file).ino).not.toBe(foreign.ino)
    expect(statSync(file).size).toBeGreaterThan(foreign.size)

    // A cache of an earlier bundle (another content hash) is removed when the current one is written.
    const stale = name.replace(/[0-9a-f]{16}\.v8cache$/, `${"0".repeat(16)}.v8cache`)
    writeFileSync(join(dir, stale), "stale")
    writeFileSync(file, "not a cache")
    expect(caches().sort()).toEqual([name, stale].sort())
    expect(await status(env)).toEqual(full)
    expect(caches()).toEqual([name])

    // Nowhere to write (the directory would be inside a file): answered, nothing written.
    const blocked = project.path("a-file")
    writeFileSync(blocked, "")
    expect(await status({ SLUICE_CODE_CACHE_DIR: join(blocked, "cache") })).toEqual(full)
    // A directory other users can write is neither read nor written (V8 would run what it holds).
    const shared = project.path("shared-cache")
    mkdirSync(shared, { mode: 0o777 })
    writeFileSync(join(shared, name), readFileSync(file))
    chmodSync(shared, 0o777)
    const planted = statSync(join(shared, name)).ino
    expect(readCache(join(shared, name))).toBeUndefined()
    expect(await status({ SLUICE_CODE_CACHE_DIR: shared })).toEqual(full)
    expect(caches(shared)).toEqual([name])
    expect(statSync(join(shared, name)).ino).toBe(planted)
    // Off: none read or written.
    const off = project.path("off-cache")
    expect(await status({ SLUICE_CODE_CACHE_DIR: off, SLUICE_CODE_CACHE: "off" })).toEqual(full)
    expect(existsSync(off)).toBe(false)
  }, 180_000)
})
