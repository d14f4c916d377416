/**
 * Sinks: where a pipeline's results go. Writes are committed in batches; a commit returns a
 * checkpoint that the runner journals, and a sink opened with the last checkpoint discards
 * anything written after it — so a crash mid-write never leaves a row twice.
 */
import type { FileSystem } from "@effect/platform"
import { Schema } from "effect"
import type { Effect, Scope } from "effect"

/** What a sink receives for each row. */
export interface SinkRecord<In, Out> {
  /** The row's stable key. */
  readonly key: string
  readonly customId: string
  readonly input: In
  readonly output: Out
}

/** Opaque to the runner; a file sink stores its committed byte length. */
export const SinkCheckpoint = Schema.Struct({ offset: Schema.Number })
export type SinkCheckpoint = typeof SinkCheckpoint.Type

export class SinkError extends Schema.TaggedError<SinkError>()("SinkError", {
  sink: Schema.String,
  description: Schema.String
}) {
  override get message(): string {
    return `sink ${this.sink}: ${this.description}`
  }
}

export interface SinkWriter<A> {
  readonly write: (records: ReadonlyArray<A>) => Effect.Effect<void, SinkError>
  /** Makes everything written so far durable and returns the checkpoint to journal. */
  readonly commit: Effect.Effect<SinkCheckpoint, SinkError>
}

export interface Sink<A> {
  readonly name: string
  /**
   * Opens the sink for appending. `resume` is the last journaled checkpoint (undefined for a
   * fresh run): everything after it is discarded.
   */
  readonly open: (
    resume: SinkCheckpoint | undefined
  ) => Effect.Effect<SinkWriter<A>, SinkError, FileSystem.FileSystem | Scope.Scope>
}
