/**
 * End to end: the real `sluice` CLI as a child process, against the emulator over HTTP on
 * 127.0.0.1, with real files in temp directories.
 */
import { randomBytes } from "node:crypto"
import { existsSync } from "node:fs"
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { Tokens } from "@sluice/core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  type CliResult,
  describeResult,
  emulatorEnv,
  fastRunFlags,
  filesContaining,
  getLedger,
  type Ledger,
  listFilesRecursive,
  listUploads,
  makeProject,
  makeRows,
  readJsonl,
  runCli,
  type Row,
  sentiments,
  spawnCli,
  stackTraceLines,
  startTestEmulator,
  stripAnsi,
  type TempProject,
  type TestEmulator,
  writeLines,
  writePipeline,
  writeRows,
  writeText
} from "./support/cli.js"
import { advanceClock, holdClock, releaseClock, waitFor } from "./support/runs.js"

interface SinkLine {
  readonly key: string
  readonly custom_id: string
  readonly input: Row
  readonly output: { readonly sentiment: string; readonly topics: ReadonlyArray<string> }
}

/**
 * Each CLI start loads TypeScript through tsx (a few seconds on a busy machine): give the tests that
 * spawn it several times more room than the 60 s default, so load never turns into a failure.
 */
const SLOW = { timeout: 180_000 }

const lineCount = (text: string): number => text.split("\n").filter((l) => l.trim() !== "").length

const countBy = <A>(items: ReadonlyArray<A>, keyOf: (a: A) => string): Map<string, number> => {
  const counts = new Map<string, number>()
  for (const item of items) counts.set(keyOf(item), (counts.get(keyOf(item)) ?? 0) + 1)
  return counts
}

const expectNoStackTrace = (r: CliResult) => {
  expect(stackTraceLines(r.stderr), describeResult(r)).toEqual([])
  expect(stackTraceLines(r.stdout), describeResult(r)).toEqual([])
}

/** The `sluice: error: ...` lines of a run's stderr. */
const errorLines = (r: CliResult): Array<string> => r.stderr.split("\n").filter((l) => /\berror\b/i.test(l))

describe("a 300-row run through a provider that fails 5% of requests", SLOW, () => {
  let emulator: TestEmulator
  let project: TempProject
  let rows: ReadonlyArray<Row>
  let first: CliResult
  let ledger: Ledger
  const runArgs = ["run", "classify.pipeline.ts", ...fastRunFlags(50)]
  const runDir = () => project.path(".sluice", "runs", "e2e")
  const sinkPath = () => project.path("out", "labeled.jsonl")

  beforeAll(async () => {
    emulator = await startTestEmulator({ errorRate: 0.05 })
    project = await makeProject()
    rows = await writeRows(project, "data/rows.jsonl", 300)
    await writePipeline(project, "classify.pipeline.ts")
    first = await runCli(runArgs, { cwd: project.dir, env: emulatorEnv(emulator.url) })
    ledger = await getLedger(emulator.url)
  }, SLOW.timeout)

  afterAll(async () => {
    await emulator?.close()
    await project?.cleanup()
  })

  it("exits 0 and writes every row to the sink exactly once, with a valid label", async () => {
    expect(first.code, describeResult(first)).toBe(0)
    const text = await readFile(sinkPath(), "utf8")
    expect(lineCount(text)).toBe(300)
    const out = await readJsonl<SinkLine>(sinkPath())
    expect(out).toHaveLength(300)

    const byKey = countBy(out, (l) => l.key)
    expect(byKey.size).toBe(300)
    expect([...byKey.values()].every((n) => n === 1)).toBe(true)
    expect(new Set(out.map((l) => l.input.id))).toEqual(new Set(rows.map((r) => r.id)))

    const original = new Map(rows.map((r) => [r.id, r]))
    for (const line of out) {
      expect(line.key).toBe(line.input.id)
      expect(line.input).toEqual(original.get(line.key))
      expect(line.custom_id).toMatch(/^[A-Za-z0-9_-]{1,64}$/)
      expect(sentiments).toContain(line.output.sentiment)
      expect(Array.isArray(line.output.topics)).toBe(true)
      expect(line.output.topics.every((t) => typeof t === "string")).toBe(true)
    }
    expect(new Set(out.map((l) => l.custom_id)).size).toBe(300)
  })

  it("keeps its run directory: manifest, journal, shards, results", async () => {
    expect(first.stderr).toContain(`run directory: ${runDir()}`)
    const manifest = JSON.parse(await readFile(join(runDir(), "manifest.json"), "utf8"))
    expect(manifest.pipeline).toBe("e2e")
    expect(typeof manifest.runId).toBe("string")
    expect(manifest.providers?.openai?.baseUrl).toBe(`${emulator.url}/v1`)

    const journal = await readJsonl<{ _tag: string }>(join(runDir(), "journal.jsonl"))
    expect(journal.length).toBeGreaterThan(0)
    expect(journal.every((e) => typeof e._tag === "string")).toBe(true)

    const shardFiles = await readdir(join(runDir(), "shards"))
    const requestFiles = shardFiles.filter((f) => f.endsWith(".jsonl") && !f.endsWith(".rows.jsonl"))
    expect(requestFiles.length).toBeGreaterThan(6) // 6 planned shards plus the retry shards
    expect(shardFiles.filter((f) => f.endsWith(".rows.jsonl")).length).toBeGreaterThanOrEqual(6)

    const results = await readJsonl(join(runDir(), "results.jsonl"))
    expect(results.length).toBeGreaterThanOrEqual(300)
  })

  it("resubmitted the failed requests in retry shards and received no custom_id as a success twice", async () => {
    // 300 rows / 50 per shard = 6 batches; the 5% failures need at least one more.
    expect(ledger.batches.length).toBeGreaterThan(6)
    const submitted = ledger.batches.flatMap((b) => b.custom_ids)
    expect(submitted.length).toBeGreaterThan(300) // some requests were sent twice: the failed ones
    // Six full batches of planned shards; every other batch is a retry shard of failed requests.
    expect(ledger.batches.filter((b) => b.custom_ids.length === 50)).toHaveLength(6)
    expect(ledger.batches.every((b) => b.custom_ids.length > 0 && b.custom_ids.length <= 50)).toBe(true)
    // One batch per shard: no shard was submitted twice.
    const shardOf = ledger.batches.map((b) => b.metadata?.["sluice_shard"] ?? `(no metadata: ${b.id})`)
    expect(new Set(shardOf).size).toBe(ledger.batches.length)

    const deliveredIn = new Map<string, Set<string>>()
    for (const d of ledger.deliveries) {
      const batches = deliveredIn.get(d.custom_id) ?? new Set<string>()
      batches.add(d.batch_id)
      deliveredIn.set(d.custom_id, batches)
    }
    const twice = [...deliveredIn.entries()].filter(([, b]) => b.size > 1).map(([id]) => id)
    expect(twice).toEqual([])
    expect(ledger.deliveries).toHaveLength(300)

    const out = await readJsonl<SinkLine>(sinkPath())
    expect(new Set(deliveredIn.keys())).toEqual(new Set(out.map((l) => l.custom_id)))
    expect(new Set(submitted)).toEqual(new Set(out.map((l) => l.custom_id)))
  })

  it("running the same command again on the finished run submits and uploads nothing", async () => {
    const sinkBefore = await readFile(sinkPath(), "utf8")
    const batchesBefore = (await getLedger(emulator.url)).batches.length
    const uploadsBefore = (await listUploads(emulator.url)).length
    const fileCallsBefore = emulator.calls("POST", "/v1/files")
    const batchCallsBefore = emulator.calls("POST", "/v1/batches")
    expect(fileCallsBefore).toBeGreaterThan(0) // the counter does count the first run's uploads

    const again = await runCli(runArgs, { cwd: project.dir, env: emulatorEnv(emulator.url) })
    expect(again.code, describeResult(again)).toBe(0)

    expect((await getLedger(emulator.url)).batches.length).toBe(batchesBefore)
    expect((await listUploads(emulator.url)).length).toBe(uploadsBefore)
    expect(emulator.calls("POST", "/v1/files")).toBe(fileCallsBefore)
    expect(emulator.calls("POST", "/v1/batches")).toBe(batchCallsBefore)

    const sinkAfter = await readFile(sinkPath(), "utf8")
    expect(lineCount(sinkAfter)).toBe(300)
    expect(sinkAfter).toBe(sinkBefore)
  })

  it("`sluice status --json` reports the finished run; the text form names the run", async () => {
    const manifest = JSON.parse(await readFile(join(runDir(), "manifest.json"), "utf8"))
    const env = emulatorEnv(emulator.url)

    const asJson = await runCli(["status", runDir(), "--json"], { cwd: project.dir, env })
    expect(asJson.code, describeResult(asJson)).toBe(0)
    const status = JSON.parse(asJson.stdout)
    expect(status.runId).toBe(manifest.runId)
    expect(status.rows).toBe(300)
    expect(status.succeeded).toBe(300)
    expect(status.pending).toBe(0)
    expect(status.finished).toBe(true)
    expect(status.batches).toBe(ledger.batches.length)

    const asText = await runCli(["status", runDir()], { cwd: project.dir, env })
    expect(asText.code, describeResult(asText)).toBe(0)
    expect(asText.stdout).toContain(manifest.runId)
    expect(asText.stdout).toMatch(/300 succeeded/)
  })
})

describe("bad input and bad configuration", SLOW, () => {
  let emulator: TestEmulator
  let project: TempProject
  const env = () => emulatorEnv(emulator.url)
  const badLines = [
    JSON.stringify({ id: "a1", text: "good one" }),
    JSON.stringify({ id: "a2", text: "also good" }),
    '{"id": "a3", "text": oops not json',
    JSON.stringify({ id: "a4", text: "fine" }),
    JSON.stringify({ id: "a5", text: "great" })
  ]

  beforeAll(async () => {
    emulator = await startTestEmulator()
    project = await makeProject()
    await writeLines(project, "data/bad.jsonl", badLines)
  })

  afterAll(async () => {
    await emulator?.close()
    await project?.cleanup()
  })

  it("a malformed source line stops the run with exit 2, naming file and line, before anything is submitted", async () => {
    await writePipeline(project, "strict.pipeline.ts", { name: "strict", source: "data/bad.jsonl", sink: "out/strict.jsonl" })
    const batchesBefore = (await getLedger(emulator.url)).batches.length
    const uploadsBefore = emulator.calls("POST", "/v1/files")
    const createsBefore = emulator.calls("POST", "/v1/batches")

    const r = await runCli(["run", "strict.pipeline.ts", ...fastRunFlags(2)], { cwd: project.dir, env: env() })

    expect(r.code, describeResult(r)).toBe(2)
    expect(r.stderr).toContain("bad.jsonl:3")
    expectNoStackTrace(r)
    expect((await getLedger(emulator.url)).batches.length).toBe(batchesBefore)
    expect(emulator.calls("POST", "/v1/files")).toBe(uploadsBefore)
    expect(emulator.calls("POST", "/v1/batches")).toBe(createsBefore)
    const sink = project.path("out", "strict.jsonl")
    if (existsSync(sink)) expect(lineCount(await readFile(sink, "utf8"))).toBe(0)
  })

  it("a new run stopped by a malformed line leaves the sink file it found (an earlier run's output) as it was", async () => {
    await writePipeline(project, "again.pipeline.ts", { name: "again", source: "data/bad.jsonl", sink: "out/earlier.jsonl" })
    const earlier = '{"key":"x1","output":"from an earlier run"}\n'.repeat(4)
    await mkdir(project.path("out"), { recursive: true })
    await writeFile(project.path("out", "earlier.jsonl"), earlier)
    const r = await runCli(["run", "again.pipeline.ts", ...fastRunFlags(2)], { cwd: project.dir, env: env() })
    expect(r.code, describeResult(r)).toBe(2)
    expect(r.stderr).toContain("bad.jsonl:3")
    expect(await readFile(project.path("out", "earlier.jsonl"), "utf8")).toBe(earlier)
  })

  it('with onInvalid: "skip" the bad line is listed in failures.jsonl, the rest runs, and the exit code is 1', async () => {
    await writePipeline(project, "lenient.pipeline.ts", {
      name: "lenient",
      source: "data/bad.jsonl",
      sink: "out/lenient.jsonl",
      onInvalid: "skip"
    })
    const r = await runCli(["run", "lenient.pipeline.ts", ...fastRunFlags(2)], { cwd: project.dir, env: env() })

    expect(r.code, describeResult(r)).toBe(1)
    expectNoStackTrace(r)
    const failures = await readJsonl<{ location?: string; class?: string }>(project.path(".sluice", "runs", "lenient", "failures.jsonl"))
    expect(failures).toHaveLength(1)
    expect(failures[0]!.location).toMatch(/bad\.jsonl:3$/)

    const out = await readJsonl<SinkLine>(project.path("out", "lenient.jsonl"))
    expect(out.map((l) => l.key).sort()).toEqual(["a1", "a2", "a4", "a5"])
    expect(out.every((l) => sentiments.includes(l.output.sentiment))).toBe(true)
  })

  it("a file that does not export a pipeline: exit 2, one clear message", async () => {
    await writeText(project, "nothing.pipeline.ts", `export const answer = 42\n`)
    const r = await runCli(["run", "nothing.pipeline.ts", ...fastRunFlags(10)], { cwd: project.dir, env: env() })

    expect(r.code, describeResult(r)).toBe(2)
    expect(r.stderr).toContain("nothing.pipeline.ts")
    expect(r.stderr).toMatch(/does not export a pipeline/)
    expect(errorLines(r)).toHaveLength(1)
    expectNoStackTrace(r)
  })

  it("an unknown provider: exit 2, naming the provider, nothing submitted", async () => {
    await writeLines(project, "data/ok.jsonl", makeRows(3).map((row) => JSON.stringify(row)))
    await writePipeline(project, "unknown.pipeline.ts", { name: "unknown", source: "data/ok.jsonl", provider: "nope-provider" })
    const batchesBefore = (await getLedger(emulator.url)).batches.length

    const r = await runCli(["run", "unknown.pipeline.ts", ...fastRunFlags(10)], { cwd: project.dir, env: env() })

    expect(r.code, describeResult(r)).toBe(2)
    expect(r.stderr).toContain("nope-provider")
    expect(errorLines(r)).toHaveLength(1)
    expectNoStackTrace(r)
    expect((await getLedger(emulator.url)).batches.length).toBe(batchesBefore)
  })

  it("OPENAI_API_KEY unset: exit 2 with a clear message and no stack trace", async () => {
    await writeLines(project, "data/ok.jsonl", makeRows(3).map((row) => JSON.stringify(row)))
    await writePipeline(project, "nokey.pipeline.ts", { name: "nokey", source: "data/ok.jsonl" })

    const r = await runCli(["run", "nokey.pipeline.ts", ...fastRunFlags(10)], {
      cwd: project.dir,
      env: { OPENAI_BASE_URL: `${emulator.url}/v1`, OPENAI_API_KEY: undefined }
    })

    expect(r.code, describeResult(r)).toBe(2)
    expect(r.stderr).toContain("OPENAI_API_KEY is not set")
    expect(errorLines(r)).toHaveLength(1)
    expectNoStackTrace(r)
  })
})

describe("API keys never leak", SLOW, () => {
  let project: TempProject

  beforeAll(async () => {
    project = await makeProject()
    await writeRows(project, "data/rows.jsonl", 30)
    await writePipeline(project, "classify.pipeline.ts")
  })

  afterAll(async () => {
    await project?.cleanup()
  })

  it("a successful run writes its key nowhere: run directory, sink, stdout, stderr", async () => {
    const emulator = await startTestEmulator({ errorRate: 0.1 })
    try {
      const key = `sk-test-SECRET-${randomBytes(12).toString("hex")}`
      const env = emulatorEnv(emulator.url, key)
      const runDir = project.path("runs", "secret")
      const r = await runCli(["run", "classify.pipeline.ts", "--run-dir", runDir, ...fastRunFlags(10)], { cwd: project.dir, env })
      expect(r.code, describeResult(r)).toBe(0)
      expect(emulator.calls("POST", "/v1/batches")).toBeGreaterThan(0) // the key was really used

      const status = await runCli(["status", runDir, "--json"], { cwd: project.dir, env })
      expect(status.code, describeResult(status)).toBe(0)
      const resume = await runCli(["resume", runDir, "--poll-interval", "0.05"], { cwd: project.dir, env })
      expect(resume.code, describeResult(resume)).toBe(0)

      const written = (await listFilesRecursive(runDir)).map((f) => f.slice(runDir.length + 1))
      expect(written).toEqual(expect.arrayContaining(["manifest.json", "journal.jsonl", "results.jsonl"]))
      expect(await filesContaining(project.dir, key)).toEqual([]) // run dir, sink, shards, everything
      expect(existsSync(project.path("out", "labeled.jsonl"))).toBe(true)
      for (const out of [r, status, resume]) {
        expect(out.stdout).not.toContain(key)
        expect(out.stderr).not.toContain(key)
      }
    } finally {
      await emulator.close()
    }
  })

  it("a wrong key is rejected (non-zero exit) and appears nowhere", async () => {
    const emulator = await startTestEmulator({ apiKey: "right-key" })
    try {
      const key = `sk-test-WRONG-${randomBytes(12).toString("hex")}`
      const runDir = project.path("runs", "wrong-key")
      const r = await runCli(["run", "classify.pipeline.ts", "--run-dir", runDir, ...fastRunFlags(10)], {
        cwd: project.dir,
        env: emulatorEnv(emulator.url, key)
      })

      expect(r.code, describeResult(r)).not.toBe(0)
      expect(r.code, describeResult(r)).not.toBeNull()
      expect(r.stderr).toMatch(/401|unauthori[sz]ed|api key/i)
      expectNoStackTrace(r)
      expect(r.stdout).not.toContain(key)
      expect(r.stderr).not.toContain(key)
      expect(await filesContaining(project.dir, key)).toEqual([])
      expect((await getLedger(emulator.url, "right-key")).batches).toHaveLength(0)
      expect(emulator.log.some((l) => / -> 401 /.test(l))).toBe(true)
    } finally {
      await emulator.close()
    }
  })
})

describe("help and the emulator command", SLOW, () => {
  let project: TempProject

  beforeAll(async () => {
    project = await makeProject()
  })

  afterAll(async () => {
    await project?.cleanup()
  })

  const helpCases: ReadonlyArray<readonly [string, ReadonlyArray<string>, ReadonlyArray<string>]> = [
    ["sluice --help", ["--help"], ["run", "resume", "status", "emulator"]],
    ["sluice run --help", ["run", "--help"], ["--run-dir", "--concurrency", "--shard-size", "--poll-interval", "--detach", "--allow-changed", "--json"]],
    ["sluice status --help", ["status", "--help"], ["--json", "--no-refresh"]],
    [
      "sluice emulator --help",
      ["emulator", "--help"],
      ["--port", "--requests-per-second", "--validating-ms", "--finalizing-ms", "--expire-after-ms", "--error-rate", "--rate-limit-rate", "--state-dir", "--api-key"]
    ]
  ]

  for (const [name, args, mentions] of helpCases) {
    it(`${name} exits 0 and lists its options`, async () => {
      const r = await runCli(args, { cwd: project.dir, env: { OPENAI_API_KEY: undefined } })
      expect(r.code, describeResult(r)).toBe(0)
      const text = stripAnsi(r.stdout)
      for (const m of mentions) expect(text, `help of ${name} mentions ${m}`).toContain(m)
    })
  }

  it("`sluice emulator --port 0` prints its URL, answers GET /v1/batches there, its clock holds and moves on request, and --approximate-tokens counts ~4 characters a token", async () => {
    const child = spawnCli(["emulator", "--port", "0", "--validating-ms", "20", "--finalizing-ms", "20", "--approximate-tokens"], { cwd: project.dir })
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.on("exit", (code, signal) => resolve({ code, signal }))
    )
    let stdout = ""
    let stderr = ""
    child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d))
    try {
      const url = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no URL printed within 120 s; stdout: ${stdout}; stderr: ${stderr}`)), 120_000)
        child.stdout!.setEncoding("utf8").on("data", (d: string) => {
          stdout += d
          const m = /http:\/\/127\.0\.0\.1:(\d+)/.exec(stdout)
          if (m !== null) {
            clearTimeout(timer)
            resolve(m[0])
          }
        })
        void exited.then(({ code, signal }) => {
          clearTimeout(timer)
          reject(new Error(`the emulator exited early (code ${code}, signal ${signal}); stderr: ${stderr}`))
        })
      })
      expect(Number(new URL(url).port)).toBeGreaterThan(0)

      const response = await fetch(`${url}/v1/batches`, { headers: { authorization: "Bearer sk-test-any" } })
      expect(response.status).toBe(200)
      const body = (await response.json()) as { object: string; data: Array<unknown> }
      expect(body.object).toBe("list")
      expect(body.data).toEqual([])

      const messages = [{ role: "user", content: "hello world ".repeat(100) }]
      const answer = await fetch(`${url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "gpt-4o-mini", messages })
      })
      const usage = ((await answer.json()) as { usage: { prompt_tokens: number } }).usage
      expect(usage.prompt_tokens).toBe(Tokens.chat("", messages).tokens)
      expect(usage.prompt_tokens).not.toBe(Tokens.chat("gpt-4o-mini", messages).tokens)

      // A test drives the lifecycle of a batch through the control API: held, it stays validating.
      const held = await holdClock(url)
      expect(held.held).toBe(true)
      const form = new FormData()
      form.append("purpose", "batch")
      const line = { custom_id: "c-1", method: "POST", url: "/v1/chat/completions", body: { model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] } }
      form.append("file", new Blob([`${JSON.stringify(line)}\n`]), "input.jsonl")
      const file = (await (await fetch(`${url}/v1/files`, { method: "POST", body: form })).json()) as { id: string }
      const create = await fetch(`${url}/v1/batches`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h" })
      })
      const created = (await create.json()) as { id: string; status: string }
      expect(created.status).toBe("validating")
      const status = async () => ((await (await fetch(`${url}/v1/batches/${created.id}`)).json()) as { status: string }).status
      expect(await status()).toBe("validating")
      await advanceClock(url, 20)
      expect(await status()).toBe("in_progress")
      expect((await advanceClock(url, 21)).now).toBe(held.now + 41)
      expect(await status()).toBe("completed")
      expect((await releaseClock(url)).held).toBe(false)
    } finally {
      child.kill("SIGTERM")
      const timeout = setTimeout(() => child.kill("SIGKILL"), 30_000)
      const end = await exited
      clearTimeout(timeout)
      expect(end.signal === "SIGKILL", "the emulator did not stop on SIGTERM within 30 s").toBe(false)
    }
  })
})

describe("Ctrl-C", SLOW, () => {
  it("an interrupted run exits 130 saying how to continue with its real run directory, and `resume` finishes it", async () => {
    // The emulator's clock stands still until the resume: the batches are in flight at the interrupt.
    const slow = await startTestEmulator()
    await holdClock(slow.url)
    const project = await makeProject("sluice-sigint-")
    try {
      await writeRows(project, "data/rows.jsonl", 20)
      await writePipeline(project, "p.pipeline.ts", { name: "sigint" })
      const child = spawnCli(["run", "p.pipeline.ts", "--run-dir", "runs/s", ...fastRunFlags(10)], { cwd: project.dir, env: emulatorEnv(slow.url) })
      let stderr = ""
      child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d))
      const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
      // Interrupt once a batch is in flight.
      await waitFor("a batch in flight", () => (slow.calls("POST", "/v1/batches") > 0 ? true : undefined), { timeoutMs: 120_000 })
      child.kill("SIGINT")
      expect(await exited, stderr).toBe(130)
      expect(stderr).toContain(`sluice: interrupted; run \`sluice resume ${project.path("runs", "s")}\` to continue`)
      expect(stderr).not.toContain("<run-dir>")
      expectNoStackTrace({ code: 130, signal: null, stdout: "", stderr })

      await releaseClock(slow.url)
      const resumed = await runCli(["resume", "runs/s", "--poll-interval", "0.05"], { cwd: project.dir, env: emulatorEnv(slow.url) })
      expect(resumed.code, describeResult(resumed)).toBe(0)
      const sink = await readJsonl<SinkLine>(project.path("out/labeled.jsonl"))
      expect(new Set(sink.map((l) => l.key)).size).toBe(20)
      expect(sink.length).toBe(20)
    } finally {
      await slow.close()
      await project.cleanup()
    }
  })
})
