/**
 * sluice from an Effect program: run a pipeline, watch its events, and consume its outputs
 * as a Stream — no CLI, no file sink.
 *
 *   npx tsx examples/etl/effect-etl.ts
 *
 * Without OPENAI_BASE_URL it starts the built-in emulator and runs against it.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Pipeline, Prompt, Source } from "@sluice/core"
import * as Emulator from "@sluice/emulator"
import { Live, Records, Runner } from "@sluice/runner"
import { Console, Duration, Effect, Schema, Stream } from "effect"
import { Review, reviewsFile } from "../reviews.js"

const Label = Schema.Struct({
  sentiment: Schema.Literal("positive", "negative", "neutral", "mixed"),
  wouldRecommend: Schema.Boolean
})

const pipeline = Pipeline.make("etl-effect").pipe(
  Pipeline.from(Source.jsonl(reviewsFile, Review), { key: (r) => r.id }),
  Pipeline.batch("label", {
    provider: "openai",
    model: "gpt-4o-mini",
    prompt: (r) => Prompt.chat({ system: "Label the review's sentiment.", user: r.text }),
    output: Label
  })
  // No Pipeline.to: the outputs stay in the run directory, for Records.outputs below.
)

const runDir = ".sluice/runs/etl-effect"

const program = Effect.gen(function* () {
  // Progress as events: the same counts the CLI shows.
  yield* Runner.events(pipeline, { runDir, shardSize: 250, pollInterval: Duration.millis(200) }).pipe(
    Stream.runForEach((event) =>
      event._tag === "RowsSucceeded"
        ? Console.log(`${event.shard}: ${event.count} rows done (${event.totals.succeeded}/${event.totals.rows})`)
        : event._tag === "RunFinished"
        ? Console.log(`finished: ${event.summary.succeeded} succeeded, ${event.summary.pending} pending`)
        : Effect.void
    )
  )
  // The results, typed by the pipeline: { key, customId, input: Review, output: Label }.
  const byProduct = new Map<string, { positive: number; total: number }>()
  yield* Records.outputs(pipeline, runDir).pipe(
    Stream.runForEach((r) =>
      Effect.sync(() => {
        const entry = byProduct.get(r.input.product) ?? { positive: 0, total: 0 }
        entry.total++
        if (r.output.sentiment === "positive") entry.positive++
        byProduct.set(r.input.product, entry)
      })
    )
  )
  const top = [...byProduct].sort((a, b) => b[1].positive / b[1].total - a[1].positive / a[1].total).slice(0, 3)
  for (const [product, { positive, total }] of top) yield* Console.log(`${product}: ${positive}/${total} positive`)
})

const main = Effect.gen(function* () {
  if (process.env["OPENAI_BASE_URL"] === undefined) {
    const emulator = yield* Emulator.scoped({ validatingMs: 100, finalizingMs: 100, requestsPerSecond: 2000 })
    process.env["OPENAI_BASE_URL"] = `${emulator.url}/v1`
    process.env["OPENAI_API_KEY"] ??= "emulator"
  }
  yield* program.pipe(Effect.provide(Live.layer()))
}).pipe(Effect.scoped)

NodeRuntime.runMain(main)
