/**
 * A provider's result lines are untrusted: lines naming custom_ids a shard never sent (a
 * faulty gateway, another tenant's answers, an attack) are counted and logged once per
 * shard, never kept, never in usage or cost, never in results.jsonl or the outputs. The
 * OpenAI provider over the emulator, with foreign lines appended to every batch's results.
 */
import { NodeHttpClient } from "@effect/platform-node"
import type { BatchResult } from "@sluice/core"
import { OpenAiBatch } from "@sluice/providers"
import type { BatchProvider } from "@sluice/providers"
import type { EmulatorHandle } from "@sluice/emulator"
import { Live, Pricing, Records, Runner } from "@sluice/runner"
import { Chunk, Duration, Effect, Layer, Logger, LogLevel, Redacted, Stream } from "effect"
import { readFile } from "node:fs/promises"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { labelPipeline, makeReviews, startApiEmulator, tempDirs } from "./support/api.js"

const dirs = tempDirs()
let emulator: EmulatorHandle
beforeAll(async () => {
  emulator = await startApiEmulator()
})
afterAll(async () => {
  await emulator.close()
  await dirs.cleanup()
})

/** Three answers per batch for custom_ids no shard sent, each claiming a million tokens. */
const foreign = (batchId: string): Array<BatchResult> =>
  Array.from({ length: 3 }, (_, i) => ({
    _tag: "Succeeded",
    customId: `label-intruder${i}-${batchId}`,
    text: JSON.stringify({ sentiment: "positive", topics: ["intrusion"] }),
    finishReason: "stop",
    usage: { inputTokens: 1_000_000, outputTokens: 1_000_000, cachedInputTokens: 0 },
    raw: null
  }))

describe("result lines for custom_ids a shard never sent", () => {
  it("are counted as a warning, once per shard: never kept, never in usage, cost, results or outputs", async () => {
    const runDir = join(await dirs.make(), "run")
    const pipeline = labelPipeline({ name: "foreign", source: { rows: makeReviews(20) } })
    // What the shards' own answers used: the only usage the run may count.
    const paid = { input: 0, output: 0, cached: 0 }
    const withForeignLines = (provider: BatchProvider): BatchProvider => ({
      ...provider,
      results: (batch) =>
        provider.results(batch).pipe(
          Stream.tap((r) =>
            Effect.sync(() => {
              if (r._tag === "Succeeded" && r.usage !== null) {
                paid.input += r.usage.inputTokens
                paid.output += r.usage.outputTokens
                paid.cached += r.usage.cachedInputTokens
              }
            })
          ),
          Stream.concat(Stream.fromIterable(foreign(batch.id)))
        )
    })
    const layer = Layer.unwrapEffect(
      Effect.map(
        OpenAiBatch.make({ apiKey: Redacted.make("test"), baseUrl: `${emulator.url}/v1` }),
        (openai) => Live.layer({ openai: withForeignLines(openai) })
      )
    ).pipe(Layer.provide(NodeHttpClient.layerUndici))
    const warnings: Array<string> = []
    const logger = Logger.make(({ logLevel, message }) => {
      if (logLevel._tag === "Warning") warnings.push(String(Array.isArray(message) ? message[0] : message))
    })

    const { summary, outputs } = await Effect.runPromise(
      Effect.gen(function* () {
        const summary = yield* Runner.run(pipeline, { runDir, shardSize: 10, pollInterval: Duration.millis(50) })
        const outputs = Chunk.toReadonlyArray(yield* Stream.runCollect(Records.outputs(pipeline, runDir)))
        return { summary, outputs }
      }).pipe(Effect.provide(layer), Effect.provide(Logger.replace(Logger.defaultLogger, logger)), Logger.withMinimumLogLevel(LogLevel.Warning))
    )

    expect(summary).toMatchObject({ finished: true, rows: 20, succeeded: 20, pending: 0, batches: 2 })
    expect(paid.input).toBeGreaterThan(0)
    expect(summary.usage).toEqual(paid)
    expect(summary.cost).toEqual(Pricing.cost("gpt-4o-mini", paid, Pricing.builtin))

    const foreignWarnings = warnings.filter((w) => w.includes("never sent"))
    expect(foreignWarnings).toHaveLength(2)
    for (const w of foreignWarnings) {
      expect(w).toMatch(/^shard \S+: 3 result lines name custom_ids this shard never sent \(e\.g\. "label-intruder0-\S+"\) in batch \S+: ignored, not counted in usage or cost$/)
    }

    expect(outputs).toHaveLength(20)
    expect(JSON.stringify(outputs)).not.toContain("intruder")
    expect(await readFile(join(runDir, "results.jsonl"), "utf8")).not.toContain("intruder")
  })
})
