/**
 * The run's append-only outputs — results.jsonl, failures.jsonl and the pipeline's sink —
 * written under one lock and committed together: a commit fsyncs all three and returns their
 * lengths, which the caller journals. Opening truncates each to its journaled length, so rows
 * written after the last commit (a crash mid-write) are discarded and written again once.
 */
import type { FileSystem } from "@effect/platform"
import { Sink } from "@sluice/core"
import type { SinkWriter } from "@sluice/core"
import { Effect } from "effect"
import type { Scope } from "effect"
import * as LineFile from "./internal/LineFile.js"
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
}

export interface Outputs {
  readonly results: LineFile.LineFile
  readonly failures: LineFile.LineFile
  readonly sink: SinkWriter<any>
  /** Runs `f` holding the outputs exclusively: commits must not interleave. */
  readonly exclusive: <A, E, R>(f: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  readonly commit: Effect.Effect<Offsets, unknown>
  readonly failure: (record: FailureRecord) => Effect.Effect<void, unknown>
}

export const open = (ctx: RunContext): Effect.Effect<Outputs, unknown, FileSystem.FileSystem | Scope.Scope> =>
  Effect.gen(function* () {
    const { offsets } = ctx.state
    const results = yield* LineFile.open(ctx.paths.results, offsets.results)
    const failures = yield* LineFile.open(ctx.paths.failures, offsets.failures)
    // A pipeline without a sink of its own writes to outputs.jsonl in the run directory,
    // which `Records.outputs` streams back to the caller.
    const target = ctx.pipeline.sink ?? Sink.jsonl(ctx.paths.outputs)
    const sink = yield* target.open(offsets.sink === null ? undefined : { offset: offsets.sink })
    const lock = yield* Effect.makeSemaphore(1)
    const commit = Effect.gen(function* () {
      const r = yield* results.sync
      const f = yield* failures.sync
      const s = (yield* sink.commit).offset
      return { results: r, failures: f, sink: s }
    })
    return {
      results,
      failures,
      sink,
      exclusive: (f) => lock.withPermits(1)(f),
      commit,
      failure: (record) => failures.line(JSON.stringify(record))
    }
  })
