/**
 * Sources: where a pipeline's rows come from. A source is a stream of items, each either a
 * decoded row or an invalid one that names its location, so that bad input is reported with
 * file and line instead of crashing the run or silently disappearing.
 */
import type { FileSystem } from "@effect/platform"
import { Schema } from "effect"
import type { Stream } from "effect"

export interface SourceRow<Row> {
  readonly _tag: "Row"
  readonly row: Row
  /** Where the row came from, e.g. "data/reviews.jsonl:12". */
  readonly location: string
}

export interface SourceInvalid {
  readonly _tag: "Invalid"
  readonly location: string
  readonly message: string
}

export type SourceItem<Row> = SourceRow<Row> | SourceInvalid

/** Failure to read a source at all (missing file, unreadable). Invalid rows are items, not errors. */
export class SourceError extends Schema.TaggedError<SourceError>()("SourceError", {
  source: Schema.String,
  description: Schema.String
}) {
  override get message(): string {
    return `source ${this.source}: ${this.description}`
  }
}

export interface Source<Row> {
  /** A human-readable name, e.g. "jsonl:data/reviews.jsonl". */
  readonly name: string
  /** Rows in a stable order: resuming a run re-reads the source and skips what was planned. */
  readonly rows: Stream.Stream<SourceItem<Row>, SourceError, FileSystem.FileSystem>
}
