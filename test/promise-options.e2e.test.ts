/**
 * The Promise API's run options of production use, in process against the emulator: `budget`
 * (with `outputTokens` and `prices`), `maxEnqueuedTokens` by model, `cache` (where the
 * enqueued-token ledger lives), and `onFinish` / `notify` announcing the end, as the CLI does.
 */
import type { EmulatorHandle } from "@sluice/emulator"
import * as Api from "@sluice/runner/promise"
import { SluiceError } from "@sluice/runner/promise"
import { existsSync } from "node:fs"
import { readFile, writeFile } from "node:fs/promises"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { labelPipeline, makeReviews, promiseConnection, readJournal, startApiEmulator, tempDirs, writeReviews } from "./support/api.js"

const dirs = tempDirs()
afterAll(() => dirs.cleanup())

/** A local HTTP server that records what is POSTed to it. */
const receiver = async () => {
  const bodies: Array<string> = []
  const server = createServer((req, res) => {
    let body = ""
    req.on("data", (chunk) => void (body += String(chunk)))
    req.on("end", () => {
      bodies.push(body)
      res.writeHead(204).end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    bodies,
    close: () => new Promise<void>((resolve) => server.close(() => resolve()))
  }
}

const manifestSettings = async (runDir: string) =>
  (JSON.parse(await readFile(join(runDir, "manifest.json"), "utf8")) as { settings?: Record<string, unknown> }).settings

describe("Promise API: production options", () => {
  let emulator: EmulatorHandle
  let limited: EmulatorHandle
  // Ten rows of this pipeline are about 400 input tokens (the emulator counts them).
  const LIMIT = 900

  beforeAll(async () => {
    emulator = await startApiEmulator()
    limited = await startApiEmulator({ enqueuedTokenLimit: LIMIT })
  })
  afterAll(async () => {
    await emulator?.close()
    await limited?.close()
  })

  it("budget holds back what would pass it; onFinish and notify hear budget.reached with the summary", async () => {
    const dir = await dirs.make()
    const pipeline = labelPipeline({ name: "promise-budget", source: { file: await writeReviews(join(dir, "rows.jsonl"), makeReviews(20, "pb")) } })
    const runDir = join(dir, "run")
    const hook = await receiver()
    const heard = join(dir, "heard.json")
    // A price file of our own: gpt-4o-mini at $1,000 per million tokens, so a few cents pass any shard's budget.
    const prices = join(dir, "prices.json")
    const rate = { input: 1000, cachedInput: 500, output: 1000 }
    await writeFile(prices, JSON.stringify({ models: { "gpt-4o-mini": { realtime: rate, batch: rate, contextWindow: 128_000 } } }))
    try {
      const summary = await Api.run(pipeline, {
        runDir,
        ...promiseConnection(emulator),
        shardSize: 10,
        pollInterval: 0.05,
        budget: 0.01,
        outputTokens: 50,
        prices,
        cache: false,
        onFinish: `cat > '${heard}'`,
        notify: hook.url
      })
      expect(summary.finished).toBe(false)
      expect(summary.budget).toMatchObject({ limit: 0.01, heldShards: 2, heldRows: 20 })
      const told = JSON.parse(await readFile(heard, "utf8")) as { runId: string; budget: unknown }
      expect(told.runId).toBe(summary.runId)
      expect(told.budget).toEqual(summary.budget)
      expect(hook.bodies.map((b) => (JSON.parse(b) as { event: string }).event)).toEqual(["budget.reached"])
      expect((JSON.parse(hook.bodies[0]!) as { summary: { runId: string } }).summary.runId).toBe(summary.runId)
      // Nothing was submitted, and the budget is recorded for later calls.
      expect((await readJournal(runDir)).filter((e) => e._tag === "SubmitIntent")).toEqual([])
      expect(await manifestSettings(runDir)).toMatchObject({ budget: 0.01 })
    } finally {
      await hook.close()
    }
  })

  it("maxEnqueuedTokens by model cuts shards under the model's limit; the ledger lives in the cache directory given", async () => {
    const dir = await dirs.make()
    const pipeline = labelPipeline({ name: "promise-limit", source: { file: await writeReviews(join(dir, "rows.jsonl"), makeReviews(40, "pl")) } })
    const runDir = join(dir, "run")
    const cache = join(dir, "cache")
    const summary = await Api.run(pipeline, {
      runDir,
      ...promiseConnection(limited),
      pollInterval: 0.05,
      cache,
      // gpt-4o's limit is not this pipeline's model's; were it applied, every row would fail oversize.
      maxEnqueuedTokens: { "gpt-4o": 1, "gpt-4o-mini": LIMIT }
    })
    expect(summary).toMatchObject({ finished: true, succeeded: 40, failed: {} })
    const journal = await readJournal(runDir)
    const planned = journal.filter((e) => e._tag === "ShardPlanned")
    expect(planned.length).toBeGreaterThan(1)
    for (const e of planned) expect(e["inputTokens"] as number).toBeLessThanOrEqual(LIMIT)
    expect(journal.filter((e) => e._tag === "TokenLimitReached")).toEqual([])
    const seen = (await (await fetch(`${limited.url}/_emulator/enqueued`)).json()) as { maxSeen: Record<string, number> }
    expect(seen.maxSeen["gpt-4o-mini"]!).toBeLessThanOrEqual(LIMIT)
    expect(existsSync(join(cache, "enqueued-tokens.json"))).toBe(true)
    expect(await manifestSettings(runDir)).toMatchObject({ maxEnqueuedTokens: { "gpt-4o": 1, "gpt-4o-mini": LIMIT } })
  })

  it("a notify that is not an http(s) URL, or a limit out of range, rejects before the run directory is made", async () => {
    const dir = await dirs.make()
    const pipeline = labelPipeline({ name: "promise-bad", source: { rows: makeReviews(2, "px") } })
    const runDir = join(dir, "run")
    const bad = await Api.run(pipeline, { runDir, ...promiseConnection(emulator), notify: "ftp://example.com/x" }).catch((e: unknown) => e)
    expect(bad).toBeInstanceOf(SluiceError)
    expect((bad as SluiceError).message).toContain("notify takes an http(s) URL")
    const zero = await Api.run(pipeline, { runDir, ...promiseConnection(emulator), maxEnqueuedTokens: { "gpt-4o-mini": 0 } }).catch((e: unknown) => e)
    expect(zero).toBeInstanceOf(SluiceError)
    expect((zero as SluiceError).tag).toBe("InvalidSettings")
    expect((zero as SluiceError).message).toContain(`maxEnqueuedTokens["gpt-4o-mini"] must be an integer from 1 to 1000000000000, got 0`)
    expect(existsSync(runDir)).toBe(false)
  })
})
