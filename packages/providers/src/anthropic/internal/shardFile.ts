/**
 * Anthropic's shard files, read from disk: the create body `{"requests":[line,line,…]}`
 * streamed from a shard's request lines (no upload step: requests travel inline), and the
 * custom_ids a shard holds (to recognise an orphan batch by its results).
 */
import * as NodeFs from "node:fs"
import * as NodeReadline from "node:readline"
import { uploadChunkBytes } from "../../internal/upload.js"
import { asRecord } from "./codec.js"

const NEWLINE = 10
const CARRIAGE_RETURN = 13
const BODY_PREFIX = Buffer.from('{"requests":[')
const BODY_SUFFIX = Buffer.from("]}")
const COMMA = Buffer.from(",")

const isBlankLine = (line: Buffer): boolean => {
  for (let i = 0; i < line.length; i++) {
    const b = line[i]
    if (b !== 32 && b !== 9 && b !== 13 && b !== 10) return false
  }
  return true
}

/**
 * The create body `{"requests":[line,line,…]}` as chunks read from a shard file (one request
 * per line; blank lines skipped, "\r\n" handled). `stats.lines` counts the requests.
 */
export async function* requestBody(path: string, stats: { lines: number } = { lines: 0 }): AsyncGenerator<Uint8Array> {
  yield BODY_PREFIX
  let pending: Array<Buffer> = []
  const emit = (line: Buffer, out: Array<Buffer>) => {
    const end = line.length > 0 && line[line.length - 1] === CARRIAGE_RETURN ? line.length - 1 : line.length
    const trimmed = end === line.length ? line : line.subarray(0, end)
    if (isBlankLine(trimmed)) return
    if (stats.lines > 0) out.push(COMMA)
    stats.lines++
    out.push(trimmed)
  }
  for await (const chunk of NodeFs.createReadStream(path, { highWaterMark: uploadChunkBytes }) as AsyncIterable<Buffer>) {
    const out: Array<Buffer> = []
    let start = 0
    let newline = chunk.indexOf(NEWLINE, start)
    while (newline !== -1) {
      const piece = chunk.subarray(start, newline)
      emit(pending.length > 0 ? Buffer.concat([...pending, piece]) : piece, out)
      pending = []
      start = newline + 1
      newline = chunk.indexOf(NEWLINE, start)
    }
    if (start < chunk.length) pending.push(chunk.subarray(start))
    if (out.length > 0) yield Buffer.concat(out)
  }
  if (pending.length > 0) {
    const out: Array<Buffer> = []
    emit(Buffer.concat(pending), out)
    if (out.length > 0) yield Buffer.concat(out)
  }
  yield BODY_SUFFIX
}

/** Size in bytes and request count of the body `requestBody(path)` produces. */
export const measureRequestBody = async (path: string): Promise<{ readonly bytes: number; readonly requests: number }> => {
  const stats = { lines: 0 }
  let bytes = 0
  for await (const chunk of requestBody(path, stats)) bytes += chunk.length
  return { bytes, requests: stats.lines }
}

const customIdPrefix = /^\s*\{\s*"custom_id"\s*:\s*"([A-Za-z0-9_-]{1,64})"/

/** The custom_ids of a shard file, in order. */
export const shardCustomIds = async (path: string): Promise<Array<string>> => {
  const ids: Array<string> = []
  const lines = NodeReadline.createInterface({ input: NodeFs.createReadStream(path), crlfDelay: Infinity })
  for await (const line of lines) {
    if (line.trim() === "") continue
    const fast = customIdPrefix.exec(line)
    if (fast !== null) {
      ids.push(fast[1]!)
      continue
    }
    try {
      const id = asRecord(JSON.parse(line))?.["custom_id"]
      if (typeof id === "string") ids.push(id)
    } catch {
      // not a request line: it identifies nothing
    }
  }
  return ids
}
