/**
 * Every provider call a run makes, counted by the emulator per route (`GET /_emulator/requests`):
 * a fresh run makes only the calls the protocol needs per shard — one upload (where the provider
 * takes files), one create, its polls, one download per result file — and never lists files or
 * batches. The search for an upload or batch left by a crash (a listing) happens on resume only,
 * for a shard whose intent an earlier process recorded.
 */
import { startEmulator } from "@sluice/emulator"
import type { EmulatorHandle } from "@sluice/emulator"
import { getRequestCounts, resetEmulator } from "@sluice/emulator/control"
import type { RequestCounts } from "@sluice/emulator/control"
import { readFileSync } from "node:fs"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { describeResult, emulatorEnv, fastEmulator, getLedger, makeProject, runCli, type TempProject, writePipeline, writeRows } from "./support/cli.js"
import { batchesOfRun } from "./support/runs.js"

const SHARDS = 3
const ROWS_PER_SHARD = 10

let emulator: EmulatorHandle
let project: TempProject

beforeAll(async () => {
  emulator = await startEmulator({ ...fastEmulator, errorRate: 0 })
  project = await makeProject("sluice-calls-")
  await writeRows(project, "data/rows.jsonl", SHARDS * ROWS_PER_SHARD)
})

afterAll(async () => {
  await emulator?.close()
  await project?.cleanup()
})

const env = () => ({
  ...emulatorEnv(emulator.url),
  ANTHROPIC_BASE_URL: emulator.url,
  ANTHROPIC_API_KEY: "sk-ant-test",
  GEMINI_BASE_URL: emulator.url,
  GEMINI_API_KEY: "gemini-test"
})

const runId = (runDir: string): string => (JSON.parse(readFileSync(project.path(runDir, "manifest.json"), "utf8")) as { runId: string }).runId

/** The counts of the routes that match `pattern`, summed. */
const count = (counts: RequestCounts, pattern: RegExp): number =>
  Object.entries(counts).reduce((n, [route, c]) => (pattern.test(route) ? n + c : n), 0)

/** The output and error files the batches of a run ended with (asked of the emulator after counting). */
const resultFiles = async (ids: ReadonlyArray<string>): Promise<number> => {
  let files = 0
  for (const id of ids) {
    const batch = (await (await fetch(`${emulator.url}/v1/batches/${id}`, { headers: { authorization: "Bearer k" } })).json()) as {
      output_file_id: string | null
      error_file_id: string | null
    }
    files += [batch.output_file_id, batch.error_file_id].filter((f) => f !== null && f !== "").length
  }
  return files
}

describe("provider calls per shard", { timeout: 180_000 }, () => {
  it("OpenAI: one upload, one create, its polls, one download per result file; no listing", async () => {
    await resetEmulator(emulator.url)
    await writePipeline(project, "openai.pipeline.ts", { name: "calls-openai", sink: "out/openai.jsonl" })
    const result = await runCli(["run", "openai.pipeline.ts", "--run-dir", "runs/openai", "--shard-size", String(ROWS_PER_SHARD), "--poll-interval", "0.05"], {
      cwd: project.dir,
      env: env()
    })
    expect(result.code, describeResult(result)).toBe(0)
    const counts = await getRequestCounts(emulator.url)
    const batches = batchesOfRun(await getLedger(emulator.url), runId("runs/openai"))
    expect(batches.length).toBe(SHARDS)
    expect(counts["POST /v1/files"]).toBe(SHARDS)
    expect(counts["POST /v1/batches"]).toBe(SHARDS)
    expect(counts["GET /v1/batches/{id}"]).toBeGreaterThanOrEqual(SHARDS)
    // Downloads: exactly the result files the batches have (output, and error where there is one).
    const downloads = await resultFiles(batches.map((b) => b.id))
    expect(counts["GET /v1/files/{id}/content"]).toBe(downloads)
    // Once committed, each shard's input and result files are deleted at the provider, with
    // the file ids its poll saw (no second retrieve of the batch).
    expect(counts["DELETE /v1/files/{id}"]).toBe(SHARDS + downloads)
    expect(counts["GET /v1/files"]).toBeUndefined()
    expect(counts["GET /v1/batches"]).toBeUndefined()
    // Nothing else was asked.
    expect(Object.keys(counts).sort()).toEqual(["DELETE /v1/files/{id}", "GET /v1/batches/{id}", "GET /v1/files/{id}/content", "POST /v1/batches", "POST /v1/files"])
  })

  it.each([
    ["anthropic", "claude-haiku-4-5", /^POST \/v1\/messages\/batches$/, /^GET \/v1\/messages\/batches\/\{id\}$/, /^GET \/v1\/messages\/batches\/\{id\}\/results$/],
    ["gemini", "gemini-2.5-flash", /^POST \/v1beta\/models\/\{id\}:batchGenerateContent$/, /^GET \/v1beta\/batches\/\{id\}$/, null]
  ] as const)("%s: one create with the requests inline, its polls, the results; no listing", async (provider, model, create, poll, results) => {
    await resetEmulator(emulator.url)
    await writePipeline(project, `${provider}.pipeline.ts`, { name: `calls-${provider}`, sink: `out/${provider}.jsonl`, provider, model })
    const runDir = `runs/${provider}`
    const result = await runCli(["run", `${provider}.pipeline.ts`, "--run-dir", runDir, "--shard-size", String(ROWS_PER_SHARD), "--poll-interval", "0.05"], {
      cwd: project.dir,
      env: env()
    })
    expect(result.code, describeResult(result)).toBe(0)
    const counts = await getRequestCounts(emulator.url)
    const polls = count(counts, poll)
    expect(count(counts, create)).toBe(SHARDS)
    expect(polls).toBeGreaterThanOrEqual(SHARDS)
    // Gemini answers small batches inline in the batch itself: no download.
    if (results !== null) expect(count(counts, results)).toBe(SHARDS)
    // No upload (the requests go inline), no listing of batches or files.
    expect(count(counts, /^GET .*\/(batches|files)$/)).toBe(0)
    expect(count(counts, /files/)).toBe(0)
    expect(Object.values(counts).reduce((a, b) => a + b, 0)).toBe(SHARDS + polls + (results === null ? 0 : SHARDS))
  })

  it("a crash after an upload: the resume lists the files once to reuse it, and nothing is uploaded twice", async () => {
    await resetEmulator(emulator.url)
    await writePipeline(project, "crash.pipeline.ts", { name: "calls-crash", sink: "out/crash.jsonl" })
    const args = ["run", "crash.pipeline.ts", "--run-dir", "runs/crash", "--shard-size", String(ROWS_PER_SHARD), "--poll-interval", "0.05", "--concurrency", "1"]
    const crashed = await runCli(args, { cwd: project.dir, env: { ...env(), SLUICE_FAILPOINT: "after-upload:1" } })
    expect(crashed.signal, describeResult(crashed)).toBe("SIGKILL")
    const before = await getRequestCounts(emulator.url)
    // Killed after its first upload, before journaling it: no listing yet, one upload, no batch.
    expect(before).toEqual({ "POST /v1/files": 1 })

    const resumed = await runCli(args, { cwd: project.dir, env: env() })
    expect(resumed.code, describeResult(resumed)).toBe(0)
    const counts = await getRequestCounts(emulator.url)
    // The resumed shard looked for a batch (none) and for its upload (found): one listing each.
    expect(counts["GET /v1/batches"]).toBe(1)
    expect(counts["GET /v1/files"]).toBe(1)
    // The upload made before the crash was reused: one per shard in all, one batch per shard.
    expect(counts["POST /v1/files"]).toBe(SHARDS)
    expect(counts["POST /v1/batches"]).toBe(SHARDS)
    expect(batchesOfRun(await getLedger(emulator.url), runId("runs/crash")).length).toBe(SHARDS)
    expect(readFileSync(project.path("out/crash.jsonl"), "utf8").trim().split("\n").length).toBe(SHARDS * ROWS_PER_SHARD)
  })
})
