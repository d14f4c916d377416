/**
 * Request bodies streamed from a shard file on disk. Read in large pieces: each piece costs an
 * event-loop turn, and while the loop is busy planning or collecting, an upload sent in 64 KiB
 * pieces (a file-backed Blob's) waits behind that work ~1,500 times for a 94 MB shard.
 */
import * as HttpBody from "@effect/platform/HttpBody"
import { Stream } from "effect"
import { randomBytes } from "node:crypto"
import * as NodeFs from "node:fs"

/** How much of a shard file each read takes. */
export const uploadChunkBytes = 4 * 1024 * 1024

/** A shard file's bytes, opened only when the body is sent (so every attempt reads afresh). */
export const fileStream = (path: string): Stream.Stream<Uint8Array, unknown> =>
  Stream.suspend(() =>
    Stream.fromAsyncIterable(
      NodeFs.createReadStream(path, { highWaterMark: uploadChunkBytes }) as AsyncIterable<Uint8Array>,
      (cause) => cause
    )
  )

// A multipart name or filename as browsers (and undici's FormData) escape it.
const escapeName = (s: string): string => s.replace(/\n/g, "%0A").replace(/\r/g, "%0D").replace(/"/g, "%22")
// Field values with their line breaks normalised to CRLF, as FormData serialises them.
const normaliseValue = (s: string): string => s.replace(/\r(?!\n)|(?<!\r)\n/g, "\r\n")

export interface FilePart {
  readonly field: string
  readonly filename: string
  readonly contentType: string
  readonly path: string
  /** The file's size in bytes (the body's content-length is computed from it). */
  readonly size: number
}

/**
 * A multipart/form-data body of text fields and one file streamed from disk, with its
 * content-length: the same bytes a FormData with a file-backed Blob sends, in larger pieces.
 */
export const multipartFile = (fields: ReadonlyArray<readonly [string, string]>, file: FilePart): HttpBody.HttpBody => {
  const boundary = `----sluice${randomBytes(16).toString("hex")}`
  let head = ""
  for (const [name, value] of fields) {
    head += `--${boundary}\r\nContent-Disposition: form-data; name="${escapeName(name)}"\r\n\r\n${normaliseValue(value)}\r\n`
  }
  head += `--${boundary}\r\nContent-Disposition: form-data; name="${escapeName(file.field)}"; filename="${escapeName(file.filename)}"\r\n` +
    `Content-Type: ${file.contentType}\r\n\r\n`
  const prefix = Buffer.from(head)
  const suffix = Buffer.from(`\r\n--${boundary}--\r\n`)
  return HttpBody.stream(
    Stream.concat(Stream.make(prefix as Uint8Array), fileStream(file.path)).pipe(Stream.concat(Stream.make(suffix as Uint8Array))),
    `multipart/form-data; boundary=${boundary}`,
    prefix.length + file.size + suffix.length
  )
}
