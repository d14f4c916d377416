/**
 * sluice from plain async/await code: run a pipeline with progress callbacks and an
 * AbortSignal, then consume its outputs with `for await`.
 *
 *   npx tsx examples/etl/async-etl.ts
 *
 * Without OPENAI_BASE_URL it starts the built-in emulator and runs against it.
 */
import { Pipeline, Prompt, Source } from "@sluice/core"
import { startEmulator } from "@sluice/emulator"
import { failures, outputs, run, SluiceError } from "@sluice/runner/promise"
import { Schema } from "effect"
import { Review, reviewsFile } from "../reviews.js"

const Summary = Schema.Struct({ summary: Schema.String, sentiment: Schema.Literal("positive", "negative", "neutral", "mixed") })

const pipeline = Pipeline.make("etl-async").pipe(
  Pipeline.from(Source.jsonl(reviewsFile, Review), { key: (r) => r.id }),
  Pipeline.batch("summarise", {
    provider: "openai",
    model: "gpt-4o-mini",
    prompt: (r) => Prompt.chat({ system: "Summarise the review in one sentence.", user: r.text }),
    output: Summary
  })
)

const emulator = process.env["OPENAI_BASE_URL"] === undefined ? await startEmulator({ requestsPerSecond: 2000 }) : undefined
const openai = emulator === undefined ? {} : { baseUrl: `${emulator.url}/v1`, apiKey: "emulator" }
const runDir = ".sluice/runs/etl-async"

// Stop cleanly on Ctrl-C: batches keep running at the provider; running this again resumes.
const controller = new AbortController()
process.once("SIGINT", () => controller.abort())

try {
  const summary = await run(pipeline, {
    runDir,
    openai,
    shardSize: 250,
    pollInterval: 0.2,
    signal: controller.signal,
    onEvent: (e) => {
      if (e._tag === "ShardSubmitted") console.log(`submitted ${e.shard} as ${e.batchId}`)
      if (e._tag === "RowsFailed") console.log(`${e.shard}: ${e.count} failed, ${e.rescheduled} rescheduled`)
    }
  })
  console.log(`done: ${summary.succeeded}/${summary.rows} rows, ${summary.usage.input + summary.usage.output} tokens`)

  let shown = 0
  for await (const record of outputs(pipeline, runDir)) {
    if (shown++ < 3) console.log(`${record.input.id} (${record.output.sentiment}): ${record.output.summary}`)
  }
  for await (const failure of failures(runDir)) console.log(`failed: ${failure.key} ${failure.class}: ${failure.message}`)
} catch (e) {
  if (e instanceof SluiceError) {
    console.error(`sluice: ${e.tag}${e.reason === undefined ? "" : ` (${e.reason})`}: ${e.message}${e.retryable ? " — worth retrying" : ""}`)
    process.exitCode = 1
  } else throw e
} finally {
  await emulator?.close()
}
