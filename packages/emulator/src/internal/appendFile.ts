/**
 * Appends text to a file through a write stream, waiting for it to drain (a big batch never
 * sits in memory), and counting what it wrote. A stream error surfaces at the next write or
 * at close.
 */
import { createWriteStream } from "node:fs"
import type { WriteStream } from "node:fs"
import { once } from "node:events"
import { finished } from "node:stream/promises"

export class AppendFile {
  bytes = 0
  lines = 0
  private failure: unknown = undefined
  private readonly stream: WriteStream

  constructor(path: string) {
    this.stream = createWriteStream(path)
    this.stream.on("error", (error) => {
      this.failure = error
    })
  }

  /** Writes `text`, which holds `lines` lines (for the count only). */
  async write(text: string, lines = 0): Promise<void> {
    if (this.failure !== undefined) throw this.failure
    if (text.length === 0) return
    this.lines += lines
    this.bytes += Buffer.byteLength(text)
    if (!this.stream.write(text)) await once(this.stream, "drain")
  }

  async close(): Promise<void> {
    this.stream.end()
    await finished(this.stream)
    if (this.failure !== undefined) throw this.failure
  }
}
