/**
 * Splits UTF-8 bytes into numbered text lines, chunk by chunk, so a file is never held in
 * memory whole. Handles a leading BOM (TextDecoder drops it) and CRLF endings.
 */

export type LineHandler = (line: string, lineNumber: number) => void

export class LineSplitter {
  private readonly decoder = new TextDecoder("utf-8")
  /** Text after the last newline seen: the start of a line that continues in the next chunk. */
  private pending = ""
  private lineNumber = 0

  /** Feeds one chunk; calls `onLine` for each line it completes. */
  push(bytes: Uint8Array, onLine: LineHandler): void {
    this.split(this.decoder.decode(bytes, { stream: true }), onLine)
  }

  /** Flushes the last line, which may have no trailing newline. */
  end(onLine: LineHandler): void {
    this.split(this.decoder.decode(), onLine)
    if (this.pending.length > 0) {
      const last = this.pending
      this.pending = ""
      this.emit(last, 0, last.length, onLine)
    }
  }

  private split(text: string, onLine: LineHandler): void {
    if (text.length === 0) return
    // The pending part holds no newline, so the search can start after it.
    const from = this.pending.length
    const s = from > 0 ? this.pending + text : text
    let start = 0
    let nl = s.indexOf("\n", from)
    while (nl !== -1) {
      this.emit(s, start, nl, onLine)
      start = nl + 1
      nl = s.indexOf("\n", start)
    }
    this.pending = start === 0 ? s : s.slice(start)
  }

  private emit(s: string, start: number, end: number, onLine: LineHandler): void {
    if (end > start && s.charCodeAt(end - 1) === 13) end-- // CRLF
    this.lineNumber++
    onLine(start === 0 && end === s.length ? s : s.slice(start, end), this.lineNumber)
  }
}

/** True for an empty or whitespace-only line; stops at the first visible character. */
export const isBlank = (line: string): boolean => {
  for (let i = 0; i < line.length; i++) {
    const c = line.charCodeAt(i)
    if (c !== 32 && c !== 9 && c !== 13 && c !== 10 && c !== 0xfeff) return false
  }
  return true
}
