import { FileSystem } from "@effect/platform"
import { Effect, Stream } from "effect"

/** The non-empty lines of a file, streamed. */
export const lines = (path: string) =>
  Stream.unwrap(
    Effect.map(FileSystem.FileSystem, (fs) =>
      fs.stream(path, { chunkSize: 256 * 1024 }).pipe(
        Stream.decodeText(),
        Stream.splitLines,
        Stream.filter((l) => l.length > 0)
      )
    )
  )
