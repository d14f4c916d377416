/**
 * A real-time request that times out may have been produced, and billed, by the provider: it
 * is sent once more at most, then its row ends `retryable` (code `timeout`) — never the eight
 * attempts a 429 or a 5xx gets. In process, against the emulator holding every request so
 * that each one times out; counted by the emulator's ledger of real-time calls.
 */
import { join } from "node:path"
import { NodeContext, NodeHttpClient } from "@effect/platform-node"
import { getLedger } from "@sluice/emulator/control"
import { OpenAiBatch, Registry } from "@sluice/providers"
import { Records, Runner } from "@sluice/runner"
import { Chunk, Duration, Effect, Layer, Redacted, Stream } from "effect"
import { afterEach, describe, expect, it } from "vitest"
import { labelPipeline, makeReviews, startApiEmulator, tempDirs } from "./support/api.js"
import { countBy, setFaults } from "./support/runs.js"

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!().catch(() => undefined)
})

describe("online requests that time out", () => {
  it("are sent twice at most, then end retryable with code timeout; every row accounted for", { timeout: 120_000 }, async () => {
    const emulator = await startApiEmulator()
    cleanups.push(() => emulator.close())
    const dirs = tempDirs()
    cleanups.push(() => dirs.cleanup())
    const runDir = join(await dirs.make(), "run")
    const rows = makeReviews(3, "to")
    // One attempt per row at the stage level: the row's end is this shard's.
    const pipeline = labelPipeline({ name: "online-timeout", source: { rows }, maxAttempts: 1 })
    const layer = Layer.mergeAll(
      NodeContext.layer,
      Layer.unwrapEffect(
        Effect.map(
          OpenAiBatch.make({ apiKey: Redacted.make("test"), baseUrl: `${emulator.url}/v1`, onlineTimeout: Duration.millis(300) }),
          (openai) => Registry.layer({ openai })
        )
      ).pipe(Layer.provide(NodeHttpClient.layerUndici))
    )
    // Held requests are never answered: each attempt times out on the client's side.
    await setFaults(emulator.url, { holdRequests: true })

    const { summary, failures } = await Effect.runPromise(
      Effect.gen(function* () {
        const summary = yield* Runner.run(pipeline, { runDir, mode: "online", concurrency: 3, pollInterval: Duration.millis(50) })
        const failures = Chunk.toReadonlyArray(yield* Stream.runCollect(Records.failures(runDir)))
        return { summary, failures }
      }).pipe(Effect.provide(layer))
    )

    expect(summary).toMatchObject({ finished: true, rows: 3, succeeded: 0, pending: 0 })
    expect(failures.map((f) => [f.key, f.class, f.code]).sort()).toEqual(rows.map((r) => [r.id, "retryable", "timeout"]))
    const sent = countBy((await getLedger(emulator.url)).calls, (c) => c.custom_id ?? "")
    expect([...sent.values()], "requests per row").toEqual([2, 2, 2])
  })
})
