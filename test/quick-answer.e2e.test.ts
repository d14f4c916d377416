/**
 * `sluice --help`, `sluice <command> --help` and `sluice --version` are answered by
 * bin/sluice.js from dist/help.json without loading Effect (QuickAnswer.ts). These tests run
 * that fast path and the real CLI (dist/bin.js, which has no fast path) side by side and
 * require the same bytes, the same stderr and the same exit code: for the program and every
 * command, into a pipe and on a terminal of several widths, styled and not. And they show the
 * fast path is taken (no Effect module loads) exactly for those argument lists.
 */
import { spawn } from "node:child_process"
import { existsSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { program } from "../packages/runner/src/Cli.js"
import * as Help from "../packages/runner/src/internal/help.js"
import * as HelpText from "../packages/runner/src/internal/helpText.js"
import * as QuickAnswer from "../packages/runner/src/QuickAnswer.js"
import { childEnv, fullCli, repoRoot, runNode, sluiceBin } from "./support/cli.js"
import { effectLoaded, moduleLogHooks, readModuleLog } from "./support/moduleLog.js"

const storedFile = join(repoRoot, "packages", "runner", "dist", "help.json")

let work: string
/** `node --import` this to log the modules a child loads (support/moduleLog.ts). */
let hooks: string

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), "sluice-quick-"))
  hooks = moduleLogHooks(work)
})

afterAll(() => {
  if (work !== undefined) rmSync(work, { recursive: true, force: true })
})

const exec = (nodeArgs: ReadonlyArray<string>, env: Record<string, string | undefined> = {}) => runNode(nodeArgs, work, env)

/** Both programs on `args`; with `watch`, `modules` lists what the fast one (bin/sluice.js) loaded. */
const both = async (args: ReadonlyArray<string>, env: Record<string, string | undefined> = {}, watch = true) => {
  const log = join(work, `modules-${Math.random().toString(36).slice(2)}.txt`)
  const fast = await exec([...(watch ? ["--import", hooks] : []), sluiceBin, ...args], { ...env, SLUICE_TEST_MODULE_LOG: log })
  const real = await exec([fullCli, ...args], env)
  const modules = readModuleLog(log)
  return { fast, real, modules }
}


const commandNames = Help.describe(program).commands.map((c) => c.name)

describe("quick answers: help and version without Effect", () => {
  it("dist/help.json is the help of the CLI as built now, for this version", () => {
    const stored = QuickAnswer.readStored(storedFile)
    expect(stored, "dist/help.json missing or of another version: run npm run build").toBeDefined()
    expect(stored!.help).toEqual(Help.describe(program))
    expect(stored!.help.commands.map((c) => c.name)).toEqual(commandNames)
    expect(commandNames.length).toBeGreaterThan(10)
  })

  it("a help.json missing, unreadable, of another version or older than the last tsc build is not used: the full CLI answers", () => {
    const stored = QuickAnswer.readStored(storedFile)!
    expect(QuickAnswer.readStored(join(work, "absent.json"))).toBeUndefined()
    writeFileSync(join(work, "broken.json"), "{")
    expect(QuickAnswer.readStored(join(work, "broken.json"))).toBeUndefined()
    writeFileSync(join(work, "older.json"), JSON.stringify({ ...stored, help: { ...stored.help, version: "0.0.1" } }))
    expect(QuickAnswer.readStored(join(work, "older.json"))).toBeUndefined()
    writeFileSync(join(work, "same.json"), JSON.stringify(stored))
    expect(QuickAnswer.readStored(join(work, "same.json"))).toEqual(stored)
    // Older than tsc's last build (a `tsc -b` without `npm run build`): not used.
    const buildInfo = join(work, ".tsbuildinfo")
    writeFileSync(buildInfo, "{}")
    utimesSync(join(work, "same.json"), new Date(2020, 0, 1), new Date(2020, 0, 1))
    expect(QuickAnswer.readStored(join(work, "same.json"), buildInfo)).toBeUndefined()
    utimesSync(join(work, "same.json"), new Date(), new Date(Date.now() + 60_000))
    expect(QuickAnswer.readStored(join(work, "same.json"), buildInfo)).toEqual(stored)
    // No build info (the published package has none): used.
    expect(QuickAnswer.readStored(join(work, "same.json"), join(work, "absent-buildinfo"))).toEqual(stored)
  })

  // Every form once through both programs; every command's help is laid out as the real CLI's
  // at every width below (in process: a full CLI start costs a CPU second, 19 of them add up).
  const forms: Array<ReadonlyArray<string>> = [[], ["--help"], ["-h"], ["--version"], ["run", "--help"], ["gc", "--help"], ["status", "-h"]]

  for (const args of forms) {
    it(`\`sluice ${args.join(" ")}\` into a pipe: the real CLI's bytes, without loading Effect`, async () => {
      const { fast, real, modules } = await both(args, { NO_COLOR: undefined, FORCE_COLOR: undefined })
      expect(real.code, real.stderr).toBe(0)
      expect(real.stdout.length).toBeGreaterThan(args[0] === "--version" ? 2 : 200)
      expect(fast).toEqual(real)
      // The fast path ran: bin/sluice.js loaded, effect never.
      expect(modules.some((m) => m.endsWith("/bin/sluice.js"))).toBe(true)
      expect(effectLoaded(modules), modules.filter((m) => m.includes("effect")).slice(0, 5).join("\n")).toBe(false)
    })
  }

  it("styled (FORCE_COLOR=1) and plain (NO_COLOR=1): the same bytes as the real CLI", async () => {
    for (const env of [{ FORCE_COLOR: "1", NO_COLOR: undefined }, { FORCE_COLOR: undefined, NO_COLOR: "1" }]) {
      for (const args of [["--help"], ["run", "--help"]]) {
        const { fast, real, modules } = await both(args, env)
        expect(fast).toEqual(real)
        expect(real.stdout.includes("\x1b[1m")).toBe(env.FORCE_COLOR === "1")
        expect(effectLoaded(modules)).toBe(false)
      }
    }
  })

  it("`sluice --help --json` is left to the real CLI (which loads Effect): the same output", async () => {
    const { fast, real, modules } = await both(["--help", "--json"])
    expect(fast).toEqual(real)
    expect(effectLoaded(modules)).toBe(true)
  })

  for (const args of [["status", "--help", "extra"], ["nope", "--help"], ["--version", "--json"], ["nope"]]) {
    it(`\`sluice ${args.join(" ")}\` is left to the real CLI: the same output and exit code`, async () => {
      expect(QuickAnswer.answer(args, QuickAnswer.readStored(storedFile)!, { isTTY: false })).toBeUndefined()
      const { fast, real } = await both(args, {}, false)
      expect(fast).toEqual(real)
    })
  }

  it("at every terminal width and with styles or not, the stored help lays out as the real CLI's", () => {
    const stored = QuickAnswer.readStored(storedFile)!
    for (const width of [40, 60, 79, 80, 100, 119, 120, 200]) {
      for (const color of [false, true]) {
        for (const args of [[], ...commandNames.map((c) => [c])]) {
          const options = { width, color }
          expect(HelpText.render(stored.help, args, options)).toBe(Help.render(program, args, options))
        }
      }
    }
  })

  const hasScript = existsSync("/usr/bin/script") || existsSync("/bin/script")

  /** `node <script> ...args` on a pseudo-terminal (util-linux `script`) of `columns` columns: what it showed. */
  const onTerminal = (script: string, args: ReadonlyArray<string>, columns: number, env: Record<string, string | undefined>): Promise<string> =>
    new Promise((resolve, reject) => {
      const command = [process.execPath, script, ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(" ")
      const child = spawn("script", ["-qec", `stty cols ${columns}; ${command}`, "/dev/null"], { cwd: work, env: childEnv(env), stdio: ["ignore", "pipe", "pipe"] })
      let out = ""
      child.stdout.setEncoding("utf8").on("data", (d: string) => (out += d))
      child.on("error", reject)
      child.on("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`script exited ${code}: ${out}`))))
    })

  it.skipIf(!hasScript)("on a terminal of 70 and 150 columns, styled or not: what the real CLI shows", async () => {
    const styled = { NO_COLOR: undefined, FORCE_COLOR: undefined, TERM: "xterm-256color" }
    for (const [columns, env, args] of [
      [70, styled, ["run", "--help"]],
      [150, styled, ["--help"]],
      [70, { ...styled, NO_COLOR: "1" }, ["--help"]]
    ] as const) {
      const fast = await onTerminal(sluiceBin, args, columns, env)
      const real = await onTerminal(fullCli, args, columns, env)
      expect(fast.length).toBeGreaterThan(200)
      expect(fast.includes("\x1b[1m")).toBe(env.NO_COLOR === undefined)
      expect(fast).toBe(real)
    }
  })
})
