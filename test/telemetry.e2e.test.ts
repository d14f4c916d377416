/**
 * OpenTelemetry end to end: the real `sluice` CLI as a child process, against the emulator,
 * exporting to an OTLP/HTTP receiver in this process (node:http on 127.0.0.1, decoding the
 * JSON the exporters send). A two-stage run: a Gemini batch stage (its key goes in
 * `x-goog-api-key`), then an OpenAI stage online. It is submitted detached while the
 * emulator's clock stands still (its batches are in flight when it exits), then resumed.
 * The receiver must see the run, shard and provider-call spans, and metrics whose values are
 * the run's status; never the API key. With no OTEL variable set, the same run sends nothing.
 */
import { createServer, type IncomingHttpHeaders, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { gunzipSync } from "node:zlib"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import { spawn } from "node:child_process"
import { childEnv, describeResult, getLedger, makeProject, runCli, startTestEmulator, writeLines, writeText } from "./support/cli.js"
import type { CliResult, TempProject, TestEmulator } from "./support/cli.js"
import { holdClock, releaseClock, runFlags, waitFor } from "./support/runs.js"

/** Each test spawns the CLI several times (tsx loads TypeScript on each start, seconds on a busy machine). */
const SLOW = { timeout: 240_000 }

const API_KEY = "sk-otel-e2e-secret-7f3a9c"
const COLLECTOR_TOKEN = "collector-token-42"

const pipeline = `
import { Pipeline, Prompt, Sink, Source } from "@sluice/core"
import { Schema } from "effect"
const Review = Schema.Struct({ id: Schema.String, text: Schema.String })
const Label = Schema.Struct({ sentiment: Schema.Literal("positive", "negative", "neutral"), topics: Schema.Array(Schema.String) })
export default Pipeline.make("otel").pipe(
  Pipeline.from(Source.jsonl("data/rows.jsonl", Review), { key: (r) => r.id, onInvalid: "skip" }),
  Pipeline.batch("label", {
    provider: "gemini", model: "gemini-2.5-flash", maxAttempts: 1,
    prompt: (r) => Prompt.chat({ system: "Label the review.", user: r.text }),
    output: Label
  }),
  Pipeline.map((label, review) => ({ id: review.id, sentiment: label.sentiment })),
  Pipeline.batch("title", {
    provider: "openai", model: "gpt-4o-mini", mode: "online",
    prompt: (x) => Prompt.chat({ user: "A title for a " + x.sentiment + " review" })
  }),
  Pipeline.to(Sink.jsonl("out/titled.jsonl"))
)
`

// ---------------------------------------------------------------------------------------------
// An OTLP/HTTP receiver
// ---------------------------------------------------------------------------------------------

interface Received {
  readonly path: string
  readonly headers: IncomingHttpHeaders
  /** The body as sent (decompressed). */
  readonly raw: string
  readonly body: any
}

interface Receiver {
  readonly url: string
  readonly received: Array<Received>
  readonly close: () => Promise<void>
}

const startReceiver = async (): Promise<Receiver> => {
  const received: Array<Received> = []
  const server: Server = createServer((req, res) => {
    const chunks: Array<Buffer> = []
    req.on("data", (c: Buffer) => chunks.push(c))
    req.on("end", () => {
      let bytes = Buffer.concat(chunks)
      if (req.headers["content-encoding"] === "gzip") bytes = gunzipSync(bytes)
      const raw = bytes.toString("utf8")
      // The -http exporters send OTLP JSON; anything else would fail this parse (and the test).
      received.push({ path: req.url ?? "", headers: req.headers, raw, body: JSON.parse(raw) })
      res.writeHead(200, { "content-type": "application/json" }).end("{}")
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    received,
    close: () => new Promise((resolve) => server.close(() => resolve()))
  }
}

type Attributes = Record<string, string | number | boolean>

const attributesOf = (list: ReadonlyArray<{ key: string; value: Record<string, unknown> }> | undefined): Attributes =>
  Object.fromEntries(
    (list ?? []).map(({ key, value }) => {
      if ("stringValue" in value) return [key, value["stringValue"] as string]
      if ("intValue" in value) return [key, Number(value["intValue"])]
      if ("doubleValue" in value) return [key, Number(value["doubleValue"])]
      if ("boolValue" in value) return [key, value["boolValue"] as boolean]
      return [key, JSON.stringify(value)]
    })
  )

interface Span {
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId: string
  readonly name: string
  readonly attributes: Attributes
  readonly statusCode: number
  readonly resource: Attributes
}

const spansOf = (received: ReadonlyArray<Received>): Array<Span> =>
  received.filter((r) => r.path === "/v1/traces").flatMap((r) =>
    (r.body.resourceSpans as Array<any>).flatMap((rs) =>
      (rs.scopeSpans as Array<any>).flatMap((ss) =>
        (ss.spans as Array<any>).map((s): Span => ({
          traceId: s.traceId,
          spanId: s.spanId,
          parentSpanId: s.parentSpanId ?? "",
          name: s.name,
          attributes: attributesOf(s.attributes),
          statusCode: s.status?.code ?? 0,
          resource: attributesOf(rs.resource?.attributes)
        }))
      )
    )
  )

interface Point {
  readonly name: string
  readonly attributes: Attributes
  readonly value: number
}

/** Every data point of the last metrics export (each export holds the cumulative values so far). */
const lastMetrics = (received: ReadonlyArray<Received>): Array<Point> => {
  const exports = received.filter((r) => r.path === "/v1/metrics")
  const last = exports[exports.length - 1]
  if (last === undefined) return []
  return (last.body.resourceMetrics as Array<any>).flatMap((rm) =>
    (rm.scopeMetrics as Array<any>).flatMap((sm) =>
      (sm.metrics as Array<any>).flatMap((m) =>
        ((m.sum ?? m.gauge)?.dataPoints as Array<any> ?? []).map((p): Point => ({
          name: m.name,
          attributes: attributesOf(p.attributes),
          value: Number(p.asDouble ?? p.asInt ?? 0)
        }))
      )
    )
  )
}

/** The sum of the points of metric `name` whose attributes include `where`. */
const total = (points: ReadonlyArray<Point>, name: string, where: Attributes = {}): number =>
  points
    .filter((p) => p.name === name && Object.entries(where).every(([k, v]) => p.attributes[k] === v))
    .reduce((a, p) => a + p.value, 0)

// ---------------------------------------------------------------------------------------------

let emulator: TestEmulator
let receiver: Receiver
let project: TempProject

/** The OTEL variables of the parent's environment, removed from every child's unless a test sets them. */
const noOtel = Object.fromEntries(Object.keys(process.env).filter((k) => k.startsWith("OTEL_")).map((k) => [k, undefined]))

const env = (emulatorUrl: string, otel: Record<string, string> = {}) => ({
  ...noOtel,
  GEMINI_BASE_URL: emulatorUrl,
  GEMINI_API_KEY: API_KEY,
  OPENAI_BASE_URL: `${emulatorUrl}/v1`,
  OPENAI_API_KEY: API_KEY,
  ...otel
})

const otelEnv = () => ({
  OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
  OTEL_EXPORTER_OTLP_HEADERS: `x-collector-token=${COLLECTOR_TOKEN}`,
  OTEL_SERVICE_NAME: "sluice-e2e",
  OTEL_RESOURCE_ATTRIBUTES: "deployment.environment=test"
})

const statusOf = async (runDir: string) => {
  const r = await runCli(["status", runDir, "--json", "--no-refresh"], { cwd: project.dir, env: env(emulator.url) })
  expect(r.code, describeResult(r)).toBe(0)
  return JSON.parse(r.stdout)
}

const rows = Array.from({ length: 30 }, (_, i) => JSON.stringify({ id: `r${String(i + 1).padStart(3, "0")}`, text: `review ${i + 1}: ${i % 2 === 0 ? "great" : "broke"}` }))

beforeAll(async () => {
  // A fifth of the Gemini batch requests fail (server_error); with maxAttempts 1 they end failed.
  emulator = await startTestEmulator({ apiKey: API_KEY, errorRate: 0.2 })
  receiver = await startReceiver()
  project = await makeProject("sluice-otel-")
  await writeText(project, "otel.pipeline.ts", pipeline)
  // Two lines no Review decodes from: invalid, skipped.
  await writeLines(project, "data/rows.jsonl", [...rows.slice(0, 10), "{\"id\": 7}", ...rows.slice(10), "not json"])
})

// A test that failed with the emulator's clock held must not leave the next ones waiting on it.
afterEach(async () => {
  await releaseClock(emulator.url, { apiKey: API_KEY })
})

afterAll(async () => {
  await emulator?.close()
  await receiver?.close()
  await project?.cleanup()
})

describe("OpenTelemetry", SLOW, () => {
  it("exports the spans and metrics of a run, submitted detached and resumed, to the OTLP endpoint, never the key", async () => {
    const runDir = project.path("runs/otel")
    const cli = (args: ReadonlyArray<string>, otel: Record<string, string>) => runCli(args, { cwd: project.dir, env: env(emulator.url, otel) })
    const everything: Array<Received> = []

    // 1. Submitted while the emulator's clock stands still: its batches are in flight when it exits.
    await holdClock(emulator.url, { apiKey: API_KEY })
    const submitted = await cli(["run", "otel.pipeline.ts", ...runFlags(runDir, 10, ["--detach", "--no-cache"])], otelEnv())
    expect(submitted.code, describeResult(submitted)).toBe(3)
    const first = receiver.received.splice(0)
    everything.push(...first)
    const afterSubmit = await statusOf(runDir)
    const labelShards = (afterSubmit.shards as Array<any>).filter((s) => s.batchId !== null)
    expect(labelShards.length).toBe(3)

    // Every request carried the headers of OTEL_EXPORTER_OTLP_HEADERS.
    expect(first.length).toBeGreaterThan(0)
    for (const r of first) expect(r.headers["x-collector-token"]).toBe(COLLECTOR_TOKEN)

    const spans1 = spansOf(first)
    const runs1 = spans1.filter((s) => s.name === "sluice.run")
    expect(runs1.length).toBe(1)
    const run1 = runs1[0]!
    expect(run1.attributes).toMatchObject({ "sluice.pipeline": "otel", "sluice.action": "run", "sluice.run_id": afterSubmit.runId })
    expect(run1.resource).toMatchObject({ "service.name": "sluice-e2e", "deployment.environment": "test" })
    // One shard span per batch, under the run's span, with the shard's attributes.
    const shardSpans1 = spans1.filter((s) => s.name === "sluice.shard")
    expect(shardSpans1.map((s) => s.attributes["sluice.batch_id"]).sort()).toEqual(labelShards.map((s) => s.batchId).sort())
    for (const s of shardSpans1) {
      expect(s.parentSpanId).toBe(run1.spanId)
      expect(s.traceId).toBe(run1.traceId)
      expect(s.attributes).toMatchObject({ "sluice.stage": "label", "sluice.attempt": 1, "sluice.provider": "gemini", "sluice.model": "gemini-2.5-flash", "sluice.mode": "batch" })
      expect(s.attributes["sluice.rows.requests"]).toBe(labelShards.find((l) => l.batchId === s.attributes["sluice.batch_id"]).requests)
    }
    // Submissions under their shard's span; the provider calls (upload, create) under them.
    const submits = spans1.filter((s) => s.name === "sluice.submit")
    expect(submits.length).toBe(3)
    for (const s of submits) expect(shardSpans1.map((x) => x.spanId)).toContain(s.parentSpanId)
    const calls1 = spans1.filter((s) => s.attributes["http.request.method"] !== undefined)
    const underSubmit = calls1.filter((c) => submits.some((s) => s.spanId === c.parentSpanId))
    // One create per shard (its requests inline), nothing listed before it on a fresh run.
    expect(underSubmit.length).toBe(3)
    for (const c of underSubmit) expect(String(c.attributes["url.full"])).toMatch(new RegExp(`^${emulator.url}/`))
    // The header the key goes in is recorded, redacted.
    expect(underSubmit.some((c) => c.attributes["http.request.header.x-goog-api-key"] === "<redacted>")).toBe(true)
    // (Shards this small go inline, no upload: test/Telemetry.test.ts covers the upload URL's redaction.)

    // Metrics: the batches in flight when it exited, and the rows it found invalid while planning.
    const metrics1 = lastMetrics(first)
    expect(total(metrics1, "sluice.batches.in_flight", { stage: "label" })).toBe(3)
    expect(total(metrics1, "sluice.rows", { outcome: "invalid" })).toBe(afterSubmit.invalid)
    expect(afterSubmit.invalid).toBe(2)

    // 2. Resumed with the clock running: everything is collected, the second stage runs online.
    await releaseClock(emulator.url, { apiKey: API_KEY })
    const resumed = await cli(["resume", runDir, "--no-cache"], otelEnv())
    // Exit 1: some rows failed (the emulator's server errors, with one attempt only).
    expect(resumed.code, describeResult(resumed)).toBe(1)
    const second = receiver.received.splice(0)
    everything.push(...second)
    const status = await statusOf(runDir)
    expect(status.finished).toBe(true)

    const spans2 = spansOf(second)
    const run2 = spans2.find((s) => s.name === "sluice.run")!
    expect(run2.attributes).toMatchObject({ "sluice.run_id": status.runId, "sluice.rows.succeeded": status.succeeded, "sluice.finished": true })
    // A step with nothing to do makes no span: the batches were submitted by the first process.
    expect(spans2.filter((s) => s.name === "sluice.submit")).toEqual([])
    const polls = spans2.filter((s) => s.name === "sluice.poll")
    expect(polls.map((s) => s.attributes["sluice.batch_id"]).sort()).toEqual(labelShards.map((s) => s.batchId).sort())
    for (const p of polls) expect(p.attributes["sluice.batch.status"]).toBe("completed")
    const collects = spans2.filter((s) => s.name === "sluice.collect" && s.attributes["sluice.stage"] === "label")
    expect(collects.length).toBe(3)
    const online = spans2.filter((s) => s.name === "sluice.online")
    expect(online.length).toBeGreaterThan(0)
    for (const s of online) expect(s.attributes).toMatchObject({ "sluice.stage": "title", "sluice.mode": "online", "sluice.provider": "openai" })
    // Every shard span of this process hangs under its run span, retry shards too.
    for (const s of spans2.filter((x) => x.name === "sluice.shard")) expect(s.parentSpanId).toBe(run2.spanId)
    // The online requests are provider calls too, under their shard's online span.
    const onlineCalls = spans2.filter((c) => online.some((o) => o.spanId === c.parentSpanId) && c.attributes["http.request.method"] === "POST")
    expect(onlineCalls.length).toBeGreaterThan(0)

    // Metrics of the resumed process: it collected every row, so they are the run's status.
    const metrics = lastMetrics(second)
    expect(total(metrics, "sluice.rows", { stage: "title", outcome: "succeeded" })).toBe(status.succeeded)
    const failed = Object.entries(status.failed as Record<string, number>).filter(([k]) => k !== "invalid")
    expect(failed.length).toBeGreaterThan(0)
    for (const [failureClass, n] of failed) expect(total(metrics, "sluice.rows", { outcome: "failed", failure_class: failureClass })).toBe(n)
    for (const kind of ["input", "output", "cached"] as const) {
      expect(total(metrics, "sluice.tokens", { token_type: kind })).toBe(status.usage[kind])
    }
    expect(total(metrics, "sluice.tokens", { stage: "label", model: "gemini-2.5-flash", token_type: "input" })).toBe(status.costByMode.batch.usage.input)
    expect(total(metrics, "sluice.tokens", { stage: "title", model: "gpt-4o-mini", token_type: "output" })).toBe(status.costByMode.online.usage.output)
    expect(status.costByMode.batch.cost).toBeGreaterThan(0)
    expect(total(metrics, "sluice.spend", { mode: "batch" })).toBeCloseTo(status.costByMode.batch.cost, 9)
    expect(total(metrics, "sluice.spend", { mode: "online" })).toBeCloseTo(status.costByMode.online.cost, 9)
    expect(total(metrics, "sluice.spend")).toBeCloseTo(status.spent, 9)
    expect(total(metrics, "sluice.batches.in_flight", { stage: "label" })).toBe(0)
    expect(total(metrics, "sluice.online.requests", { stage: "title", provider: "openai" })).toBe(status.rowsByMode.online)

    // The key was sent on every provider call (the emulator refuses calls without it), and reached the receiver nowhere.
    for (const r of everything) {
      expect(r.raw).not.toContain(API_KEY)
      expect(JSON.stringify(r.headers)).not.toContain(API_KEY)
    }
  })

  it("`sluice cancel` exports its span too, with the batches it stopped", async () => {
    const runDir = project.path("runs/cancelled")
    await holdClock(emulator.url, { apiKey: API_KEY })
    const submitted = await runCli(["run", "otel.pipeline.ts", ...runFlags(runDir, 10, ["--detach", "--no-cache"])], { cwd: project.dir, env: env(emulator.url) })
    expect(submitted.code, describeResult(submitted)).toBe(3)
    expect(receiver.received, "nothing exported without the OTEL variables").toEqual([])
    const inFlight = ((await statusOf(runDir)).shards as Array<any>).filter((s) => s.batchId !== null).map((s) => s.batchId).sort()
    expect(inFlight.length).toBeGreaterThan(0)
    const cancelling = runCli(["cancel", runDir, "--poll-interval", "0.05"], { cwd: project.dir, env: env(emulator.url, otelEnv()) })
    // Cancelled while the clock stands still, then the clock moves: the batches can end cancelled.
    const cancellingIds = async () =>
      (await getLedger(emulator.url, API_KEY)).batches.filter((b) => b.status === "cancelling" && inFlight.some((id) => id.endsWith(b.id))).length
    await waitFor("every batch cancelling", async () => ((await cancellingIds()) === inFlight.length ? true : undefined))
    await releaseClock(emulator.url, { apiKey: API_KEY })
    const cancelled = await cancelling
    expect(cancelled.signal, describeResult(cancelled)).toBeNull()
    const spans = spansOf(receiver.received.splice(0))
    const run = spans.filter((s) => s.name === "sluice.run")
    expect(run.length).toBe(1)
    expect(run[0]!.attributes).toMatchObject({ "sluice.action": "cancel", "sluice.run_id": (await statusOf(runDir)).runId })
    expect(spans.filter((s) => s.name === "sluice.shard").map((s) => s.attributes["sluice.batch_id"]).sort()).toEqual(inFlight)
  })

  it("a run that fails exports its spans too, the run's span marked as an error", async () => {
    const r = await runCli(["run", "otel.pipeline.ts", ...runFlags(project.path("runs/refused"), 10, ["--no-cache"])], {
      cwd: project.dir,
      env: { ...env(emulator.url, otelEnv()), GEMINI_API_KEY: "sk-not-the-emulators-key" }
    })
    expect(r.code, describeResult(r)).not.toBe(0)
    expect(r.code, describeResult(r)).not.toBe(1)
    const received = receiver.received.splice(0)
    const run = spansOf(received).filter((s) => s.name === "sluice.run")
    expect(run.length).toBe(1)
    // OTLP status code 2: ERROR.
    expect(run[0]!.statusCode).toBe(2)
    expect(received.some((x) => x.path === "/v1/metrics")).toBe(true)
  })

  it("the Promise API's run exports too, read from the environment of the program that calls it", async () => {
    // A program of the user's: plain Node, importing the built @sluice/runner/promise.
    await writeText(project, "program.mjs", `
import { Pipeline, Prompt, Source } from "@sluice/core"
import * as Sluice from "@sluice/runner/promise"
import { Schema } from "effect"
const rows = Array.from({ length: 12 }, (_, i) => ({ id: "p" + i, text: "review " + i }))
const pipeline = Pipeline.make("otel-promise").pipe(
  Pipeline.from(Source.array(rows, "rows"), { key: (r) => r.id }),
  Pipeline.batch("label", { provider: "openai", model: "gpt-4o-mini", prompt: (r) => Prompt.chat({ user: r.text }) })
)
const summary = await Sluice.run(pipeline, { runDir: "runs/promise", shardSize: 6, pollInterval: 0.05 })
console.log(JSON.stringify(summary))
`)
    const child = spawn(process.execPath, ["program.mjs"], { cwd: project.dir, env: childEnv(env(emulator.url, { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url })) })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d))
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d))
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve))
    expect(code, `${stdout}\n${stderr}`).toBe(0)
    const summary = JSON.parse(stdout) as { runId: string; succeeded: number }
    expect(summary.succeeded).toBe(12)
    const received = receiver.received.splice(0)
    const spans = spansOf(received)
    const run = spans.find((s) => s.name === "sluice.run")
    expect(run?.attributes["sluice.run_id"]).toBe(summary.runId)
    expect(run!.resource["service.name"]).toBe("sluice")
    // Its collections (retry shards of the emulator's failed requests too) account for every row.
    const collects = spans.filter((s) => s.name === "sluice.collect" && s.traceId === run!.traceId)
    expect(collects.reduce((a, s) => a + Number(s.attributes["sluice.rows.succeeded"]), 0)).toBe(12)
    expect(total(lastMetrics(received), "sluice.rows", { stage: "label", outcome: "succeeded" })).toBe(12)
    for (const r of received) expect(r.raw).not.toContain(API_KEY)
  })

  it("with no OTEL variable set, the same run sends nothing (the receiver is up and gets no request)", async () => {
    const before = receiver.received.length
    const r = await runCli(["run", "otel.pipeline.ts", ...runFlags(project.path("runs/quiet"), 10, ["--no-cache"])], { cwd: project.dir, env: env(emulator.url) })
    expect(r.code, describeResult(r)).toBe(1)
    const status = await statusOf(project.path("runs/quiet"))
    expect(status.finished).toBe(true)
    expect(receiver.received.length).toBe(before)
  })

  it("a gRPC protocol in the environment: the run goes on, exports nothing and says why once", async () => {
    const before = receiver.received.length
    const r = await runCli(["run", "otel.pipeline.ts", ...runFlags(project.path("runs/grpc"), 10, ["--no-cache"])], {
      cwd: project.dir,
      env: env(emulator.url, { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" })
    })
    expect(r.code, describeResult(r)).toBe(1)
    expect((await statusOf(project.path("runs/grpc"))).finished).toBe(true)
    expect(receiver.received.length).toBe(before)
    const warnings = r.stderr.split("\n").filter((l) => l.includes("OpenTelemetry"))
    expect(warnings, r.stderr).toHaveLength(1)
    expect(warnings[0]).toContain("nothing is exported: OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not supported")
  })

  it("an unreachable collector costs the run nothing: it succeeds, and says so once", async () => {
    // A port nothing listens on (a server bound, then closed).
    const gone = await startReceiver()
    await gone.close()
    const r: CliResult = await runCli(["run", "otel.pipeline.ts", ...runFlags(project.path("runs/unreachable"), 10, ["--no-cache"])], {
      cwd: project.dir,
      // One span per export: many exports fail, one warning.
      env: env(emulator.url, { OTEL_EXPORTER_OTLP_ENDPOINT: gone.url, OTEL_BSP_MAX_EXPORT_BATCH_SIZE: "1", OTEL_BSP_SCHEDULE_DELAY: "10" })
    })
    expect(r.code, describeResult(r)).toBe(1)
    expect((await statusOf(project.path("runs/unreachable"))).finished).toBe(true)
    const warnings = r.stderr.split("\n").filter((l) => l.includes("OpenTelemetry"))
    expect(warnings.filter((l) => l.includes("cannot export traces")).length, r.stderr).toBe(1)
    expect(warnings.filter((l) => l.includes("cannot export metrics")).length, r.stderr).toBe(1)
    expect(warnings[0]).toContain(gone.url)
  })
})
