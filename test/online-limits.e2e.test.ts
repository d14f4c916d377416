/**
 * Online runs against servers that push back, end to end (the real CLI, the emulator's
 * real-time endpoints on 127.0.0.1, judged by the emulator's ledger of real-time calls):
 * a server without rate-limit headers that answers some calls 429 or 5xx and refuses some
 * requests for good, and a provider limited to R requests per minute.
 */
import type { LedgerCall } from "@sluice/emulator/control"
import { getLedger, holdClock, releaseClock, setFaults } from "@sluice/emulator/control"
import { afterEach, describe, expect, it } from "vitest"
import { describeResult, makeProject, makeRows, spawnCli, startTestEmulator, writeText } from "./support/cli.js"
import type { TempProject, TestEmulator } from "./support/cli.js"
import { readFailures, readSink, waitFor } from "./support/runs.js"

// Set by each test; closed after it.
let emulator: TestEmulator
let project: TempProject

afterEach(async () => {
  await emulator?.close()
  await project?.cleanup()
})

/** A pipeline whose rows may carry an image URL; the sink is out/labeled.jsonl. */
const pipeline = `import { Pipeline, Prompt, Sink, Source } from "@sluice/core"
import { Schema } from "effect"

const Review = Schema.Struct({ id: Schema.String, text: Schema.String, image: Schema.optional(Schema.String) })
const Label = Schema.Struct({ sentiment: Schema.Literal("positive", "negative", "neutral"), topics: Schema.Array(Schema.String) })

export default Pipeline.make("online-limits").pipe(
  Pipeline.from(Source.jsonl("data/rows.jsonl", Review), { key: (r) => r.id }),
  Pipeline.batch("label", {
    provider: "openai",
    model: "gpt-4o-mini",
    mode: "online",
    prompt: (r) => Prompt.chat({ system: "You label product reviews.", user: r.text, images: r.image === undefined ? [] : [Prompt.imageUrl(r.image)] }),
    output: Label
  }),
  Pipeline.to(Sink.jsonl("out/labeled.jsonl"))
)
`

const openaiEnv = (url: string) => ({ OPENAI_BASE_URL: `${url}/v1`, OPENAI_API_KEY: "sk-test-fake-key" })

/** The ledger's real-time calls, grouped by custom_id in order of arrival. */
const callsById = (calls: ReadonlyArray<LedgerCall>): Map<string, Array<LedgerCall>> => {
  const byId = new Map<string, Array<LedgerCall>>()
  for (const call of calls) {
    expect(call.custom_id, `call ${call.seq} names no row`).not.toBeNull()
    byId.set(call.custom_id!, [...(byId.get(call.custom_id!) ?? []), call])
  }
  return byId
}

/**
 * The emulator's clock stands still, and another client of the same organisation uses `n`
 * requests of the model's minute (limits are per model, not per client; its calls are named
 * other-…): however long the CLI takes to start, it meets the bucket as the other client left it.
 */
const drainAndHold = async (url: string, n: number) => {
  await holdClock(url)
  const statuses = await Promise.all(
    Array.from({ length: n }, (_, i) =>
      fetch(`${url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: "Bearer sk-test-fake-key", "x-sluice-custom-id": `other-${i}` },
        body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: `another client's request ${i}` }] })
      }).then((r) => r.status)
    )
  )
  expect(statuses.every((s) => s === 200)).toBe(true)
}

/** The run's calls: the ledger's, without the other client's. */
const runCalls = async (url: string): Promise<Array<LedgerCall>> => (await getLedger(url)).calls.filter((c) => !c.custom_id!.startsWith("other-"))

/**
 * `sluice run …args` in the project; once the emulator's ledger shows a call `until` accepts,
 * the emulator's clock runs again. Resolves with the finished run.
 */
const runReleasingClockAt = async (args: ReadonlyArray<string>, until: (call: LedgerCall) => boolean) => {
  const child = spawnCli(args, { cwd: project.dir, env: openaiEnv(emulator.url) })
  let stdout = ""
  let stderr = ""
  child.stdout!.setEncoding("utf8").on("data", (d: string) => (stdout += d))
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d))
  let done = false
  const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code))).finally(() => (done = true))
  try {
    await waitFor("the call that releases the clock", async () => (done || (await runCalls(emulator.url)).some(until) ? true : undefined), { timeoutMs: 120_000 })
  } finally {
    await releaseClock(emulator.url)
  }
  const code = await exited
  return { code, signal: null, stdout, stderr }
}

describe("online against a server that pushes back", { timeout: 180_000 }, () => {
  it("no rate-limit headers, 429s, 5xx and some permanent 4xx: the run completes, only retryable failures retried, every row accounted for", async () => {
    // A server like vLLM: no x-ratelimit-* headers on any answer, and no Retry-After on the
    // 429s of its limit (600 requests a minute, most of the minute used by another client).
    // On top, every few calls is a 429 (with Retry-After) or a 500/502/503: the emulator's
    // deterministic fault sequence, none of which took effect.
    emulator = await startTestEmulator({ rateLimitHeaders: false, rpmLimit: 600 })
    project = await makeProject("sluice-online-faults-")
    // Every third row names an image by an ftp:// URL: sluice sends it (an absolute URL), the
    // endpoint refuses the request for good (400 invalid_image_url), as OpenAI does.
    const rows = makeRows(30).map((r, i) => (i % 3 === 2 ? { ...r, image: `ftp://images.example/${r.id}.png` } : r))
    const refused = new Set(rows.filter((r) => "image" in r).map((r) => r.id))
    await writeText(project, "data/rows.jsonl", rows.map((r) => JSON.stringify(r)).join("\n") + "\n")
    await writeText(project, "pipeline.ts", pipeline)
    await drainAndHold(emulator.url, 600)
    await setFaults(emulator.url, { rateLimitRate: 0.15, serverErrorRate: 0.1, retryAfterMs: 100 })

    // The clock runs again once the limit has refused a request (a 429 that no fault made).
    // The first round's 8 refusals are one round: one short backoff, not one per refusal.
    const result = await runReleasingClockAt(
      ["run", "pipeline.ts", "--run-dir", "runs/faults", "--shard-size", "10", "--concurrency", "4", "--json"],
      (c) => c.status === 429 && c.fault === null
    )
    // Finished, with failed rows: exit code 1 (the README's exit codes).
    expect(result.code, describeResult(result)).toBe(1)
    const summary = JSON.parse(result.stdout) as { finished: boolean; pending: number; succeeded: number; failed: Record<string, number>; batches: number }
    expect(summary).toMatchObject({ finished: true, pending: 0, succeeded: 20, failed: { permanent: 10 }, batches: 0 })

    // Every row accounted for: in the sink or in failures.jsonl, never both, never twice.
    const sink = await readSink(project.path("out", "labeled.jsonl"))
    const failures = await readFailures(project.path("runs", "faults"))
    const sunk = sink.map((l) => l.key)
    const failed = failures.map((f) => f.key!)
    expect(new Set(sunk).size).toBe(sunk.length)
    expect(new Set(failed).size).toBe(failed.length)
    expect([...sunk, ...failed].sort()).toEqual(rows.map((r) => r.id).sort())
    expect(new Set(failed)).toEqual(refused)
    for (const f of failures) expect(f, f.key!).toMatchObject({ class: "permanent", code: "invalid_image_url" })

    const byId = callsById(await runCalls(emulator.url))
    const failedIds = new Set(failures.map((f) => f.custom_id!))
    expect(byId.size).toBe(rows.length)
    let retried = 0
    for (const [id, calls] of byId) {
      // Everything before a row's last call was a retryable failure that did not take effect
      // (a fault, or the limit's 429): nothing that retrying could not help was retried.
      for (const c of calls.slice(0, -1)) {
        expect([429, 500, 502, 503], `${id}: call ${c.seq}`).toContain(c.status)
        expect(c.fault !== null || c.status === 429, `${id}: call ${c.seq}`).toBe(true)
      }
      retried += calls.length - 1
      // The last call: the answer, or for a refused row the one 400, sent once and never again.
      const last = calls[calls.length - 1]!
      expect([last.status, last.fault], id).toEqual([failedIds.has(id) ? 400 : 200, null])
    }
    // The faults and the limit were met (the test would prove nothing otherwise).
    const all = [...byId.values()].flat()
    expect(all.some((c) => c.status === 429 && c.fault !== null)).toBe(true)
    expect(all.some((c) => c.status === 429 && c.fault === null)).toBe(true)
    expect(all.some((c) => c.status >= 500)).toBe(true)
    expect(retried).toBeGreaterThan(0)
  })

  it("a provider limited to R requests a minute: after its first 429 the run stays at or under R in every minute, by the ledger", async () => {
    const R = 30
    const ROWS = 12
    emulator = await startTestEmulator({ rpmLimit: R })
    project = await makeProject("sluice-online-rpm-")
    await writeText(project, "data/rows.jsonl", makeRows(ROWS).map((r) => JSON.stringify(r)).join("\n") + "\n")
    await writeText(project, "pipeline.ts", pipeline)

    // The minute's requests are all used when the run starts; the clock runs again once the
    // run has met its first 429. Its first round (12 requests, nothing known yet) is refused
    // whole; from the refusals' headers (limit 30, none left) on, it sends at the bucket's
    // refill, one request every 2 s: 12 refusals + 12 answers, in ~25 s.
    await drainAndHold(emulator.url, R)
    const result = await runReleasingClockAt(["run", "pipeline.ts", "--run-dir", "runs/rpm", "--shard-size", "6", "--concurrency", "12", "--json"], (c) => c.status === 429)
    expect(result.code, describeResult(result)).toBe(0)
    const keys = (await readSink(project.path("out", "labeled.jsonl"))).map((l) => l.key)
    expect([keys.length, new Set(keys).size]).toEqual([ROWS, ROWS])

    // The measure: the run's calls (any status, 429s included) by the time the emulator
    // received them, on the clock its limits judge by. Sound because the emulator's limit is
    // a token bucket on that clock and every call is in the ledger: for each call from the
    // first 429 on, the calls received in the minute that starts with it are counted; the
    // largest such count is the busiest minute after the first 429 (a window holding the most
    // calls can always be moved to start at one). The rows are sized so that this can fail:
    // a run that ignored the rate-limit headers (resending refused requests as the
    // Retry-After and its backoff allow, its window halved per round of 429s) puts 38 calls
    // in the minute after the first 429 — seen with the limiter's reading of the headers
    // turned off — against the 24 of this one. The clock was held only before that minute,
    // while the run sent its first requests; a held clock stamps calls with one instant,
    // which only puts more of them in one window (it cannot hide any).
    const calls = await runCalls(emulator.url)
    const first429 = calls.find((c) => c.status === 429)!
    const busiest = Math.max(
      ...calls.filter((c) => c.received_at >= first429.received_at).map((c) => calls.filter((d) => d.received_at >= c.received_at && d.received_at < c.received_at + 60_000).length)
    )
    expect(busiest, `busiest minute after the first 429: ${busiest} calls; ${calls.length} calls in all, the last ${calls[calls.length - 1]!.received_at - first429.received_at} ms after the first 429`).toBeLessThanOrEqual(R)
    // Every row answered; the refused calls were throttles, and the limit was really met.
    expect(calls.filter((c) => c.status === 200).length).toBe(ROWS)
    expect(calls.every((c) => c.status === 200 || c.status === 429)).toBe(true)
  })
})
