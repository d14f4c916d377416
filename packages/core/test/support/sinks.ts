/** Test helpers shared by the sink tests (core's file sinks, the runner's PostgreSQL sink). */
import { Effect } from "effect"
import type { SinkWriter } from "../../src/Sink.js"

/** Writes through `refuse` as the runner does: only accepted records are written; returns the reasons. */
export const writeAccepted = <R>(w: SinkWriter<R>, records: ReadonlyArray<R>) =>
  Effect.gen(function*() {
    const refused: Array<string> = []
    const accepted: Array<R> = []
    for (const r of records) {
      const reason = w.refuse?.(r)
      if (reason === undefined) accepted.push(r)
      else refused.push(reason)
    }
    yield* w.write(accepted)
    yield* w.commit
    return refused
  })
