import { Path } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Pipeline, Prompt, Source } from "@sluice/core"
import type { BatchProvider } from "@sluice/providers"
import { OpenAiBatch } from "@sluice/providers"
import { Cause, Duration, Effect, Schema } from "effect"
import { createHash } from "node:crypto"
import { existsSync, mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Journal from "../src/Journal.js"
import * as KeyCheck from "../src/KeyCheck.js"
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
  ),
  /** Runs the duplicate-key check after planning, with these bounds. */
  check?: KeyCheck.Bounds
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
    const checked = check === undefined ? undefined : yield* Effect.exit(KeyCheck.check(ctx, outputs, check))
    return { events, handed, paths, state, checked }
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
      const state = yield* loadState(first.paths).pipe(Effect.provide(NodeContext.layer))
      // Pretend the source ended early last time and has since grown by two rows.
      state.planComplete = false
      const second = yield* planInto(rows(8), { maxRequests: 3, maxBytes: 1_000_000 }, state, first.paths.root)
      expect(planned(second.events).map((s) => [s.shard, s.requests])).toEqual([["label-00003", 2]])
      const ids = readFileSync(second.paths.rowsFile("label-00003"), "utf8").trim().split("\n").map((l) => JSON.parse(l).key)
      expect(ids).toEqual(["r7", "r8"])
    })
  )

  describe("duplicate keys", () => {
    // r3 again with its request: a duplicate; r7 again with another request: a conflict.
    const data = [...rows(10), { id: "r3", text: "x".repeat(10) }, { id: "r7", text: "something else" }]
    const lines = (file: string) => (existsSync(file) ? readFileSync(file, "utf8").trim().split("\n").filter((l) => l !== "") : [])

    /** What a plan leaves to submit, shard by shard, and what it lists as failed. */
    const outcome = (r: { paths: RunDir.RunPaths; state: RunState.RunState }) => {
      const shards = [...r.state.shards.values()]
      const keys = shards.flatMap((s) => lines(r.paths.rowsFile(s.id)).map((l) => JSON.parse(l).key as string))
      for (const s of shards) {
        // The journal's count, bytes and hash are those of the files as they are now.
        const text = existsSync(r.paths.shardFile(s.id)) ? readFileSync(r.paths.shardFile(s.id), "utf8") : ""
        expect(lines(r.paths.shardFile(s.id)).length).toBe(s.requests)
        expect(Buffer.byteLength(text)).toBe(s.bytes)
        expect(createHash("sha256").update(text).digest("hex")).toBe(s.sha256)
        expect(lines(r.paths.rowsFile(s.id)).length).toBe(s.requests)
      }
      const failures = lines(r.paths.failures).map((l) => JSON.parse(l))
      return { keys: keys.sort(), failures: failures.map((f) => [f.key, f.class, f.location, f.shard]) }
    }

    it.effect("are found across shards: the outcome is the same at every shard size, the sort spilling or not", () =>
      Effect.gen(function* () {
        const outcomes = []
        for (const [maxRequests, bounds] of [[3, { maxRunRecords: 2, maxGroup: 1 }], [100, {}]] as const) {
          const r = yield* planInto(data, { maxRequests, maxBytes: 1_000_000 }, RunState.empty(), undefined, undefined, bounds)
          expect(r.checked?._tag).toBe("Success")
          expect(r.state.keysChecked).toBe(true)
          expect(r.state.duplicateRows).toBe(1)
          expect(r.state.invalidRows).toBe(2)
          expect(r.state.rowsPlanned).toBe(9)
          expect(existsSync(r.paths.keys)).toBe(false)
          outcomes.push(outcome(r))
        }
        expect(outcomes[0]).toEqual(outcomes[1])
        expect(outcomes[0]!.keys).toEqual(["r1", "r10", "r2", "r3", "r4", "r5", "r6", "r8", "r9"])
        expect(outcomes[0]!.failures).toEqual([
          ["r7", "duplicate_key", "array:7", null],
          ["r3", "duplicate", "array:11", null],
          ["r7", "duplicate_key", "array:12", null]
        ])
      })
    )

    it.effect("the failures name the other row; the rewrites are journaled with their counts and replay to the same state", () =>
      Effect.gen(function* () {
        const r = yield* planInto(data, { maxRequests: 3, maxBytes: 1_000_000 }, RunState.empty(), undefined, undefined, {})
        const failures = lines(r.paths.failures).map((l) => JSON.parse(l))
        expect(failures[0].message).toContain("array:12")
        expect(failures[1].message).toContain("array:3")
        expect(failures[2].message).toContain("array:7")
        // r7 sits in shard 3 (r7, r8, r9), r3's repeat and r7's in shard 4 (r10 and them): both rewritten.
        const rewritten = r.events.filter((e) => e._tag === "ShardRewritten")
        expect(rewritten.map((e) => [e.shard, e.requests, e.duplicates, e.conflicts])).toEqual([
          ["label-00003", 2, 0, 1],
          ["label-00004", 1, 1, 1]
        ])
        expect(r.events.at(-1)).toMatchObject({ _tag: "KeysChecked", duplicates: 1, conflicts: 2 })
        const replayed = yield* loadState(r.paths).pipe(Effect.provide(NodeContext.layer))
        expect([...replayed.shards.values()]).toEqual([...r.state.shards.values()])
        expect(replayed.offsets).toEqual(r.state.offsets)
      })
    )

    it.effect("children of a fan-out before the stage are checked across shards too", () =>
      Effect.gen(function* () {
        // Each row fans out into one request per word, keyed `<row key>.<index>`; "b" comes back
        // at the end with the same first word and another second one.
        const words = [{ id: "a", text: "one two" }, { id: "b", text: "three four" }, { id: "c", text: "five" }, { id: "d", text: "six" }, { id: "b", text: "three other" }]
        const fanOut = Pipeline.make("plan").pipe(
          Pipeline.from(Source.array(words), { key: (r) => r.id, onInvalid: "skip" }),
          Pipeline.flatMap((r: { id: string; text: string }) => r.text.split(" ")),
          Pipeline.batch("label", { provider: "test", model: "m", prompt: (w) => Prompt.chat({ user: w }) })
        )
        const outcomes = []
        for (const maxRequests of [2, 100]) {
          const r = yield* planInto(words, { maxRequests, maxBytes: 1_000_000 }, RunState.empty(), undefined, fanOut, {})
          expect(r.checked?._tag).toBe("Success")
          outcomes.push(outcome(r))
        }
        expect(outcomes[0]).toEqual(outcomes[1])
        expect(outcomes[0]!.keys).toEqual(["a.0", "a.1", "b.0", "c.0", "d.0"])
        expect(outcomes[0]!.failures).toEqual([
          ["b.1", "duplicate_key", "array:2", null],
          ["b.0", "duplicate", "array:5", null],
          ["b.1", "duplicate_key", "array:5", null]
        ])
      })
    )

    it.effect("with onInvalid \"fail\", conflicting keys refuse the plan, naming every row; the next run plans again", () =>
      Effect.gen(function* () {
        const failing = Pipeline.make("plan").pipe(
          Pipeline.from(Source.array(data), { key: (r) => r.id }),
          Pipeline.batch("label", { provider: "test", model: "m", prompt: (r) => Prompt.chat({ user: r.text }) })
        )
        const r = yield* planInto(data, { maxRequests: 3, maxBytes: 1_000_000 }, RunState.empty(), undefined, failing, {})
        expect(r.checked?._tag).toBe("Failure")
        const error = r.checked?._tag === "Failure" ? Cause.squash(r.checked.cause) : undefined
        expect(error).toBeInstanceOf(KeyCheck.ConflictingKeys)
        expect((error as Error).message).toContain("array:7")
        expect((error as Error).message).toContain("array:12")
        expect(lines(r.paths.duplicateKeys).map((l) => JSON.parse(l))).toEqual([
          { key: "r7", location: "array:7", rows: 2, another: "array:12" },
          { key: "r7", location: "array:12", rows: 2, another: "array:7" }
        ])
        expect(r.events.at(-1)).toMatchObject({ _tag: "PlanRefused", rows: 2, keys: 1 })
        // Nothing was rewritten, and the refused plan is void: a replay starts from nothing.
        expect(r.events.some((e) => e._tag === "ShardRewritten")).toBe(false)
        const replayed = yield* loadState(r.paths).pipe(Effect.provide(NodeContext.layer))
        expect(replayed.shards.size).toBe(0)
        expect(replayed.planComplete).toBe(false)
        expect(replayed.sourceOffset).toBe(0)
      })
    )
  })

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
      const state = yield* loadState(first.paths).pipe(Effect.provide(NodeContext.layer))
      // A gap in the numbers (as an unused number leaves): the next shard is not the count + 1.
      state.shards.delete("label-00001")
      state.planComplete = false
      const second = yield* planInto(rows(8), { maxRequests: 3, maxBytes: 1_000_000 }, state, first.paths.root)
      expect(planned(second.events).map((s) => s.shard)).toEqual(["label-00003"])
    })
  )
})
