/**
 * Streaming reader of an Anthropic create body `{"requests": [{…}, {…}, …]}`. A body can be
 * 256 MB: it is never held whole. The scanner walks the bytes, cuts out each element of the
 * top-level `requests` array as soon as its last byte has arrived and hands it out
 * `JSON.parse`d, so memory stays bounded by one request.
 *
 * Only the structure around the elements is checked byte by byte (object, key, array,
 * commas); each element is checked by `JSON.parse`. UTF-8 is safe to scan bytewise: no byte
 * of a multi-byte sequence is below 0x80, where every structural character lives.
 */

/** The body is not what the API accepts; the message names the problem like the real API does. */
export class BodyError extends Error {}

const QUOTE = 0x22
const BACKSLASH = 0x5c
const LBRACE = 0x7b
const RBRACE = 0x7d
const LBRACKET = 0x5b
const RBRACKET = 0x5d
const COMMA = 0x2c
const COLON = 0x3a

const isSpace = (b: number): boolean => b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09

const enum State {
  Start,
  FirstMemberOrEnd,
  Member,
  Key,
  Colon,
  Value,
  FirstElementOrEnd,
  Element,
  InElement,
  AfterElement,
  AfterValue,
  Done
}

/** Tracks where one JSON value ends; fed every byte after its first. */
class ValueScan {
  private depth = 0
  private inString = false
  private escaped = false
  private readonly scalar: boolean

  constructor(first: number) {
    if (first === QUOTE) this.inString = true
    else if (first === LBRACE || first === LBRACKET) this.depth = 1
    this.scalar = first !== QUOTE && first !== LBRACE && first !== LBRACKET
  }

  /** 0: the value goes on; 1: it ended with this byte; 2: it ended before this byte. */
  next(b: number): 0 | 1 | 2 {
    if (this.scalar) return isSpace(b) || b === COMMA || b === RBRACKET || b === RBRACE ? 2 : 0
    if (this.inString) {
      if (this.escaped) this.escaped = false
      else if (b === BACKSLASH) this.escaped = true
      else if (b === QUOTE) {
        this.inString = false
        if (this.depth === 0) return 1
      }
      return 0
    }
    if (b === QUOTE) this.inString = true
    else if (b === LBRACE || b === LBRACKET) this.depth++
    else if (b === RBRACE || b === RBRACKET) {
      this.depth--
      if (this.depth === 0) return 1
    }
    return 0
  }
}

const describe = (b: number): string => (b >= 0x20 && b < 0x7f ? `'${String.fromCharCode(b)}'` : `byte 0x${b.toString(16)}`)

export class RequestsScanner {
  private state = State.Start
  private keyParts: Array<Buffer> = []
  private keyStart = 0
  private keyEscaped = false
  private key = ""
  private value: ValueScan | null = null
  private capture: Array<Buffer> = []
  private captureStart = 0
  /** Elements handed out so far (the index of the next one). */
  elements = 0
  sawRequests = false

  /** Feeds the next chunk of the body; returns the elements completed by it. */
  feed(chunk: Buffer): Array<unknown> {
    const out: Array<unknown> = []
    this.keyStart = 0
    this.captureStart = 0
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!
      switch (this.state) {
        case State.Start:
          if (isSpace(b)) continue
          if (b !== LBRACE) throw new BodyError("The request body must be a JSON object.")
          this.state = State.FirstMemberOrEnd
          continue
        case State.FirstMemberOrEnd:
        case State.Member:
          if (isSpace(b)) continue
          if (b === RBRACE && this.state === State.FirstMemberOrEnd) {
            this.state = State.Done
            continue
          }
          if (b !== QUOTE) throw this.invalidJson(b)
          this.state = State.Key
          this.keyParts = []
          this.keyStart = i + 1
          this.keyEscaped = false
          continue
        case State.Key:
          if (this.keyEscaped) this.keyEscaped = false
          else if (b === BACKSLASH) this.keyEscaped = true
          else if (b === QUOTE) {
            this.keyParts.push(chunk.subarray(this.keyStart, i))
            this.key = this.decodeKey()
            this.state = State.Colon
          }
          continue
        case State.Colon:
          if (isSpace(b)) continue
          if (b !== COLON) throw this.invalidJson(b)
          this.state = State.Value
          continue
        case State.Value:
          if (isSpace(b)) continue
          if (this.key !== "requests") throw new BodyError(`${this.key}: Extra inputs are not permitted`)
          if (this.sawRequests) throw new BodyError("requests: given more than once")
          if (b !== LBRACKET) throw new BodyError("requests: Input should be a valid list")
          this.sawRequests = true
          this.state = State.FirstElementOrEnd
          continue
        case State.FirstElementOrEnd:
        case State.Element:
          if (isSpace(b)) continue
          if (b === RBRACKET && this.state === State.FirstElementOrEnd) {
            this.state = State.AfterValue
            continue
          }
          if (b === RBRACKET || b === COMMA) throw this.invalidJson(b)
          this.value = new ValueScan(b)
          this.capture = []
          this.captureStart = i
          this.state = State.InElement
          continue
        case State.InElement: {
          const end = this.value!.next(b)
          if (end === 0) continue
          this.capture.push(chunk.subarray(this.captureStart, end === 1 ? i + 1 : i))
          out.push(this.parseElement())
          this.state = State.AfterElement
          if (end === 2) i-- // the delimiter belongs to the array
          continue
        }
        case State.AfterElement:
          if (isSpace(b)) continue
          if (b === COMMA) this.state = State.Element
          else if (b === RBRACKET) this.state = State.AfterValue
          else throw this.invalidJson(b)
          continue
        case State.AfterValue:
          if (isSpace(b)) continue
          if (b === COMMA) this.state = State.Member
          else if (b === RBRACE) this.state = State.Done
          else throw this.invalidJson(b)
          continue
        case State.Done:
          if (isSpace(b)) continue
          throw new BodyError("The request body has data after its JSON object.")
      }
    }
    if (this.state === State.Key) this.keyParts.push(chunk.subarray(this.keyStart))
    if (this.state === State.InElement) this.capture.push(chunk.subarray(this.captureStart))
    return out
  }

  /** Checks that the body ended where a JSON object ends, with a `requests` member. */
  end(): void {
    if (this.state === State.Start) throw new BodyError("The request body must be a JSON object.")
    if (this.state !== State.Done) throw new BodyError("The request body is not valid JSON (it ends too early).")
    if (!this.sawRequests) throw new BodyError("requests: Field required")
  }

  private invalidJson(b: number): BodyError {
    return new BodyError(`The request body is not valid JSON: unexpected ${describe(b)}${this.sawRequests ? ` after requests.${this.elements - 1}` : ""}.`)
  }

  private decodeKey(): string {
    const raw = Buffer.concat(this.keyParts).toString("utf8")
    this.keyParts = []
    try {
      return JSON.parse(`"${raw}"`) as string
    } catch {
      throw new BodyError("The request body is not valid JSON: a member name is malformed.")
    }
  }

  private parseElement(): unknown {
    const index = this.elements++
    const text = Buffer.concat(this.capture).toString("utf8")
    this.capture = []
    this.value = null
    try {
      return JSON.parse(text)
    } catch {
      throw new BodyError(`requests.${index}: not valid JSON.`)
    }
  }
}
