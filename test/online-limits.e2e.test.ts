/**
 * Online runs against servers that push back, end to end (the real CLI, the emulator's
 * real-time endpoints on 127.0.0.1, judged by the emulator's ledger of real-time calls):
 * a server without rate-limit headers that answers some calls 429 or 5xx and refuses some
 * requests for good, and a provider limited to R requests per minute.
 */
import type { LedgerCall } from "@sluice/emulator/control"
import { getLedger, holdClock, releaseClock } from "@sluice/emulator/control"
import { afterEach, describe, expect, it } from "vitest"
import { describeResult, makeProject, makeRows, runCli, spawnCli, startTestEmulator, writeText } from "./support/cli.js"
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

describe("online against a server that pushes back", { timeout: 180_000 }, () => {
  it("no rate-limit headers, 429s, 5xx and some permanent 4xx: the run completes, only retryable failures retried, every row accounted for", async () => {
    // A server like vLLM: no x-ratelimit-* headers on any answer. Every few calls is a 429
    // or a 500/502/503 (the emulator's deterministic fault sequence), none of which took effect.
    emulator = await startTestEmulator({ rateLimitHeaders: false, rateLimitRate: 0.15, serverErrorRate: 0.1, retryAfterMs: 100 })
    project = await makeProject("sluice-online-faults-")
    // Every third row names an image by an ftp:// URL: sluice sends it (an absolute URL), the
    // endpoint refuses the request for good (400 invalid_image_url), as OpenAI does.
    const rows = makeRows(30).map((r, i) => (i % 3 === 2 ? { ...r, image: `ftp://images.example/${r.id}.png` } : r))
    const refused = new Set(rows.filter((r) => "image" in r).map((r) => r.id))
    await writeText(project, "data/rows.jsonl", rows.map((r) => JSON.stringify(r)).join("\n") + "\n")
    await writeText(project, "pipeline.ts", pipeline)

    const result = await runCli(["run", "pipeline.ts", "--run-dir", "runs/faults", "--shard-size", "10", "--json"], {
      cwd: project.dir,
      env: openaiEnv(emulator.url)
    })
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

    const byId = callsById((await getLedger(emulator.url)).calls)
    const failedIds = new Set(failures.map((f) => f.custom_id!))
    expect(byId.size).toBe(rows.length)
    let retried = 0
    for (const [id, calls] of byId) {
      // Everything before a row's last call was a retryable failure the emulator injected
      // (before the request took effect): nothing that retrying could not help was retried.
      for (const c of calls.slice(0, -1)) {
        expect([429, 500, 502, 503], `${id}: call ${c.seq}`).toContain(c.status)
        expect(c.fault, `${id}: call ${c.seq}`).not.toBeNull()
      }
      retried += calls.length - 1
      // The last call: the answer, or for a refused row the one 400, sent once and never again.
      const last = calls[calls.length - 1]!
      expect([last.status, last.fault], id).toEqual([failedIds.has(id) ? 400 : 200, null])
    }
    // The faults were met (the test would prove nothing otherwise), 429s and 5xx both.
    const statuses = [...byId.values()].flat().map((c) => c.status)
    expect(statuses).toContain(429)
    expect(statuses.some((s) => s >= 500)).toBe(true)
    expect(retried).toBeGreaterThan(0)
  })

  it("a provider limited to R requests a minute: after its first 429 the run stays at or under R in every minute, by the ledger", async () => {
    const R = 30
    const ROWS = 20
    emulator = await startTestEmulator({ rpmLimit: R })
    project = await makeProject("sluice-online-rpm-")
    await writeText(project, "data/rows.jsonl", makeRows(ROWS).map((r) => JSON.stringify(r)).join("\n") + "\n")
    await writeText(project, "pipeline.ts", pipeline)

    // Another client of the same organisation has just used the minute's requests (the limit
    // is per model, not per client), and the emulator's clock stands still until the run has
    // met its first 429: however long the CLI takes to start, it finds the bucket empty.
    const drain = await Promise.all(
      Array.from({ length: R }, (_, i) =>
        fetch(`${emulator.url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: "Bearer sk-test-fake-key", "x-sluice-custom-id": `other-${i}` },
          body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: `another client's request ${i}` }] })
        }).then((r) => r.status)
      )
    )
    expect(drain.every((s) => s === 200)).toBe(true)
    await holdClock(emulator.url)

    const child = spawnCli(["run", "pipeline.ts", "--run-dir", "runs/rpm", "--shard-size", "10", "--concurrency", "8", "--json"], {
      cwd: project.dir,
      env: openaiEnv(emulator.url)
    })
    let stdout = ""
    let stderr = ""
    child.stdout!.setEncoding("utf8").on("data", (d: string) => (stdout += d))
    child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d))
    const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)))
    try {
      await waitFor("the run's first 429", async () => ((await getLedger(emulator.url)).calls.some((c) => c.status === 429) ? true : undefined), { timeoutMs: 120_000 })
    } finally {
      await releaseClock(emulator.url)
    }
    const code = await exited
    expect(code, `${stdout}\n${stderr}`).toBe(0)
    const keys = (await readSink(project.path("out", "labeled.jsonl"))).map((l) => l.key)
    expect([keys.length, new Set(keys).size]).toEqual([ROWS, ROWS])

    // The measure: the run's calls (any status, 429s included) by the time the emulator
    // received them, on the clock its limits judge by. Sound because the emulator's limit is
    // a token bucket on that clock and every call is in the ledger: for each call from the
    // first 429 on, the calls received in the minute that starts with it are counted; the
    // largest such count is the busiest minute after the first 429 (a window holding the most
    // calls can always be moved to start at one). A run that ignored the limit — resending
    // each refused request after its own backoff, or as soon as the Retry-After passed
    // whatever the headers said was left — would put more than R calls in a minute of the
    // ~60 s this run spends waiting for the window to refill. The clock was held only before
    // that minute, while the run sent its first requests; a held clock stamps calls with
    // one instant, which only puts more of them in one window (it cannot hide any).
    const calls = (await getLedger(emulator.url)).calls.filter((c) => !c.custom_id!.startsWith("other-"))
    const first429 = calls.find((c) => c.status === 429)!
    const busiest = Math.max(
      ...calls.filter((c) => c.received_at >= first429.received_at).map((c) => calls.filter((d) => d.received_at >= c.received_at && d.received_at < c.received_at + 60_000).length)
    )
    expect(busiest, `busiest minute after the first 429: ${busiest} calls`).toBeLessThanOrEqual(R)
    // Every row answered; the refused calls were throttles, and the limit was really met.
    expect(calls.filter((c) => c.status === 200).length).toBe(ROWS)
    expect(calls.every((c) => c.status === 200 || c.status === 429)).toBe(true)
  })
})
