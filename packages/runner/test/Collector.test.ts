/**
 * The collector's two phases (see Collector.ts): while a shard's results are read, the outputs
 * lock is free and nothing shared is written; the results lines reach results.jsonl, with the
 * sink's, under the lock, and the staging file is gone once the shard is collected.
 */
import { Path } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import type { BatchResult } from "@sluice/core"
import { Pipeline, Prompt, Source } from "@sluice/core"
import type { BatchInfo, BatchProvider } from "@sluice/providers"
import { OpenAiBatch } from "@sluice/providers"
import { Deferred, Duration, Effect, Fiber, Stream } from "effect"
import { existsSync, mkdtempSync, readFileSync, statSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Collector from "../src/Collector.js"
import * as Journal from "../src/Journal.js"
import type { JournalEvent } from "../src/JournalEvent.js"
import * as Outputs from "../src/Outputs.js"
import * as Planner from "../src/Planner.js"
import * as Pricing from "../src/Pricing.js"
import * as ResponseCache from "../src/ResponseCache.js"
import type { RunContext, StageRuntime } from "../src/RunContext.js"
import * as RunDir from "../src/RunDir.js"
import * as RunState from "../src/RunState.js"

const data = [{ id: "a", text: "one" }, { id: "b", text: "two" }, { id: "c", text: "three" }]

const answer = (customId: string): BatchResult => {
  const raw = { custom_id: customId, response: { status_code: 200, body: { choices: [{ message: { content: `ok ${customId}` } }] } } }
  return { _tag: "Succeeded", customId, text: `ok ${customId}`, finishReason: "stop", usage: null, raw, rawText: JSON.stringify(raw) }
}

describe("Collector", () => {
  it.scoped("reads a shard's results without the outputs lock, and writes them under it", () =>
    Effect.gen(function* () {
      const root = mkdtempSync(join(tmpdir(), "sluice-collect-"))
      const paths = RunDir.paths(root, yield* Path.Path)
      yield* RunDir.writeManifest(paths, {
        version: 1, runId: "r", pipeline: "collect", fingerprint: "f", pipelineFile: null, stages: [], providers: {}, sink: null,
        createdAt: new Date().toISOString()
      })
      // The provider's results stop after the first line until `more` is completed.
      const reading = yield* Deferred.make<void>()
      const more = yield* Deferred.make<void>()
      // The custom_ids the planner gives the rows (read from the sidecar once planned).
      let ids: ReadonlyArray<string> = []
      const info = { id: "batch-1", status: "completed", counts: { total: 3, succeeded: 3, failed: 0 } } as unknown as BatchInfo
      const provider = {
        name: "test",
        limits: { maxRequests: 100, maxBytes: 1_000_000, oneModelPerShard: true },
        capabilities: { cancel: true, list: true, metadata: true, partialResults: true },
        encode: OpenAiBatch.encode,
        retrieve: () => Effect.succeed(info),
        results: () =>
          Stream.make(answer(ids[0]!)).pipe(
            Stream.concat(Stream.fromEffect(Effect.zipRight(Deferred.succeed(reading, undefined), Deferred.await(more))).pipe(Stream.drain)),
            Stream.concat(Stream.make(answer(ids[1]!), answer(ids[2]!)))
          )
      } as unknown as BatchProvider
      const pipeline = Pipeline.make("collect").pipe(
        Pipeline.from(Source.array(data), { key: (r) => r.id }),
        Pipeline.batch("label", { provider: "test", model: "m", prompt: (r) => Prompt.chat({ user: r.text }) })
      )
      const stage: StageRuntime = { index: 0, stage: pipeline.stages[0]!, provider, before: pipeline.links[0] ?? [], after: [], next: null, cacheNamespace: "test" }
      const journal = yield* Journal.open(paths.journal)
      const state = RunState.empty()
      const events: Array<JournalEvent> = []
      const ctx: RunContext = {
        runId: "r",
        paths,
        pipeline,
        stages: [stage],
        stageOf: () => stage,
        cache: ResponseCache.disabled,
        state,
        settings: { concurrency: 1, shardSize: 100, shardBytes: 1_000_000, pollInterval: Duration.seconds(1), outputFileWait: Duration.minutes(10), detach: false },
        prices: Pricing.builtin,
        createLock: yield* Effect.makeSemaphore(1),
        record: (e) => journal.append(e).pipe(Effect.map(() => void (events.push(e), RunState.apply(state, e))))
      }
      const outputs = yield* Outputs.open(ctx)
      yield* Planner.plan(ctx, outputs, () => Effect.void)
      const shard = [...state.shards.values()][0]!
      ids = readFileSync(paths.rowsFile(shard.id), "utf8").trim().split("\n").map((l) => (JSON.parse(l) as { id: string }).id)
      expect(ids).toHaveLength(3)
      yield* ctx.record({ _tag: "SubmitIntent", shard: shard.id, submission: 1, at: 0 })
      yield* ctx.record({ _tag: "Staged", shard: shard.id, submission: 1, inputRef: "file-1" })
      yield* ctx.record({ _tag: "Created", shard: shard.id, submission: 1, batchId: "batch-1", adopted: false })
      yield* ctx.record({ _tag: "Terminal", shard: shard.id, batchId: "batch-1", status: "completed", rawStatus: "completed", counts: info.counts, errors: [] })

      const collecting = yield* Effect.fork(Collector.collect(ctx, outputs, shard))
      yield* Deferred.await(reading)
      // Mid-read: another holder of the outputs gets them, and nothing of this shard is in them.
      const locked = yield* outputs.exclusive(Effect.sync(() => statSync(paths.results).size))
      expect(locked).toBe(0)
      expect(existsSync(paths.collectingFile(shard.id))).toBe(true)
      expect(events.some((e) => e._tag === "Collected")).toBe(false)

      yield* Deferred.succeed(more, undefined)
      yield* Fiber.join(collecting)
      const results = readFileSync(paths.results, "utf8").trim().split("\n").map((l) => JSON.parse(l) as { customId: string; raw: unknown })
      expect(results.map((r) => r.customId)).toEqual(ids)
      // Each answer as the provider sent it.
      expect(results.map((r) => r.raw)).toEqual(ids.map((id) => answer(id).raw))
      const collected = events.find((e) => e._tag === "Collected")
      expect(collected).toMatchObject({ succeeded: 3, offsets: { results: statSync(paths.results).size } })
      expect(readFileSync(paths.outputs, "utf8").trim().split("\n")).toHaveLength(3)
      expect(existsSync(paths.collectingFile(shard.id))).toBe(false)
    }).pipe(Effect.provide(NodeContext.layer))
  )
})
