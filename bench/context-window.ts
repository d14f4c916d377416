/**
 * What the context-window check costs the planner, in process, on the benchmark's rows and
 * pipeline (bench/pipeline.ts: ~1 KB reviews, gpt-4o-mini, a structured output):
 *
 *   npx tsx bench/context-window.ts [--rows 100000] [--repeat 3]
 *
 * Per row the planner already renders and encodes the request; the check then compares the
 * line's byte length (plus images) with the model's window, and tokenizes only a line longer
 * than the window (see packages/runner/src/ContextWindow.ts). Measured: encoding (for scale),
 * the check at gpt-4o-mini's window (128,000: no row is tokenized), and tokenizing every row
 * (what the check would cost without the bound, and what a run with --budget pays anyway).
 * The fastest of `--repeat` passes is reported.
 */
import { HttpClient } from "@effect/platform"
import type { BatchRequest } from "@sluice/core"
import { OpenAiBatch } from "@sluice/providers"
import { Effect, Redacted } from "effect"
import { performance } from "node:perf_hooks"
import * as ContextWindow from "../packages/runner/src/ContextWindow.js"
import * as Pricing from "../packages/runner/src/Pricing.js"
import { requestTokens } from "../packages/runner/src/RequestTokens.js"
import { rowLine } from "./dataset.js"

const option = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(name)
  return i === -1 ? fallback : Number(process.argv[i + 1])
}
const rows = option("--rows", 100_000)
const repeat = option("--repeat", 3)

process.env["SLUICE_BENCH_SOURCE"] ??= "unused.jsonl"
process.env["SLUICE_BENCH_SINK"] ??= "unused-out.jsonl"
const { default: pipeline } = await import("./pipeline.js")
const stage = pipeline.stages[0]!
const provider = OpenAiBatch.makeWithClient(HttpClient.make(() => Effect.dieMessage("nothing is sent")), {
  apiKey: Redacted.make("offline"),
  baseUrl: OpenAiBatch.defaultBaseUrl
})
const window = Pricing.contextWindow(stage.model)!

const requests: Array<BatchRequest> = []
for (let i = 0; i < rows; i++) requests.push(stage.render(JSON.parse(rowLine(i))))
const bytes: Array<number> = new Array(rows)

const fastest = (f: () => void): number => {
  let best = Infinity
  for (let r = 0; r < repeat; r++) {
    const start = performance.now()
    f()
    best = Math.min(best, performance.now() - start)
  }
  return best
}

const encode = fastest(() => {
  for (let i = 0; i < rows; i++) bytes[i] = Buffer.byteLength(provider.encode(requests[i]!, `label-r${i}-0123456789abcdef`)) + 1
})
let tokenized = 0
const check = fastest(() => {
  tokenized = 0
  for (let i = 0; i < rows; i++) {
    if (ContextWindow.tokenBound(requests[i]!, bytes[i]!) > window) tokenized++
    if (ContextWindow.check(requests[i]!, bytes[i]!, window) !== undefined) throw new Error("a bench row over the window")
  }
})
let tokens = 0
const count = fastest(() => {
  tokens = 0
  for (let i = 0; i < rows; i++) tokens += requestTokens(requests[i]!).tokens
})

const line = (what: string, ms: number) =>
  `${what.padEnd(52)} ${(ms / 1000).toFixed(3).padStart(8)} s  ${((ms * 1000) / rows).toFixed(2).padStart(8)} µs/row`
console.log(`${rows} rows of bench/pipeline.ts (${stage.model}, window ${window}); fastest of ${repeat}`)
console.log(line("encode one line (the planner does this anyway)", encode))
console.log(line(`context-window check (${tokenized} rows tokenized)`, check))
console.log(line(`tokenizing every row (${Math.round(tokens / rows)} tokens a row)`, count))
