import { Path } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Pipeline, Prompt, Source } from "@sluice/core"
import type { BatchProvider } from "@sluice/providers"
import { OpenAiBatch } from "@sluice/providers"
import { Duration, Effect, Schema } from "effect"
import { createHash } from "node:crypto"
import { mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Journal from "../src/Journal.js"
import type { JournalEvent } from "../src/JournalEvent.js"
import * as Outputs from "../src/Outputs.js"
import * as Planner from "../src/Planner.js"
import * as Pricing from "../src/Pricing.js"
import * as ResponseCache from "../src/ResponseCache.js"
import type { RunContext, StageRuntime } from "../src/RunContext.js"
import * as RunDir from "../src/RunDir.js"
import { loadState } from "../src/Runner.js"
import * as RunState from "../src/RunState.js"

const Row = Schema.Struct({ id: Schema.String, text: Schema.String })

const rows = (n: number, size = 10) => Array.from({ length: n }, (_, i) => ({ id: `r${i + 1}`, text: "x".repeat(size) }))

const provider = (maxRequests: number, maxBytes: number): BatchProvider =>
  ({
    name: "test",
    limits: { maxRequests, maxBytes, oneModelPerShard: true },
    capabilities: { cancel: true, list: true, metadata: true, partialResults: true },
    encode: OpenAiBatch.encode
  }) as unknown as BatchProvider

/** Plans `data` into a fresh run directory and returns the journaled events and the paths. */
const planInto = (
  data: ReadonlyArray<{ id: string; text: string }>,
  limits: { maxRequests: number; maxBytes: number },
  state: RunState.RunState = RunState.empty(),
  root = mkdtempSync(join(tmpdir(), "sluice-plan-")),
  pipeline: Pipeline.Pipeline<any, any, any> = Pipeline.make("plan").pipe(
    Pipeline.from(Source.array(data), { key: (r) => r.id, onInvalid: "skip" }),
    Pipeline.batch("label", { provider: "test", model: "m", prompt: (r) => Prompt.chat({ user: r.text }) })
  )
) =>
  Effect.gen(function* () {
    const path = yield* Path.Path
    const paths = RunDir.paths(root, path)
    yield* RunDir.writeManifest(paths, {
      version: 1, runId: "r", pipeline: "plan", fingerprint: "f", pipelineFile: null, stages: [], providers: {}, sink: null,
      createdAt: new Date().toISOString()
    })
    const journal = yield* Journal.open(paths.journal)
    const stage: StageRuntime = {
      index: 0,
      stage: pipeline.stages[0]!,
      provider: provider(limits.maxRequests, limits.maxBytes),
      before: pipeline.links[0] ?? [],
      after: [],
      next: null,
      cacheNamespace: "test"
    }
    const events: Array<JournalEvent> = []
    const ctx: RunContext = {
      runId: "r",
      paths,
      pipeline,
      stages: [stage],
      stageOf: () => stage,
      cache: ResponseCache.disabled,
      state,
      settings: { concurrency: 1, shardSize: 1_000_000, shardBytes: 1_000_000_000, pollInterval: Duration.seconds(1), outputFileWait: Duration.minutes(10), detach: false },
      prices: Pricing.builtin,
      createLock: yield* Effect.makeSemaphore(1),
      record: (e) => journal.append(e).pipe(Effect.map(() => void (events.push(e), RunState.apply(state, e))))
    }
    const outputs = yield* Outputs.open(ctx)
    const handed: Array<string> = []
    yield* Planner.plan(ctx, outputs, (id) => Effect.sync(() => void handed.push(id)))
    return { events, handed, paths, state }
  }).pipe(Effect.scoped, Effect.provide(NodeContext.layer))

const planned = (events: ReadonlyArray<JournalEvent>) =>
  events.filter((e): e is Extract<JournalEvent, { _tag: "ShardPlanned" }> => e._tag === "ShardPlanned")

describe("Planner", () => {
  it.effect("packs shards to the request-count limit", () =>
    Effect.gen(function* () {
      const { events, handed, paths } = yield* planInto(rows(10), { maxRequests: 3, maxBytes: 1_000_000 })
      const shards = planned(events)
      expect(shards.map((s) => s.requests)).toEqual([3, 3, 3, 1])
      expect(handed).toEqual(shards.map((s) => s.shard))
      for (const s of shards) {
        const text = readFileSync(paths.shardFile(s.shard), "utf8")
        expect(text.trim().split("\n").length).toBe(s.requests)
        expect(Buffer.byteLength(text)).toBe(s.bytes)
        expect(createHash("sha256").update(text).digest("hex")).toBe(s.sha256)
        expect(readFileSync(paths.rowsFile(s.shard), "utf8").trim().split("\n").length).toBe(s.requests)
      }
      expect(events.at(-1)).toMatchObject({ _tag: "PlanComplete", sourceOffset: 10 })
    })
  )

  it.effect("packs shards to the byte limit, never over it, and exactly up to it", () =>
    Effect.gen(function* () {
      const line = OpenAiBatch.encode({ _tag: "chat", model: "m", messages: [{ role: "user", content: "x".repeat(10) }], params: {} }, "label-r1-0000000000000000")
      const lineBytes = Buffer.byteLength(line) + 1
      // Exactly two lines fit.
      const { events } = yield* planInto(rows(5), { maxRequests: 100, maxBytes: lineBytes * 2 })
      const shards = planned(events)
      expect(shards.map((s) => s.requests)).toEqual([2, 2, 1])
      for (const s of shards) expect(s.bytes).toBeLessThanOrEqual(lineBytes * 2)
      expect(shards[0]!.bytes).toBe(lineBytes * 2)
    })
  )

  it.effect("a request larger than any shard is a failed row naming its custom_id, not a rejected file", () =>
    Effect.gen(function* () {
      const data = [...rows(2), { id: "huge", text: "y".repeat(5000) }, ...rows(2).map((r) => ({ ...r, id: r.id + "b" }))]
      const { events, paths, state } = yield* planInto(data, { maxRequests: 100, maxBytes: 2000 })
      const shards = planned(events)
      expect(shards.reduce((a, s) => a + s.requests, 0)).toBe(4)
      const failures = readFileSync(paths.failures, "utf8").trim().split("\n").map((l) => JSON.parse(l))
      expect(failures).toHaveLength(1)
      expect(failures[0]).toMatchObject({ key: "huge", code: "oversize", class: "permanent", location: "array:3" })
      expect(failures[0].custom_id).toMatch(/^label-huge-[0-9a-f]{16}$/)
      expect(state.invalidRows).toBe(1)
    })
  )

  it.effect("resumes planning after the rows already planned, with the next shard number", () =>
    Effect.gen(function* () {
      const first = yield* planInto(rows(6), { maxRequests: 3, maxBytes: 1_000_000 })
      // A new process: the state replayed from the first journal, but the source has grown.
      const state = yield* loadState(first.paths.journal).pipe(Effect.provide(NodeContext.layer))
      // Pretend the source ended early last time and has since grown by two rows.
      state.planComplete = false
      const second = yield* planInto(rows(8), { maxRequests: 3, maxBytes: 1_000_000 }, state, first.paths.root)
      expect(planned(second.events).map((s) => [s.shard, s.requests])).toEqual([["label-00003", 2]])
      const ids = readFileSync(second.paths.rowsFile("label-00003"), "utf8").trim().split("\n").map((l) => JSON.parse(l).key)
      expect(ids).toEqual(["r7", "r8"])
    })
  )

  it.effect("a duplicate row key with an identical request fails the plan, naming the row", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(planInto([...rows(2), rows(1)[0]!], { maxRequests: 10, maxBytes: 1_000_000 }))
      expect(String((error as Error).message)).toContain("array:3")
    })
  )

  it.effect("a fan-out too large for any shard fails its rows without using a shard number; rows of one item stay in one shard", () =>
    Effect.gen(function* () {
      // Each row fans out into as many requests as its text has words.
      const data = [
        { id: "a", text: "one two" },
        { id: "b", text: "1 2 3 4 5" },
        { id: "c", text: "6 7 8 9 10" },
        { id: "d", text: "x y" },
        { id: "e", text: "z" }
      ]
      const fanOut = Pipeline.make("plan").pipe(
        Pipeline.from(Source.array(data), { key: (r) => r.id }),
        Pipeline.flatMap((r: { id: string; text: string }) => r.text.split(" ")),
        Pipeline.batch("label", { provider: "test", model: "m", prompt: (w) => Prompt.chat({ user: w }) })
      )
      const { events, paths, state } = yield* planInto(data, { maxRequests: 3, maxBytes: 1_000_000 }, RunState.empty(), undefined, fanOut)
      // a (2) fits; b and c (5 each) fit no shard; d (2) does not fit after a: a new shard; e joins it.
      expect(planned(events).map((s) => [s.shard, s.requests])).toEqual([["label-00001", 2], ["label-00002", 3]])
      const keys = readFileSync(paths.rowsFile("label-00002"), "utf8").trim().split("\n").map((l) => JSON.parse(l).key)
      expect(keys).toEqual(["d.0", "d.1", "e.0"])
      const failures = readFileSync(paths.failures, "utf8").trim().split("\n").map((l) => JSON.parse(l))
      expect(failures.map((f) => f.code)).toEqual(Array(10).fill("fanout_too_large"))
      expect(state.invalidRows).toBe(10)
    })
  )

  it.effect("a resume numbers new shards after the highest journaled one", () =>
    Effect.gen(function* () {
      const first = yield* planInto(rows(6), { maxRequests: 3, maxBytes: 1_000_000 })
      const state = yield* loadState(first.paths.journal).pipe(Effect.provide(NodeContext.layer))
      // A gap in the numbers (as an unused number leaves): the next shard is not the count + 1.
      state.shards.delete("label-00001")
      state.planComplete = false
      const second = yield* planInto(rows(8), { maxRequests: 3, maxBytes: 1_000_000 }, state, first.paths.root)
      expect(planned(second.events).map((s) => s.shard)).toEqual(["label-00003"])
    })
  )
})
