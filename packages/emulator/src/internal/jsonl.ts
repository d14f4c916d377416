/**
 * Streaming JSONL reading: files are read in 1 MiB chunks and handed out as
 * arrays of lines, so a 200 MB input never sits in memory and the per-line
 * overhead stays a plain loop (one await per chunk, not per line).
 */
import { createReadStream } from "node:fs"

const NEWLINE = 10
const CARRIAGE_RETURN = 13

/** Yields the physical lines of a file in order (blank lines included, "\r\n" handled). */
export async function* readLineChunks(path: string): AsyncGenerator<ReadonlyArray<string>> {
  const stream = createReadStream(path, { highWaterMark: 1 << 20 })
  // Pieces of a line that spans chunks; joined once its newline arrives (no quadratic concat).
  let pending: Array<Buffer> = []
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    const lines: Array<string> = []
    let start = 0
    let newline = chunk.indexOf(NEWLINE, start)
    while (newline !== -1) {
      const piece = chunk.subarray(start, newline)
      const whole = pending.length > 0 ? Buffer.concat([...pending, piece]) : piece
      pending = []
      lines.push(decodeLine(whole))
      start = newline + 1
      newline = chunk.indexOf(NEWLINE, start)
    }
    if (start < chunk.length) pending.push(chunk.subarray(start))
    if (lines.length > 0) yield lines
  }
  if (pending.length > 0) {
    const last = decodeLine(Buffer.concat(pending))
    if (last.length > 0) yield [last]
  }
}

const decodeLine = (bytes: Buffer): string => {
  const end = bytes.length > 0 && bytes[bytes.length - 1] === CARRIAGE_RETURN ? bytes.length - 1 : bytes.length
  return bytes.toString("utf8", 0, end)
}

/** True for lines the emulator skips without counting them as requests. */
export const isBlank = (line: string): boolean => line.trim().length === 0
