/**
 * The source files a run planned from, as they were then, and whether they still are.
 * A finished run re-run with the same command continues its run directory and plans nothing
 * more: without this, rows appended to the source afterwards would be left out in silence.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import { Effect, Option } from "effect"
import type { SourceFile } from "./JournalEvent.js"

/** A recorded source file that is no longer as planning found it: its size then and now. */
export interface SourceChange {
  readonly path: string
  readonly plannedBytes: number
  readonly bytes: number
}

const look = (fs: FileSystem.FileSystem, path: string): Effect.Effect<Option.Option<{ size: number; mtimeMs: number | null }>> =>
  fs.stat(path).pipe(
    Effect.map((info) => Option.some({ size: Number(info.size), mtimeMs: Option.getOrNull(Option.map(info.mtime, (d) => d.getTime())) })),
    Effect.orElseSucceed(() => Option.none())
  )

/**
 * The files as they are before planning reads them. Taken before reading, so that rows
 * appended while planning runs count as a change (a warning too many, never one too few).
 */
export const record = (paths: ReadonlyArray<string>) =>
  Effect.flatMap(FileSystem.FileSystem, (fs) =>
    Effect.forEach(paths, (path) => Effect.map(look(fs, path), Option.map((found): SourceFile => ({ path, ...found })))).pipe(
      Effect.map((found) => found.flatMap((o) => (Option.isSome(o) ? [o.value] : [])))
    )
  )

/**
 * The recorded files whose size or modification time differ now. A file that is gone is not a
 * change: its planned rows are in the run directory, and nothing was added to it.
 */
export const changes = (recorded: ReadonlyArray<SourceFile>) =>
  Effect.flatMap(FileSystem.FileSystem, (fs) =>
    Effect.forEach(recorded, (file) =>
      Effect.map(look(fs, file.path), (now): ReadonlyArray<SourceChange> =>
        Option.isNone(now) || (now.value.size === file.size && now.value.mtimeMs === file.mtimeMs)
          ? []
          : [{ path: file.path, plannedBytes: file.size, bytes: now.value.size }]
      )
    ).pipe(Effect.map((all) => all.flat()))
  )
