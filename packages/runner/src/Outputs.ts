/**
 * The run's append-only outputs — results.jsonl, failures.jsonl, the pipeline's sink and the
 * inboxes of later stages — written under one lock and committed together: a commit fsyncs
 * them all and returns their lengths, which the caller journals. Opening truncates each to its journaled length, so rows
 * written after the last commit (a crash mid-write) are discarded and written again once.
 */
import type { FileSystem } from "@effect/platform"
import { Sink } from "@sluice/core"
import type { SinkWriter } from "@sluice/core"
import { Effect } from "effect"
import type { Scope } from "effect"
import * as LineFile from "./internal/LineFile.js"
import * as PrivateFiles from "./internal/PrivateFiles.js"
import type { Offsets } from "./JournalEvent.js"
import type { RunContext } from "./RunContext.js"

/** One line of failures.jsonl. */
export interface FailureRecord {
  readonly custom_id: string | null
  readonly key: string | null
  readonly shard: string | null
  readonly attempt: number
  readonly class: string
  readonly code: string
  readonly message: string
  readonly location?: string
  /** The answer came from the response cache: `retry` cannot replay the row's request. */
  readonly cached?: boolean
}

export interface Outputs {
  readonly results: LineFile.LineFile
  readonly failures: LineFile.LineFile
  readonly sink: SinkWriter<any>
  /** The inbox of each later stage, by stage name. */
  readonly inbox: ReadonlyMap<string, LineFile.LineFile>
  /** Runs `f` holding the outputs exclusively: commits must not interleave. */
  readonly exclusive: <A, E, R>(f: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /**
   * Held by a collection from the start of its reading (download, parse) until it holds the
   * outputs (Collector.ts): one shard is read while another is written, never more.
   */
  readonly reading: Effect.Semaphore
  readonly commit: Effect.Effect<Offsets, unknown>
  readonly failure: (record: FailureRecord) => Effect.Effect<void, unknown>
}

export const open = (ctx: RunContext): Effect.Effect<Outputs, unknown, FileSystem.FileSystem | Scope.Scope> =>
  Effect.gen(function* () {
    const { offsets } = ctx.state
    const results = yield* LineFile.open(ctx.paths.results, offsets.results)
    const failures = yield* LineFile.open(ctx.paths.failures, offsets.failures)
    // A pipeline without a sink of its own writes to outputs.jsonl in the run directory,
    // which `Records.outputs` streams back to the caller. Created private first: the sink
    // keeps the mode of a file that exists.
    if (ctx.pipeline.sink === undefined) yield* PrivateFiles.touch(ctx.paths.outputs)
    const target = ctx.pipeline.sink ?? Sink.jsonl(ctx.paths.outputs)
    const sink = yield* target.open(
      offsets.sink === null ? undefined : typeof offsets.sink === "number" ? { offset: offsets.sink } : offsets.sink
    )
    const inbox = new Map<string, LineFile.LineFile>()
    if (ctx.stages.length > 1) {
      yield* PrivateFiles.makeDirectory(ctx.paths.stages)
      for (const s of ctx.stages.slice(1)) {
        inbox.set(s.stage.name, yield* LineFile.open(ctx.paths.inbox(s.stage.name), offsets.inbox?.[s.stage.name] ?? 0))
      }
    }
    const lock = yield* Effect.makeSemaphore(1)
    const commit = Effect.gen(function* () {
      const r = yield* results.sync
      const f = yield* failures.sync
      const checkpoint = yield* sink.commit
      // A plain offset unless the sink has parts (Sink.all).
      const s = checkpoint.parts === undefined ? checkpoint.offset : checkpoint
      if (inbox.size === 0) return { results: r, failures: f, sink: s }
      const lengths: Record<string, number> = {}
      for (const [stage, file] of inbox) lengths[stage] = yield* file.sync
      return { results: r, failures: f, sink: s, inbox: lengths }
    })
    return {
      results,
      failures,
      sink,
      inbox,
      exclusive: (f) => lock.withPermits(1)(f),
      reading: yield* Effect.makeSemaphore(1),
      commit,
      failure: (record) => failures.line(JSON.stringify(record))
    }
  })
