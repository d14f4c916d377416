import * as FileSystem from "@effect/platform/FileSystem"
import { Effect, Stream } from "effect"

/** The non-empty lines of a file (or of a byte range of it), streamed. */
export const lines = (path: string, range?: { readonly offset: number; readonly bytesToRead: number }) =>
  Stream.unwrap(
    Effect.map(FileSystem.FileSystem, (fs) =>
      fs.stream(path, { chunkSize: 256 * 1024, ...(range === undefined ? {} : { offset: range.offset, bytesToRead: range.bytesToRead }) }).pipe(
        Stream.decodeText(),
        Stream.splitLines,
        Stream.filter((l) => l.length > 0)
      )
    )
  )
