/**
 * Crash safety, end to end: the real CLI in a child process is killed with SIGKILL at exact
 * points spread over every phase (SLUICE_FAILPOINT), and at arbitrary moments, then
 * resumed. Whatever the point: the sink holds every input row exactly once, no custom_id is
 * delivered as a success by two batches, and no shard gets two batches.
 */
import { spawn } from "node:child_process"
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startEmulator } from "../packages/emulator/src/Emulator.js"
import type { EmulatorHandle } from "../packages/emulator/src/Emulator.js"
import { getLedger } from "./support/cli.js"
import { batchesOfRun, expectPaidOnce } from "./support/runs.js"

const repo = join(dirname(fileURLToPath(import.meta.url)), "..")
const bin = join(repo, "packages/runner/bin/sluice.js")
const ROWS = 60

let emulator: EmulatorHandle
let project: string

const pipelineSource = `
import { Pipeline, Prompt, Sink, Source } from "@sluice/core"
import { Schema } from "effect"
const Row = Schema.Struct({ id: Schema.String, text: Schema.String })
const Label = Schema.Struct({ sentiment: Schema.Literal("positive", "negative", "neutral"), topics: Schema.Array(Schema.String) })
export default Pipeline.make("crash").pipe(
  Pipeline.from(Source.jsonl("rows.jsonl", Row), { key: (r) => r.id }),
  Pipeline.batch("label", {
    provider: "openai", model: "gpt-4o-mini", maxAttempts: 5,
    prompt: (r) => Prompt.chat({ system: "Label the text. " + (process.env.PROMPT_SALT ?? ""), user: r.text }),
    output: Label
  }),
  Pipeline.to(Sink.jsonl(process.env.SINK_PATH ?? "out.jsonl"))
)
`

beforeAll(async () => {
  emulator = await startEmulator({ validatingMs: 60, requestsPerSecond: 150, finalizingMs: 60, errorRate: 0.08 })
  project = mkdtempSync(join(tmpdir(), "sluice-crash-"))
  writeFileSync(join(project, "package.json"), JSON.stringify({ type: "module" }))
  symlinkSync(join(repo, "node_modules"), join(project, "node_modules"), "dir")
  writeFileSync(join(project, "crash.pipeline.ts"), pipelineSource)
  writeFileSync(join(project, "anthropic.pipeline.ts"), pipelineSource.replace('provider: "openai", model: "gpt-4o-mini"', 'provider: "anthropic", model: "claude-haiku-4-5"'))
  writeFileSync(join(project, "gemini.pipeline.ts"), pipelineSource.replace('provider: "openai", model: "gpt-4o-mini"', 'provider: "gemini", model: "gemini-2.5-flash"'))
  const rows = Array.from({ length: ROWS }, (_, i) => JSON.stringify({ id: `row-${i + 1}`, text: `Review number ${i + 1}: ${"quite good ".repeat(i % 7)}` }))
  writeFileSync(join(project, "rows.jsonl"), rows.join("\n") + "\n")
})

afterAll(async () => {
  await emulator?.close()
})

interface Outcome {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stderr: string
}

const sluice = (args: ReadonlyArray<string>, env: Record<string, string>, killAfterMs?: number): Promise<Outcome> =>
  new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], {
      cwd: project,
      env: {
        ...process.env,
        OPENAI_BASE_URL: `${emulator.url}/v1`,
        OPENAI_API_KEY: "crash-test-key",
        ANTHROPIC_BASE_URL: emulator.url,
        ANTHROPIC_API_KEY: "crash-test-key",
        GEMINI_BASE_URL: emulator.url,
        GEMINI_API_KEY: "crash-test-key",
        ...env
      },
      stdio: ["ignore", "ignore", "pipe"]
    })
    let stderr = ""
    child.stderr.on("data", (d) => (stderr += d))
    const timer = killAfterMs === undefined ? undefined : setTimeout(() => child.kill("SIGKILL"), killAfterMs)
    child.on("exit", (code, signal) => {
      if (timer !== undefined) clearTimeout(timer)
      resolve({ code, signal, stderr })
    })
  })

const runArgs = (runDir: string, file = "crash.pipeline.ts") => ["run", file, "--run-dir", runDir, "--shard-size", "15", "--poll-interval", "0.05"]

/** Checks the guarantees for one run directory; returns the number of batches it made. */
const checkRun = async (runDir: string, sink: string) => {
  const lines = readFileSync(join(project, sink), "utf8").trim().split("\n")
  const ids = lines.map((l) => (JSON.parse(l) as { input: { id: string } }).input.id)
  expect(ids.length).toBe(ROWS)
  expect(new Set(ids).size).toBe(ROWS)

  const runId = (JSON.parse(readFileSync(join(project, runDir, "manifest.json"), "utf8")) as { runId: string }).runId
  const ledger = await getLedger(emulator.url)
  const batches = batchesOfRun(ledger, runId)
  const delivered = expectPaidOnce(ledger, runId)
  expect(delivered.length).toBe(ROWS)
  return batches.length
}

// Every phase: planning, the steps of submission (intent, upload, create, journaled
// creation), polling, collection (mid-sink, before and after its commit), and the same for
// retry shards. Each process costs a CPU second or two, so one run serves up to three points:
// the first kills a fresh run, each later one kills the resume of the state the one before left
// (a crash during recovery), and a last resume must finish with every guarantee. A later point
// is one that resume certainly passes again: planning points and the retry shards' points
// (reached only in a run that plans) come first — nothing is submitted before planning ends,
// so their resume submits all four shards — and a point's count is never more than the shards
// the state before it leaves to pass that point (a kill at the first upload leaves four to
// collect; one at the fourth creation leaves that batch to end).
const chains: ReadonlyArray<ReadonlyArray<string>> = [
  ["plan-row:3", "after:SubmitIntent:1", "after:Collected:3"],
  ["plan-row:20", "after-upload:1", "collect-before-commit:3"],
  ["after:ShardPlanned:1", "after:Created:4", "after:Terminal:1"],
  ["after:ShardPlanned:3", "after:SubmitIntent:3", "after:StatusChanged:2"],
  ["after:PlanComplete:1", "after-upload:2", "collect-before-commit:1"],
  ["after:Staged:1", "after-create:3"],
  ["after:ShardPlanned:5", "after-create:1", "after:Collected:1"],
  ["after-create:5", "after:Created:1"]
]

/** Each test spawns the CLI up to four times (each start loads the CLI and tsx: seconds on a busy machine). */
const SLOW = { timeout: 300_000 }

/** Runs the CLI once per point in `points`, each killed there: the first a fresh run, each later one its resume. */
const killAtEach = async (points: ReadonlyArray<string>, args: ReadonlyArray<string>, env: Record<string, string>) => {
  for (const [i, point] of points.entries()) {
    const crashed = await sluice(args, { ...env, SLUICE_FAILPOINT: point })
    const which = i === 0 ? "the run" : `the resume after ${points[i - 1]}`
    expect(crashed.signal, `${which} was not killed at ${point}: exit ${crashed.code}\n${crashed.stderr}`).toBe("SIGKILL")
  }
}

describe("crash and resume", SLOW, () => {
  it.each(chains.map((points) => [points.join(" → "), points] as const))(
    "SIGKILL at %s, then resume: every row once, nothing paid twice",
    async (_name, points) => {
      const slug = points.map((p) => p.replace(/[^a-z0-9]+/gi, "-")).join("--")
      const runDir = `runs/${slug}`
      const sink = `out/${slug}.jsonl`
      mkdirSync(join(project, "out"), { recursive: true })
      // A fresh prompt per test: the emulator fails a request only the first time it sees it,
      // and retry shards must happen for the retry-phase failpoints to be reached.
      const env = { SINK_PATH: sink, PROMPT_SALT: slug }
      await killAtEach(points, runArgs(runDir), env)
      const resumed = await sluice(runArgs(runDir), env)
      expect(resumed.code, resumed.stderr).toBe(0)
      await checkRun(runDir, sink)
    }
  )

  it("survives repeated kills at arbitrary moments", async () => {
    const runDir = "runs/random"
    const sink = "out/random.jsonl"
    let kills = 0
    for (const delay of [700, 1100, 1500, 1900, 2300]) {
      const outcome = await sluice(runArgs(runDir), { SINK_PATH: sink, PROMPT_SALT: "random" }, delay)
      if (outcome.signal === "SIGKILL") kills++
      else expect(outcome.code, outcome.stderr).toBe(0)
    }
    const last = await sluice(runArgs(runDir), { SINK_PATH: sink, PROMPT_SALT: "random" })
    expect(last.code, last.stderr).toBe(0)
    expect(kills).toBeGreaterThan(0)
    await checkRun(runDir, sink)
  }, 240_000)

  // Anthropic batches carry no metadata: the orphan is found by creation time and request
  // count, and proven by its results' custom_ids once it has ended.
  // Gemini carries run, shard and submission in the batch's displayName.
  // As above, a later point kills the resume of the state the one before left: after the
  // second intent no shard but the first can have a batch, so the resume creates three.
  it.each(
    ([
      ["anthropic", ["after-create:1"]],
      ["anthropic", ["after:SubmitIntent:2", "after-create:3"]],
      // Not after-create:1 then after-create:2: the kill at the first create may leave the
      // other shards' creates made but unjournaled, all adopted by the resume, none created.
      ["gemini", ["after-create:1"]],
      ["gemini", ["after-create:2"]]
    ] as const).map(([provider, points]) => [provider, points.join(" → "), points] as const)
  )(
    "%s: SIGKILL at %s, then resume adopts the orphan; nothing paid twice",
    async (provider, _name, points) => {
      const slug = `${provider}-${points.map((p) => p.replace(/[^a-z0-9]+/gi, "-")).join("--")}`
      const runDir = `runs/${slug}`
      const sink = `out/${slug}.jsonl`
      const env = { SINK_PATH: sink, PROMPT_SALT: slug }
      const file = `${provider}.pipeline.ts`
      await killAtEach(points, runArgs(runDir, file), env)
      const resumed = await sluice(runArgs(runDir, file), env)
      expect(resumed.code, resumed.stderr).toBe(0)
      const lines = readFileSync(join(project, sink), "utf8").trim().split("\n")
      expect(new Set(lines.map((l) => (JSON.parse(l) as { input: { id: string } }).input.id)).size).toBe(ROWS)
      expect(lines.length).toBe(ROWS)
      const journal = readFileSync(join(project, runDir, "journal.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l))
      const created = journal.filter((e) => e._tag === "Created")
      if (points.some((p) => p.startsWith("after-create"))) expect(created.some((e) => e.adopted === true)).toBe(true)
      // Every batch the emulator created for this run is one the journal knows: no orphan was
      // left paid for and unused.
      // Gemini names batches "batches/<id>"; the emulator's ledger uses the bare id.
      const known = new Set(created.map((e) => String(e.batchId).replace(/^batches\//, "")))
      const ledger = await getLedger(emulator.url)
      const shardFiles = readdirSync(join(project, runDir, "shards")).filter((f) => !f.endsWith(".rows.jsonl") && !f.endsWith(".cached.jsonl"))
      const customIds = new Set(
        shardFiles.flatMap((f) =>
          readFileSync(join(project, runDir, "shards", f), "utf8").trim().split("\n").map((l) => { const line = JSON.parse(l); return (line.custom_id ?? line.key) as string })
        )
      )
      const ours = ledger.batches.filter((b) => b.custom_ids.some((id) => customIds.has(id)))
      expect(ours.length).toBeGreaterThan(0)
      for (const b of ours) expect(known.has(b.id), `batch ${b.id} was created but never adopted`).toBe(true)
    }
  )

  it("resume also works through `sluice resume <run-dir>`", async () => {
    const runDir = "runs/resume-cmd"
    const sink = "out/resume-cmd.jsonl"
    const env = { SINK_PATH: sink, PROMPT_SALT: "resume-cmd" }
    const crashed = await sluice(runArgs(runDir), { ...env, SLUICE_FAILPOINT: "after:Created:2" })
    expect(crashed.signal).toBe("SIGKILL")
    const resumed = await sluice(["resume", runDir, "--poll-interval", "0.05"], env)
    expect(resumed.code, resumed.stderr).toBe(0)
    await checkRun(runDir, sink)
  })
})
