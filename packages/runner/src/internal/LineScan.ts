/**
 * Byte-exact line reading for indexes over append-only JSONL files: a scan of a byte range
 * that hands each complete line's bytes and position to a synchronous callback (no string
 * per line unless the caller makes one), and the read of one line at a known position.
 * A line without its newline (a write in progress, a torn tail) is never handed out.
 */
import type { FileHandle } from "node:fs/promises"
import { open } from "node:fs/promises"

const CHUNK = 1 << 20

/**
 * Read buffers are reused across scans: an index reads thousands of small files one after
 * another, and a fresh megabyte for each is garbage the collector spends seconds on.
 */
const spare: Array<Buffer> = []

/**
 * Calls `each(bytes, start, end, position)` for every complete line of `path` in
 * [from, to) (`to` undefined: the file's end), until it returns false; returns the position
 * after the last line handed out. A missing file has no lines.
 */
export const scan = async (
  path: string,
  from: number,
  to: number | undefined,
  each: (bytes: Buffer, start: number, end: number, position: number) => boolean | void
): Promise<number> => {
  let handle: FileHandle
  try {
    handle = await open(path, "r")
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return from
    throw e
  }
  let buffer = spare.pop() ?? Buffer.allocUnsafe(CHUNK)
  try {
    const end = to ?? (await handle.stat()).size
    let held = 0 // bytes of a line begun in the previous read
    let base = from // file position of buffer[0]
    let at = from
    while (base + held < end) {
      if (held === buffer.length) {
        // One line longer than the buffer: make room.
        const bigger = Buffer.allocUnsafe(buffer.length * 2)
        buffer.copy(bigger, 0, 0, held)
        buffer = bigger
      }
      const want = Math.min(buffer.length - held, end - base - held)
      const { bytesRead } = await handle.read(buffer, held, want, base + held)
      if (bytesRead === 0) break
      const filled = held + bytesRead
      let start = 0
      for (let nl = buffer.indexOf(10, start); nl !== -1 && nl < filled; nl = buffer.indexOf(10, start)) {
        const more = nl > start ? each(buffer, start, nl, base + start) : true
        start = nl + 1
        if (more === false) return base + start
      }
      at = base + start
      buffer.copy(buffer, 0, start, filled)
      held = filled - start
      base += start
    }
    return at
  } finally {
    if (buffer.length === CHUNK && spare.length < 4) spare.push(buffer)
    await handle.close()
  }
}

/** A set of open files, for reading single lines at known positions; close when done. */
export class Readers {
  private readonly handles = new Map<string, Promise<FileHandle>>()

  private handle(path: string): Promise<FileHandle> {
    let h = this.handles.get(path)
    if (h === undefined) this.handles.set(path, (h = open(path, "r")))
    return h
  }

  /** The line of `path` that begins at `position` (without its newline). */
  async line(path: string, position: number): Promise<string> {
    const handle = await this.handle(path)
    const parts: Array<Buffer> = []
    let at = position
    for (;;) {
      const buffer = Buffer.allocUnsafe(parts.length === 0 ? 16 * 1024 : 256 * 1024)
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, at)
      if (bytesRead === 0) break
      const nl = buffer.subarray(0, bytesRead).indexOf(10)
      if (nl !== -1) {
        parts.push(buffer.subarray(0, nl))
        break
      }
      parts.push(buffer.subarray(0, bytesRead))
      at += bytesRead
    }
    return Buffer.concat(parts).toString("utf8")
  }

  async close(): Promise<void> {
    const all = [...this.handles.values()]
    this.handles.clear()
    await Promise.all(all.map((h) => h.then((f) => f.close(), () => undefined)))
  }
}
