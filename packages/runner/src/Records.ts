/**
 * A run's outputs and failures as streams, read from its directory — for callers that
 * consume results in code instead of through a file sink. Only committed lines are read, so
 * a run still going on in another process is safe to read.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import type { Pipeline } from "@sluice/core"
import { Effect, Stream } from "effect"
import { lines } from "./internal/lines.js"
import type { FailureRecord } from "./Outputs.js"
import { superseded } from "./Retry.js"
import * as RunDir from "./RunDir.js"
import { loadState } from "./JournalState.js"

/** One succeeded row: the record a sink receives. */
export interface OutputRecord<In, Out> {
  readonly key: string
  readonly customId: string
  readonly input: In
  readonly output: Out
  /** In a multi-stage pipeline: the custom_ids of the upstream requests, first stage first. */
  readonly lineage?: ReadonlyArray<string>
}

/** Streams the committed lines of `file` up to `limit` bytes, with their byte positions. */
const committedLines = (file: string, limit: number) =>
  Stream.unwrap(
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      if (limit === 0 || !(yield* fs.exists(file))) return Stream.empty
      let position = 0
      return lines(file).pipe(
        Stream.map((text) => {
          const at = position
          position += Buffer.byteLength(text) + 1
          return { text, at, end: position }
        }),
        Stream.takeWhile((l) => l.end <= limit)
      )
    })
  )

/**
 * The outputs of a run whose pipeline has no sink of its own (they are kept in the run
 * directory's outputs.jsonl). Pass the pipeline to type the records.
 */
export const outputs = <In, Out>(_pipeline: Pipeline.Pipeline<In, Out> | undefined, runDir: string) =>
  Stream.unwrap(
    Effect.gen(function* () {
      const path = yield* Path.Path
      const paths = RunDir.paths(path.resolve(runDir), path)
      const manifest = yield* RunDir.readManifest(paths)
      if (manifest.sink !== null) {
        return yield* Effect.fail(
          new RunDir.RunDirError({
            path: paths.root,
            description: `the pipeline writes to its own sink (${manifest.sink}); read that, or run a pipeline without Pipeline.to to stream outputs`
          })
        )
      }
      const state = yield* loadState(paths)
      return committedLines(paths.outputs, typeof state.offsets.sink === "number" ? state.offsets.sink : 0).pipe(
        Stream.map(({ text }) => {
          const r = JSON.parse(text) as { key: string; custom_id: string; lineage?: ReadonlyArray<string>; input: In; output: Out }
          return (
            r.lineage === undefined
              ? { key: r.key, customId: r.custom_id, input: r.input, output: r.output }
              : { key: r.key, customId: r.custom_id, lineage: r.lineage, input: r.input, output: r.output }
          ) satisfies OutputRecord<In, Out>
        })
      )
    })
  )

/** Rows that ended failed, without those a later `retry` resubmitted. */
export const failures = (runDir: string) =>
  Stream.unwrap(
    Effect.gen(function* () {
      const path = yield* Path.Path
      const paths = RunDir.paths(path.resolve(runDir), path)
      const state = yield* loadState(paths)
      return committedLines(paths.failures, state.offsets.failures).pipe(
        Stream.map(({ text, at }) => ({ record: JSON.parse(text) as FailureRecord, at })),
        Stream.filter(({ record, at }) => !superseded(state, at, record)),
        Stream.map(({ record }) => record)
      )
    })
  )
