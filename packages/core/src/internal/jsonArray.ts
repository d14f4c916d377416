/**
 * Splits a JSON array file into the raw text of its elements, chunk by chunk, so that a
 * multi-gigabyte array is never held in memory whole: memory is bounded by the largest
 * element. This is not a JSON parser: it only tracks strings (with their escapes) and
 * bracket depth to find where each top-level element ends. Each element's text is then
 * parsed by `JSON.parse`, which does all the validation — so a malformed element is
 * reported on its own (with its index) and the elements after it are still read.
 *
 * Works on UTF-8 bytes: every structural character is ASCII, and no byte of a multi-byte
 * UTF-8 sequence is ASCII, so bytes can be scanned without decoding them first.
 */

/** Receives one element: its text (empty for a stray comma, e.g. `[1,,2]`) and its index. */
export type ElementHandler = (text: string, index: number) => void

const QUOTE = 0x22
const BACKSLASH = 0x5c
const COMMA = 0x2c
const OPEN_BRACKET = 0x5b
const CLOSE_BRACKET = 0x5d
const OPEN_BRACE = 0x7b
const CLOSE_BRACE = 0x7d

const isWhitespace = (b: number): boolean => b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09

const describeByte = (b: number): string =>
  b >= 0x20 && b < 0x7f ? JSON.stringify(String.fromCharCode(b)) : `byte 0x${b.toString(16).padStart(2, "0")}`

type Phase =
  /** Before the opening `[` (a BOM and whitespace are skipped). */
  | "start"
  /** Inside the array, before an element or the closing `]`. */
  | "between"
  /** Inside an element. */
  | "element"
  /** After the closing `]`: only whitespace may follow. */
  | "done"

export class JsonArraySplitter {
  private phase: Phase = "start"
  /** Absolute offset of the next byte pushed. */
  private offset = 0
  private index = 0
  /** True after a comma: a `]` then closes an empty element (a trailing comma). */
  private afterComma = false
  private depth = 0
  private inString = false
  private escaped = false
  /** Bytes of the current element from earlier chunks. */
  private parts: Array<Uint8Array> = []
  private readonly decoder = new TextDecoder("utf-8")

  /**
   * Feeds one chunk; calls `onElement` for each element it completes. Returns a description
   * of a structural error (not an array, content after the array), after which the splitter
   * must not be fed again.
   */
  push(bytes: Uint8Array, onElement: ElementHandler): string | undefined {
    const length = bytes.length
    let i = 0
    /** Start of the current element in this chunk, or -1 when it began in an earlier one. */
    let elementStart = this.phase === "element" ? -1 : 0
    while (i < length) {
      const b = bytes[i]!
      switch (this.phase) {
        case "start": {
          // A UTF-8 byte order mark may open the file.
          const absolute = this.offset + i
          if (absolute < 3 && b === [0xef, 0xbb, 0xbf][absolute]) break
          if (isWhitespace(b)) break
          if (b !== OPEN_BRACKET) return `not a JSON array: it starts with ${describeByte(b)}`
          this.phase = "between"
          break
        }
        case "between": {
          if (isWhitespace(b)) break
          if (b === CLOSE_BRACKET) {
            if (this.afterComma) onElement("", this.index++)
            this.phase = "done"
            break
          }
          if (b === COMMA) {
            onElement("", this.index++)
            this.afterComma = true
            break
          }
          this.phase = "element"
          this.depth = 0
          this.inString = false
          this.escaped = false
          elementStart = i
          continue // scan this byte as part of the element
        }
        case "element": {
          if (this.inString) {
            if (this.escaped) this.escaped = false
            else if (b === BACKSLASH) this.escaped = true
            else if (b === QUOTE) this.inString = false
            break
          }
          if (b === QUOTE) this.inString = true
          else if (b === OPEN_BRACKET || b === OPEN_BRACE) this.depth++
          else if ((b === CLOSE_BRACKET || b === CLOSE_BRACE) && this.depth > 0) this.depth--
          else if (this.depth === 0 && (b === COMMA || b === CLOSE_BRACKET)) {
            onElement(this.text(bytes, elementStart, i), this.index++)
            if (b === COMMA) {
              this.phase = "between"
              this.afterComma = true
            } else {
              this.phase = "done"
            }
          }
          // A stray `}` at depth 0 stays in the element: JSON.parse reports it.
          break
        }
        case "done": {
          if (!isWhitespace(b)) {
            return `unexpected ${describeByte(b)} at byte ${this.offset + i}, after the array's closing "]"`
          }
          break
        }
      }
      i++
    }
    if (this.phase === "element") {
      // The element continues in the next chunk: keep its bytes (a copy: chunks may be reused).
      this.parts.push(bytes.slice(elementStart === -1 ? 0 : elementStart))
    }
    this.offset += length
    return undefined
  }

  /** Checks the end of the input; returns a description of what is wrong, if anything. */
  end(): string | undefined {
    switch (this.phase) {
      case "start":
        return this.offset === 0 ? "not a JSON array: the file is empty" : "not a JSON array: the file holds only whitespace"
      case "between":
      case "element":
        return `the file ends before the array's closing "]" (inside element [${this.index}]): truncated?`
      case "done":
        return undefined
    }
  }

  private text(bytes: Uint8Array, start: number, end: number): string {
    const tail = bytes.subarray(start === -1 ? 0 : start, end)
    if (this.parts.length === 0) return this.decoder.decode(tail)
    const parts = this.parts
    this.parts = []
    let size = tail.length
    for (const p of parts) size += p.length
    const all = new Uint8Array(size)
    let at = 0
    for (const p of parts) {
      all.set(p, at)
      at += p.length
    }
    all.set(tail, at)
    return this.decoder.decode(all)
  }
}
