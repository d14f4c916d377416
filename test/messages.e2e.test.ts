/**
 * Messages a person can act on, end to end: the real `sluice` CLI as a child process, against
 * the emulator (in this process, 127.0.0.1) or a port where nothing listens. Help that reads
 * in a pipe, failures that say what, where and what to do next, and progress that speaks
 * when something changed.
 */
import { spawn } from "node:child_process"
import { existsSync } from "node:fs"
import { appendFile, chmod, mkdir, stat, symlink, writeFile } from "node:fs/promises"
import { createServer } from "node:net"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import {
  childEnv,
  type CliResult,
  describeResult,
  emulatorEnv,
  fastRunFlags,
  makeProject,
  runCli,
  sluiceBin,
  spawnCli,
  stackTraceLines,
  startTestEmulator,
  type TempProject,
  type TestEmulator,
  writeLines,
  writePipeline,
  writeRows
} from "./support/cli.js"
import { waitFor } from "./support/runs.js"

/** Each CLI start loads TypeScript through tsx: give tests that spawn it a few times room. */
const SLOW = { timeout: 180_000 }

const ESC = "\u001b"

const expectNoStackTrace = (r: CliResult) => {
  expect(stackTraceLines(r.stderr), describeResult(r)).toEqual([])
  expect(stackTraceLines(r.stdout), describeResult(r)).toEqual([])
}

/** A loopback port where nothing listens (bound, then released). */
const closedPort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!().catch(() => undefined)
})

const project = async (): Promise<TempProject> => {
  const p = await makeProject("sluice-messages-")
  cleanups.push(p.cleanup)
  return p
}

const emulator = async (options: Parameters<typeof startTestEmulator>[0] = {}): Promise<TestEmulator> => {
  const e = await startTestEmulator(options)
  cleanups.push(() => e.close())
  return e
}

// ---------------------------------------------------------------------------------------------
// Help
// ---------------------------------------------------------------------------------------------

describe("help", SLOW, () => {
  let dir: TempProject
  beforeAll(async () => {
    dir = await makeProject("sluice-help-")
  })
  afterAll(async () => {
    await dir?.cleanup()
  })

  // Neither NO_COLOR nor FORCE_COLOR: a pipe alone must be enough to turn styles off.
  const piped = { NO_COLOR: undefined, FORCE_COLOR: undefined, TERM: "xterm-256color" }

  for (const args of [[], ["--help"], ["run", "--help"], ["status", "-h"], ["emulator", "--help"]]) {
    it(`\`sluice ${args.join(" ")}\` into a pipe has no escape codes`, async () => {
      const r = await runCli(args, { cwd: dir.dir, env: piped })
      expect(r.code, describeResult(r)).toBe(0)
      expect(r.stdout.length).toBeGreaterThan(100)
      expect(r.stdout.includes(ESC), r.stdout).toBe(false)
    })
  }

  it("usage lines name the program: `sluice run …`, `sluice status …`; the overview lists `sluice <command>`", async () => {
    const run = await runCli(["run", "--help"], { cwd: dir.dir })
    expect(run.stdout).toMatch(/^ {2}sluice run \[--run-dir directory\]/m)
    expect(run.stdout).toMatch(/<pipeline\.ts>$/m)
    expect(run.stdout).not.toMatch(/^\$ run /m)
    const status = await runCli(["status", "--help"], { cwd: dir.dir })
    expect(status.stdout).toMatch(/^ {2}sluice status \[--json\] \[--prices file\] \[--cluster postgres:\/\/…\] \[--no-refresh\] <run-dir>$/m)
    const overview = await runCli(["--help"], { cwd: dir.dir })
    for (const command of ["run <pipeline.ts>", "resume <run-dir>", "status <run-dir>", "retry <run-dir>", "cancel <run-dir>", "estimate <pipeline.ts>", "emulator"]) {
      expect(overview.stdout).toContain(`sluice ${command}`)
    }
  })

  it("defaults are shown beside the options", async () => {
    const run = await runCli(["run", "--help"], { cwd: dir.dir })
    // Descriptions wrap at the terminal's width: compare them as one line.
    const flat = run.stdout.replace(/\s+/g, " ")
    expect(flat).toMatch(/--concurrency integer batches in flight at once; online, requests in flight at once \([^)]*\) \(an integer from 1 to 10000; default 4 batches, 8 online requests\)/)
    expect(flat).toMatch(/--rpm integer online: requests per minute per provider at most[^(]*\([^)]*\) \(an integer from 1 to 100000000; default no cap but the provider's own limits\)/)
    expect(flat).toMatch(/--poll-interval float a fixed wait in seconds between status polls of a batch.*?; default adaptive\)/)
    expect(flat).toMatch(/--max-poll-interval float the longest wait in seconds between two status polls.*?; default 30\)/)
    expect(run.stdout).toMatch(/--run-dir directory +the run directory \(default: \.sluice\/runs\/<pipeline name>\)/)
    const emulatorHelp = await runCli(["emulator", "--help"], { cwd: dir.dir })
    const emulatorFlat = emulatorHelp.stdout.replace(/\s+/g, " ")
    expect(emulatorFlat).toMatch(/--validating-ms integer how long a batch stays validating \([^)]*; default 200\)/)
    expect(emulatorFlat).toMatch(/processing speed per batch \([^)]*; default 1000\)/)
  })

  /** Runs the CLI on a pseudo-terminal (util-linux `script`), returning what the terminal showed. */
  const onTerminal = (args: ReadonlyArray<string>, env: Record<string, string | undefined>): Promise<string> =>
    new Promise((resolve, reject) => {
      const command = [process.execPath, sluiceBin, ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(" ")
      const child = spawn("script", ["-qec", command, "/dev/null"], { cwd: dir.dir, env: childEnv(env), stdio: ["ignore", "pipe", "pipe"] })
      let out = ""
      child.stdout.setEncoding("utf8").on("data", (d: string) => (out += d))
      child.on("error", reject)
      child.on("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`script exited ${code}: ${out}`))))
    })

  const hasScript = existsSync("/usr/bin/script") || existsSync("/bin/script")

  it.skipIf(!hasScript)("on a terminal the help is styled, unless NO_COLOR is set", async () => {
    const styled = await onTerminal(["run", "--help"], { NO_COLOR: undefined, FORCE_COLOR: undefined, TERM: "xterm-256color" })
    expect(styled).toContain("sluice run")
    expect(styled.includes(ESC)).toBe(true)
    const plain = await onTerminal(["run", "--help"], { NO_COLOR: "1", FORCE_COLOR: undefined, TERM: "xterm-256color" })
    expect(plain).toContain("sluice run")
    expect(plain.includes(ESC), plain).toBe(false)
  })
})

// ---------------------------------------------------------------------------------------------
// Failures that say what to do
// ---------------------------------------------------------------------------------------------

describe("a provider that cannot be reached", SLOW, () => {
  it("each retry says what, where and how often; giving up names the run directory to resume; --json prints the error object", async () => {
    const p = await project()
    await writeRows(p, "data/rows.jsonl", 5)
    await writePipeline(p, "p.pipeline.ts", { name: "unreachable" })
    const port = await closedPort()
    const base = `http://127.0.0.1:${port}/v1`
    // A short retry schedule: 2 retries, 10 ms first delay.
    const env = { ...emulatorEnv(`http://127.0.0.1:${port}`), SLUICE_HTTP_RETRIES: "2", SLUICE_HTTP_RETRY_DELAY_MS: "10" }

    const r = await runCli(["run", "p.pipeline.ts", "--run-dir", "runs/u", "--json", ...fastRunFlags(10)], { cwd: p.dir, env })

    expect(r.code, describeResult(r)).toBe(4)
    expectNoStackTrace(r)
    const runDir = p.path("runs", "u")
    const retries = r.stderr.split("\n").filter((l) => l.includes("retrying"))
    expect(retries, describeResult(r)).toHaveLength(2)
    const escaped = base.replace(/[.:/]/g, (c) => `\\${c}`)
    expect(retries[0]).toMatch(new RegExp(`cannot reach ${escaped} \\(ECONNREFUSED\\): retrying (GET|POST) /\\S+ in \\d+ ms \\(attempt 2 of 3\\)$`))
    expect(retries[1]).toMatch(/\(attempt 3 of 3\)$/)
    const errors = r.stderr.split("\n").filter((l) => l.startsWith("sluice: error:"))
    expect(errors).toHaveLength(1)
    expect(errors[0]).toContain(`cannot reach ${base}`)
    expect(errors[0]).toContain("gave up after 3 attempts")
    // The last word is what to do next, with the real run directory.
    const lines = r.stderr.trimEnd().split("\n")
    expect(lines.at(-1)).toBe(`sluice: run \`sluice resume ${runDir}\` to continue`)

    const { error } = JSON.parse(r.stdout) as { error: Record<string, unknown> }
    expect(error).toMatchObject({ tag: "ProviderError", reason: "Transport", exitCode: 4, runDir, resume: `sluice resume ${runDir}` })
    expect(error["message"]).toBe(errors[0]!.slice("sluice: error: ".length))
  })

  it("a base URL without /v1 gets a hint on the emulator's 404", async () => {
    const e = await emulator()
    const p = await project()
    await writeRows(p, "data/rows.jsonl", 3)
    await writePipeline(p, "p.pipeline.ts", { name: "nov1" })
    const r = await runCli(["run", "p.pipeline.ts", ...fastRunFlags(10)], {
      cwd: p.dir,
      env: { OPENAI_BASE_URL: e.url, OPENAI_API_KEY: "sk-test-fake-key" }
    })
    expect(r.code, describeResult(r)).not.toBe(0)
    expectNoStackTrace(r)
    expect(r.stderr).toMatch(/NotFound \(HTTP 404\)/)
    expect(r.stderr).toContain(`did you mean ${e.url}/v1?`)
  })
})

describe("file system errors name the path", SLOW, () => {
  it.skipIf(!existsSync("/sys"))("a run directory sluice may not create (under /sys, even for root): exit 2, naming it", async () => {
    const p = await project()
    await writeRows(p, "data/rows.jsonl", 3)
    await writePipeline(p, "p.pipeline.ts", { name: "sys" })
    const runDir = `/sys/sluice-e2e-${process.pid}`
    const r = await runCli(["run", "p.pipeline.ts", "--run-dir", runDir, ...fastRunFlags(10)], { cwd: p.dir, env: emulatorEnv("http://127.0.0.1:9") })
    expect(r.code, describeResult(r)).toBe(2)
    expectNoStackTrace(r)
    expect(r.stderr).toMatch(new RegExp(`error: run directory ${runDir}: cannot create it: (operation not permitted \\(EPERM\\)|permission denied \\(EACCES\\)|read-only file system \\(EROFS\\))`))
    expect(r.stderr).not.toMatch(/internal error/)
    expect(r.stderr).not.toContain("sluice resume")
  })

  it("a file where the run directory should be: the path and what is wrong, no internal error", async () => {
    const p = await project()
    await writeRows(p, "data/rows.jsonl", 3)
    await writePipeline(p, "p.pipeline.ts", { name: "blocked" })
    await writeFile(p.path("blocker"), "a file, not a directory\n")
    const r = await runCli(["run", "p.pipeline.ts", "--run-dir", "blocker/run", ...fastRunFlags(10)], { cwd: p.dir, env: emulatorEnv("http://127.0.0.1:9") })
    expect(r.code, describeResult(r)).not.toBe(0)
    expectNoStackTrace(r)
    expect(r.stderr).toMatch(/blocker\/run: not a directory \(ENOTDIR\)/)
    expect(r.stderr).not.toMatch(/internal error/)
  })

  it("a worker's --state-dir others can write: refused before it joins (exit 2, naming it); a link to a directory of its own is followed", async () => {
    const p = await project()
    const open = p.path("open-state")
    await mkdir(open)
    await chmod(open, 0o777)
    // Nothing listens at the database's port: a worker that got past the check would fail there instead.
    const database = `postgres://sluice@127.0.0.1:${await closedPort()}/none`
    const r = await runCli(["worker", "--state-dir", open, "--database-url", database], { cwd: p.dir })
    expect(r.code, describeResult(r)).toBe(2)
    expectNoStackTrace(r)
    expect(r.stderr).toContain(`cannot keep the copies of runs' files in ${open} (--state-dir): it is not a directory of this user that others cannot write`)
    await chmod(open, 0o700)
    await symlink(open, p.path("linked-state"))
    const linked = await runCli(["worker", "--state-dir", p.path("linked-state"), "--database-url", database], { cwd: p.dir })
    expect(linked.code, describeResult(linked)).not.toBe(0)
    expect(linked.stderr).not.toContain("cannot keep the copies")
    expect(linked.stderr).toContain("cannot use the cluster's PostgreSQL database")
  })

  it("a sink whose directory is a file: the sink's path, and the run to resume once it is fixed", async () => {
    const e = await emulator()
    const p = await project()
    await writeRows(p, "data/rows.jsonl", 3)
    await writePipeline(p, "p.pipeline.ts", { name: "sinkblocked", sink: "out/labeled.jsonl" })
    await writeFile(p.path("out"), "a file where the sink's directory should be\n")
    const r = await runCli(["run", "p.pipeline.ts", ...fastRunFlags(10)], { cwd: p.dir, env: emulatorEnv(e.url) })
    expect(r.code, describeResult(r)).toBe(4)
    expectNoStackTrace(r)
    expect(r.stderr).toMatch(/error: sink jsonl:out\/labeled\.jsonl: cannot create the directory of out\/labeled\.jsonl: .*\bout\b.*(EEXIST|ENOTDIR)/)
    expect(r.stderr).toContain(`run \`sluice resume ${p.path(".sluice", "runs", "sinkblocked")}\` to continue`)
  })

  it.skipIf(process.getuid?.() === 0)("a read-only run directory: exit 2, naming the directory and the lock it could not write", async () => {
    const e = await emulator()
    const p = await project()
    await writeRows(p, "data/rows.jsonl", 3)
    await writePipeline(p, "p.pipeline.ts", { name: "readonly" })
    const first = await runCli(["run", "p.pipeline.ts", "--run-dir", "runs/ro", ...fastRunFlags(10)], { cwd: p.dir, env: emulatorEnv(e.url) })
    expect(first.code, describeResult(first)).toBe(0)
    const { chmod } = await import("node:fs/promises")
    await chmod(p.path("runs", "ro"), 0o555)
    cleanups.push(() => chmod(p.path("runs", "ro"), 0o755))
    const r = await runCli(["resume", "runs/ro"], { cwd: p.dir, env: emulatorEnv(e.url) })
    expect(r.code, describeResult(r)).toBe(2)
    expect(r.stderr).toContain(`run directory ${p.path("runs", "ro")}: cannot write its lock file ${p.path("runs", "ro", "run.lock")}: permission denied (EACCES)`)
  })
})

describe("a directory that is not a run", SLOW, () => {
  it("status, resume, retry and cancel say so, exit 2; with --json as an error object", async () => {
    const p = await project()
    await mkdir(p.path("empty"))
    const dir = p.path("empty")
    for (const command of ["status", "resume", "retry", "cancel"]) {
      const r = await runCli([command, "empty"], { cwd: p.dir, env: emulatorEnv("http://127.0.0.1:9") })
      expect(r.code, `${command}: ${describeResult(r)}`).toBe(2)
      expect(r.stderr).toContain(`sluice: error: ${dir} is not a sluice run directory (no manifest.json)`)
      expectNoStackTrace(r)
    }
    const asJson = await runCli(["status", "empty", "--json"], { cwd: p.dir })
    expect(asJson.code).toBe(2)
    expect(JSON.parse(asJson.stdout)).toEqual({
      error: { tag: "NotARunDirectory", message: `${dir} is not a sluice run directory (no manifest.json)`, exitCode: 2 }
    })
  })
})

// ---------------------------------------------------------------------------------------------
// A finished run, run again
// ---------------------------------------------------------------------------------------------

describe("re-running a finished run", SLOW, () => {
  it("says there is nothing to do and where the output is, and exits as the run ended", async () => {
    const e = await emulator()
    const p = await project()
    await writeLines(p, "data/rows.jsonl", [
      JSON.stringify({ id: "a1", text: "good" }),
      "{ not json",
      JSON.stringify({ id: "a3", text: "fine" })
    ])
    await writePipeline(p, "p.pipeline.ts", { name: "again", onInvalid: "skip" })
    const env = emulatorEnv(e.url)
    const first = await runCli(["run", "p.pipeline.ts", ...fastRunFlags(10)], { cwd: p.dir, env })
    expect(first.code, describeResult(first)).toBe(1)
    expect(first.stderr).not.toContain("nothing to do")
    expect(first.stderr).toContain("done: 3 rows, 2 succeeded, 1 failed, 0 pending, 1 batch")

    const again = await runCli(["run", "p.pipeline.ts", ...fastRunFlags(10)], { cwd: p.dir, env })
    expect(again.code, describeResult(again)).toBe(1)
    const runDir = p.path(".sluice", "runs", "again")
    const lines = again.stderr.trimEnd().split("\n")
    expect(lines).toEqual([
      expect.stringMatching(/^nothing to do: run again-[0-9a-f]+ has finished: 3 rows, 2 succeeded, 1 failed, 1 batch$/),
      "output: jsonl:out/labeled.jsonl",
      `failed rows are listed in ${runDir}/failures.jsonl`,
      `run directory: ${runDir}`
    ])

    // A row appended to the source after the run read it is not silently left out.
    const batches = e.calls("POST", "/v1/batches")
    expect(batches).toBe(1)
    const before = (await stat(p.path("data", "rows.jsonl"))).size
    await appendFile(p.path("data", "rows.jsonl"), JSON.stringify({ id: "a4", text: "late" }) + "\n")
    const grown = await runCli(["run", "p.pipeline.ts", ...fastRunFlags(10)], { cwd: p.dir, env })
    expect(grown.code, describeResult(grown)).toBe(1)
    const warning = grown.stderr.trimEnd().split("\n").at(-1)!
    expect(warning).toBe(
      `warning: data/rows.jsonl changed after this run read it (${before} bytes then, ${before + 26} now): rows added or changed since are not in this run. ` +
        "To process them, start a new run in another run directory (`sluice run <pipeline> --run-dir <new dir>`): rows answered before come from the response cache at no cost"
    )
    expect(grown.stderr).toMatch(/^nothing to do: .* 3 rows, 2 succeeded, 1 failed, 1 batch$/m)
    expect(e.calls("POST", "/v1/batches")).toBe(batches)
    const asJson = await runCli(["run", "p.pipeline.ts", "--json", ...fastRunFlags(10)], { cwd: p.dir, env })
    expect(JSON.parse(asJson.stdout).sourceChanged).toEqual([{ path: "data/rows.jsonl", plannedBytes: before, bytes: before + 26 }])
  })
})

// ---------------------------------------------------------------------------------------------
// Progress in a pipe
// ---------------------------------------------------------------------------------------------

describe("progress in a pipe", SLOW, () => {
  it("a status line when something changed, none while polls change nothing", async () => {
    // The emulator's clock stands still until the test moves it: the batch stays validating.
    let now = Date.now()
    const e = await emulator({ clock: () => now })
    const p = await project()
    await writeRows(p, "data/rows.jsonl", 10)
    await writePipeline(p, "p.pipeline.ts", { name: "quiet" })
    const child = spawnCli(["run", "p.pipeline.ts", ...fastRunFlags(10)], { cwd: p.dir, env: emulatorEnv(e.url) })
    cleanups.push(async () => void child.kill("SIGKILL"))
    let stderr = ""
    child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d))
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))

    const inFlight = "sluice: 10 rows planned · 1 shard, 1 batch in flight, 0 collected · rows 0 ok, 0 failed, 10 pending"
    await waitFor("the batch in flight", () => (/ 1 batch(es)? in flight/.test(stderr) ? true : undefined), { timeoutMs: 60_000 })
    const batchId = /→ batch (\S+)/.exec(stderr)![1]!
    const polls = () => e.calls("GET", `/v1/batches/${batchId}`)
    // Heartbeats (a minute without change) are allowed; anything else is not.
    const spoken = () => stderr.split("\n").filter((l) => l !== "" && !l.includes("unchanged for"))
    const before = spoken()
    const pollsBefore = polls()
    // 250 polls at 0.05 s apart take at least 12.5 s: longer than any fixed refresh period.
    await waitFor("250 polls", () => (polls() >= pollsBefore + 250 ? true : undefined), { timeoutMs: 120_000, intervalMs: 100 })
    expect(spoken()).toEqual(before)

    now += 60 * 60_000 // the batch runs and completes
    expect(await exited, stderr).toBe(0)
    const status = stderr.split("\n").filter((l) => l.startsWith("sluice: ") && l.includes(" · rows ") && !l.includes("unchanged for"))
    // Each line ends with the stage's rows per second (once measured) and spend so far, which
    // do not make a line of their own.
    const rates = / · label (?:[\d.,]+ rows\/s, )?~?\$[\d.]+(?: \(est\.\))?$/
    for (const l of status) expect(l).toMatch(rates)
    expect(status.map((l) => l.replace(rates, ""))).toEqual([
      "sluice: planning (10 rows so far) · 1 shard, 0 batches in flight, 0 collected · rows 0 ok, 0 failed, 10 pending",
      "sluice: 10 rows planned · 1 shard, 0 batches in flight, 0 collected · rows 0 ok, 0 failed, 10 pending",
      inFlight,
      "sluice: 10 rows planned · 1 shard, 0 batches in flight, 1 collected · rows 10 ok, 0 failed, 0 pending"
    ])
  })
})
