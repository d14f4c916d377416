/**
 * HTTP plumbing over node:http: JSON bodies, replies, streamed files, and
 * the "drop the response" switch of the reset fault.
 */
import { createReadStream } from "node:fs"
import type { IncomingMessage, ServerResponse } from "node:http"
import { pipeline } from "node:stream/promises"
import { ApiError, invalidRequest } from "./errors.js"
import { randomHex } from "./hash.js"

export const MAX_JSON_BODY_BYTES = 64 * 1024 * 1024

export class Reply {
  readonly requestId = `req_${randomHex(16)}`
  /** The status answered (or, when `lost`, the one that was about to be). */
  status = 0
  /** The resetRate fault dropped the response. */
  lost = false

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    /** resetRate fault: the call takes effect, then the socket is destroyed without an answer. */
    private readonly dropResponse: boolean
  ) {}

  json(status: number, body: unknown, headers: Readonly<Record<string, string>> = {}): void {
    this.status = status
    if (this.dropResponse) return this.destroy()
    const text = JSON.stringify(body)
    this.res.writeHead(status, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(text),
      "x-request-id": this.requestId,
      ...headers
    })
    this.res.end(text)
  }

  error(error: ApiError): void {
    this.json(error.status, error.body, error.headers)
  }

  /** Streams a file from disk (downloads are never read into memory). */
  async file(path: string, bytes: number, contentType: string): Promise<void> {
    this.status = 200
    if (this.dropResponse) return this.destroy()
    this.res.writeHead(200, {
      "content-type": contentType,
      "content-length": bytes,
      "x-request-id": this.requestId
    })
    await pipeline(createReadStream(path), this.res)
  }

  /** Chunks of text (the ledger), written with backpressure. */
  async chunks(status: number, contentType: string, chunks: AsyncIterable<string>): Promise<void> {
    this.status = status
    if (this.dropResponse) return this.destroy()
    this.res.writeHead(status, { "content-type": contentType, "x-request-id": this.requestId })
    await pipeline(chunks, this.res)
  }

  private destroy(): void {
    this.lost = true
    this.req.socket.destroy()
  }
}

export const readBody = async (req: IncomingMessage, limit: number): Promise<Buffer> => {
  const chunks: Array<Buffer> = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > limit) throw new ApiError(413, `Request body too large (limit ${limit} bytes).`, "invalid_request_error")
    chunks.push(chunk)
  }
  return Buffer.concat(chunks)
}

export const readJson = async (req: IncomingMessage, limit = MAX_JSON_BODY_BYTES): Promise<unknown> => {
  const body = await readBody(req, limit)
  if (body.length === 0) return undefined
  try {
    return JSON.parse(body.toString("utf8"))
  } catch {
    throw invalidRequest(
      "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)"
    )
  }
}

/** The API key of a request, from any header style a gateway might use. */
export const apiKeyOf = (req: IncomingMessage): string | undefined => {
  const authorization = req.headers["authorization"]
  if (typeof authorization === "string") {
    const match = /^Bearer\s+(.+)$/i.exec(authorization.trim())
    if (match) return match[1]
  }
  for (const name of ["x-api-key", "api-key"]) {
    const value = req.headers[name]
    if (typeof value === "string" && value.length > 0) return value
  }
  return undefined
}

/** Integer query parameter within bounds, or a 400. */
export const intParam = (query: URLSearchParams, name: string, fallback: number, min: number, max: number): number => {
  const raw = query.get(name)
  if (raw === null || raw === "") return fallback
  const value = Number(raw)
  if (!Number.isInteger(value) || value < min || value > max) {
    throw invalidRequest(`Invalid '${name}': expected an integer between ${min} and ${max}, got '${raw}'.`, name, "invalid_value")
  }
  return value
}
