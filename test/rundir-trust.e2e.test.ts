/**
 * A run directory is data, not code, and as private as the data it holds — through the real
 * CLI against the emulator.
 *
 * - Its manifest names a pipeline file, and that file now writes a marker when it is imported:
 *   `status` and `cancel` import nothing (no marker, and `cancel` still stops the batch);
 *   `resume` and `retry` refuse a file whose SHA-256 is not the one the run recorded (exit 2,
 *   naming the file and both hashes), `--allow-changed` or not; a relative name in the manifest
 *   resolves against the run directory, never the working directory. A changed file is taken
 *   only when the user names it: `sluice run <file> --run-dir <dir>`.
 * - Under a umask of 000, everything sluice creates in a run directory and the response cache
 *   is 0700 (directories) and 0600 (files); the sink, the user's own file, follows the umask.
 */
import { spawn } from "node:child_process"
import { createHash } from "node:crypto"
import { existsSync, statSync } from "node:fs"
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  type CliResult,
  childEnv,
  describeResult,
  emulatorEnv,
  getLedger,
  makeProject,
  pipelineSource,
  runCli,
  sluiceBin,
  startTestEmulator,
  type TempProject,
  type TestEmulator,
  writeRows
} from "./support/cli.js"
import { batchesOfRun, eventsTagged, readFailures, readJournal, readSink, runFlags, runIdOf, setFaults } from "./support/runs.js"

const SLOW = { timeout: 240_000 }

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex")

/** The pipeline, preceded by code that leaves a MARKER file next to it when it is imported. */
const payload = `import { writeFileSync } from "node:fs"
writeFileSync(new URL("./MARKER", import.meta.url), "imported\\n")
${pipelineSource()}`

const readManifest = async (runDir: string) =>
  JSON.parse(await readFile(join(runDir, "manifest.json"), "utf8")) as { pipelineFile: string; pipelineSha256: string } & Record<string, unknown>

describe("a run directory never runs code it names", SLOW, () => {
  let emulator: TestEmulator
  let project: TempProject
  const original = pipelineSource()
  const runDir = () => project.path("runs", "r")
  const marker = () => project.path("MARKER")
  const sluice = (args: ReadonlyArray<string>) => runCli(args, { cwd: project.dir, env: emulatorEnv(emulator.url) })
  const expectNoMarker = (what: string) => expect(existsSync(marker()), `${what} imported the pipeline file`).toBe(false)

  beforeAll(async () => {
    // The first batch makes no progress: it is in flight until cancelled.
    emulator = await startTestEmulator({ requestsPerSecond: 0.001 })
    project = await makeProject("sluice-rundir-")
    await writeRows(project, "data/rows.jsonl", 20)
    await writeFile(project.path("p.pipeline.ts"), original)
  })
  afterAll(async () => {
    await emulator?.close()
    await project?.cleanup()
  })

  it("records the pipeline file's SHA-256; status and cancel import nothing; resume and retry refuse the changed file", async () => {
    const started = await sluice(["run", "p.pipeline.ts", ...runFlags("runs/r", 20, ["--detach"])])
    expect(started.code, describeResult(started)).toBe(3)
    const manifest = await readManifest(runDir())
    expect(manifest.pipelineFile).toBe(project.path("p.pipeline.ts"))
    expect(manifest.pipelineSha256).toBe(sha256(original))

    // The file the manifest names becomes a payload.
    await writeFile(project.path("p.pipeline.ts"), payload)

    const status = await sluice(["status", "runs/r"])
    expect(status.code, describeResult(status)).toBe(0)
    expect(status.stdout).toContain(`pipeline file ${project.path("p.pipeline.ts")} (changed since the run recorded it`)
    expectNoMarker("status")

    const cancelled = await sluice(["cancel", "runs/r", "--poll-interval", "0.05"])
    expectNoMarker("cancel")
    // Cancelled and journaled; collecting waits for a resume with the recorded file.
    expect(cancelled.code, describeResult(cancelled)).toBe(3)
    expect(cancelled.stderr).toContain("cancel: 1 batch cancelled. Their results are collected by `sluice resume")
    const runId = await runIdOf(runDir())
    const [batch] = batchesOfRun(await getLedger(emulator.url), runId)
    expect(batch?.status).toBe("cancelled")
    expect(eventsTagged(await readJournal(runDir()), "Terminal")).toMatchObject([{ batchId: batch!.id, status: "cancelled" }])
    expect(eventsTagged(await readJournal(runDir()), "Collected")).toEqual([])

    for (const args of [["resume", "runs/r"], ["retry", "runs/r"], ["resume", "runs/r", "--allow-changed"]]) {
      const r = await sluice([...args, "--poll-interval", "0.05"])
      expectNoMarker(args.join(" "))
      expect(r.code, describeResult(r)).toBe(2)
      expect(r.stderr).toContain(
        `${project.path("p.pipeline.ts")} changed since run ${runDir()} recorded it (sha256 ${sha256(original)} when recorded, ${sha256(payload)} now)`
      )
      expect(r.stderr).toContain(`sluice run ${project.path("p.pipeline.ts")} --run-dir ${runDir()}`)
    }

    // The recorded file back: resume collects the cancelled batch, and submits nothing again.
    await writeFile(project.path("p.pipeline.ts"), original)
    const resumed = await sluice(["resume", "runs/r", "--poll-interval", "0.05"])
    expect(resumed.code, describeResult(resumed)).toBe(1)
    const failures = await readFailures(runDir())
    expect(failures).toHaveLength(20)
    expect(new Set(failures.map((f) => f.class))).toEqual(new Set(["cancelled"]))
    expect(batchesOfRun(await getLedger(emulator.url), runId)).toHaveLength(1)
  })

  it("a changed file is taken when the user names it (sluice run <file> --run-dir), and resume and retry take it from then on", async () => {
    const edited = `${original}// edited\n`
    await writeFile(project.path("p.pipeline.ts"), edited)
    const refused = await sluice(["retry", "runs/r", "--only", "cancelled", "--poll-interval", "0.05"])
    expect(refused.code, describeResult(refused)).toBe(2)

    const named = await sluice(["run", "p.pipeline.ts", ...runFlags("runs/r", 20)])
    expect(named.code, describeResult(named)).toBe(1) // the run had finished: nothing to do
    expect(named.stderr).toContain("nothing to do")
    expect((await readManifest(runDir())).pipelineSha256).toBe(sha256(edited))

    await setFaults(emulator.url, { requestsPerSecond: "Infinity" })
    const retried = await sluice(["retry", "runs/r", "--only", "cancelled", "--poll-interval", "0.05"])
    expect(retried.code, describeResult(retried)).toBe(0)
    const keys = (await readSink(project.path("out", "labeled.jsonl"))).map((l) => l.key)
    expect(keys).toHaveLength(20)
    expect(new Set(keys).size).toBe(20)
  })

  it("a relative pipeline file in a manifest resolves against the run directory, not the working directory", async () => {
    // A crafted run: its manifest names `p.pipeline.ts` relatively, with no hash, and the
    // working directory has a payload of that name.
    const crafted = project.path("runs", "crafted")
    await mkdir(crafted, { recursive: true })
    const manifest = await readManifest(runDir())
    const { pipelineSha256: _, ...unhashed } = manifest
    await writeFile(join(crafted, "manifest.json"), JSON.stringify({ ...unhashed, pipelineFile: "p.pipeline.ts" }))
    await writeFile(project.path("p.pipeline.ts"), payload)
    for (const command of ["resume", "retry"]) {
      const r = await sluice([command, "runs/crafted", "--poll-interval", "0.05"])
      expectNoMarker(command)
      expect(r.code, describeResult(r)).toBe(2)
      expect(r.stderr).toContain(`no such file in ${crafted}`)
    }
    await writeFile(project.path("p.pipeline.ts"), original)
  })
})

/** The CLI under `umask 000`, as a shell would run it. */
const sluiceUnderUmask = (args: ReadonlyArray<string>, cwd: string, env: Readonly<Record<string, string | undefined>>): Promise<CliResult> =>
  new Promise((resolve, reject) => {
    const child = spawn("/bin/sh", ["-c", 'umask 000 && exec "$@"', "sh", process.execPath, sluiceBin, ...args], { cwd, env: childEnv(env) })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d))
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d))
    child.on("error", reject)
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }))
  })

/** Every directory and file under `dir` (itself included), with its permission bits in octal. */
const modes = async (dir: string): Promise<Array<[string, string]>> => {
  const out: Array<[string, string]> = [[dir, (statSync(dir).mode & 0o777).toString(8)]]
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name)
    if (entry.isDirectory()) out.push(...(await modes(full)))
    else out.push([full, (statSync(full).mode & 0o777).toString(8)])
  }
  return out
}

describe("files as private as the data", SLOW, () => {
  let emulator: TestEmulator
  let project: TempProject

  beforeAll(async () => {
    emulator = await startTestEmulator()
    project = await makeProject("sluice-modes-")
    await writeRows(project, "data/rows.jsonl", 12)
  })
  afterAll(async () => {
    await emulator?.close()
    await project?.cleanup()
  })

  it("under umask 000: the run directory (previous generations too) and the response cache are 0700/0600; the sink follows the umask", async () => {
    const env = { ...emulatorEnv(emulator.url), SLUICE_CACHE: undefined }
    const run = async (model: string, extra: ReadonlyArray<string> = []) => {
      await writeFile(project.path("p.pipeline.ts"), pipelineSource({ model }))
      const r = await sluiceUnderUmask(["run", "p.pipeline.ts", ...runFlags("state/runs/m", 5, ["--cache-dir", "state/cache", ...extra])], project.dir, env)
      expect(r.code, describeResult(r)).toBe(0)
    }
    await run("gpt-4o-mini")
    // A changed pipeline accepted: the run so far moves to previous/1/.
    await run("gpt-4o", ["--allow-changed"])
    expect(existsSync(project.path("state", "runs", "m", "previous", "1", "journal.jsonl"))).toBe(true)
    // A pipeline without a sink of its own keeps its outputs in the run directory.
    await writeFile(project.path("nosink.pipeline.ts"), pipelineSource({ name: "nosink" }).replace(/\n {2}Pipeline\.to\(.*\)\n/, "\n"))
    const nosink = await sluiceUnderUmask(["run", "nosink.pipeline.ts", ...runFlags("state/runs/n", 5, ["--no-cache"])], project.dir, env)
    expect(nosink.code, describeResult(nosink)).toBe(0)
    expect(existsSync(project.path("state", "runs", "n", "outputs.jsonl"))).toBe(true)

    const state = await modes(project.path("state"))
    const files = state.filter(([p]) => statSync(p).isFile())
    expect(files.length).toBeGreaterThan(10)
    expect(state.filter(([p, m]) => m !== (statSync(p).isDirectory() ? "700" : "600"))).toEqual([])
    // The user's own output: created as the umask says.
    expect((statSync(project.path("out", "labeled.jsonl")).mode & 0o777).toString(8)).toBe("666")
  })
})
