/**
 * A small streaming multipart/form-data parser for `POST /v1/files`.
 *
 * Why our own: busboy is not a dependency, and `Request.formData()` buffers
 * the whole body (a 200 MB batch file would sit in memory). This parser
 * writes the `file` part straight to disk as chunks arrive, keeps only the
 * bytes that could still be the start of a boundary, and buffers the small
 * text fields (`purpose`, `expires_after[...]`) up to a limit.
 */
import { open, type FileHandle } from "node:fs/promises"
import { ApiError, invalidRequest } from "./errors.js"

export interface UploadedFile {
  readonly filename: string | null
  readonly contentType: string | null
  readonly bytes: number
}

export interface MultipartUpload {
  readonly fields: ReadonlyMap<string, string>
  /** The part named `file`, written to `filePath`; null when the form had none. */
  readonly file: UploadedFile | null
}

export interface MultipartLimits {
  readonly maxFileBytes: number
  readonly maxFieldBytes: number
}

const CRLF = Buffer.from("\r\n")
const HEADER_END = Buffer.from("\r\n\r\n")
const MAX_HEADER_BYTES = 16 * 1024

export const boundaryOf = (contentType: string | undefined): string | undefined => {
  if (contentType === undefined || !/^multipart\/form-data\b/i.test(contentType)) return undefined
  const match = /;\s*boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType)
  return match?.[1] ?? match?.[2]
}

type Part =
  | { readonly kind: "file"; readonly filename: string | null; readonly contentType: string | null }
  | { readonly kind: "field"; readonly name: string; readonly chunks: Array<Buffer> }
  | { readonly kind: "skip" }

const malformed = (why: string) => invalidRequest(`Malformed multipart/form-data body: ${why}.`)

export const parseMultipartUpload = async (
  body: AsyncIterable<Buffer>,
  boundary: string,
  filePath: string,
  limits: MultipartLimits
): Promise<MultipartUpload> => {
  const delimiter = Buffer.from(`\r\n--${boundary}`)
  const fields = new Map<string, string>()
  let file: UploadedFile | null = null
  let handle: FileHandle | undefined
  let fileBytes = 0
  let fieldBytes = 0
  let part: Part = { kind: "skip" }
  let state: "preamble" | "afterDelimiter" | "headers" | "body" | "done" = "preamble"
  // A leading CRLF lets the first boundary (which has none) match the same delimiter as the others.
  let buffer: Buffer = CRLF

  const emit = async (data: Buffer) => {
    if (data.length === 0) return
    if (part.kind === "field") {
      fieldBytes += data.length
      if (fieldBytes > limits.maxFieldBytes) throw malformed("text fields are too large")
      part.chunks.push(Buffer.from(data))
    } else if (part.kind === "file") {
      fileBytes += data.length
      if (fileBytes > limits.maxFileBytes) {
        throw new ApiError(413, `File is too large: the limit is ${limits.maxFileBytes} bytes.`, "invalid_request_error", "file", "file_too_large")
      }
      for (let offset = 0; offset < data.length; ) {
        const { bytesWritten } = await handle!.write(data, offset, data.length - offset)
        offset += bytesWritten
      }
    }
  }

  const startPart = async (headerText: string) => {
    const headers = new Map<string, string>()
    for (const line of headerText.split("\r\n")) {
      const colon = line.indexOf(":")
      if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim())
    }
    const disposition = parseDisposition(headers.get("content-disposition") ?? "")
    const name = disposition.get("name")
    if (name === "file") {
      if (file !== null || handle !== undefined) throw malformed("more than one 'file' part")
      handle = await open(filePath, "w")
      part = { kind: "file", filename: disposition.get("filename") ?? null, contentType: headers.get("content-type") ?? null }
    } else if (name !== undefined && !disposition.has("filename")) {
      part = { kind: "field", name, chunks: [] }
    } else {
      part = { kind: "skip" }
    }
  }

  const endPart = () => {
    if (part.kind === "field") fields.set(part.name, Buffer.concat(part.chunks).toString("utf8"))
    else if (part.kind === "file") file = { filename: part.filename, contentType: part.contentType, bytes: fileBytes }
    part = { kind: "skip" }
  }

  /** Consumes as much of `buffer` as the state machine can; keeps the undecidable tail. */
  const process = async () => {
    for (;;) {
      switch (state) {
        case "done":
          buffer = Buffer.alloc(0) // epilogue is ignored
          return
        case "preamble":
        case "body": {
          const index = buffer.indexOf(delimiter)
          if (index === -1) {
            const safe = buffer.length - (delimiter.length - 1)
            if (safe > 0) {
              if (state === "body") await emit(buffer.subarray(0, safe))
              buffer = buffer.subarray(safe)
            }
            return
          }
          if (state === "body") {
            await emit(buffer.subarray(0, index))
            endPart()
          }
          buffer = buffer.subarray(index + delimiter.length)
          state = "afterDelimiter"
          break
        }
        case "afterDelimiter": {
          if (buffer.length < 2) return
          if (buffer[0] === 0x2d && buffer[1] === 0x2d) {
            state = "done"
            break
          }
          // RFC 2046 allows transport padding (spaces) between the boundary and its CRLF.
          const lineEnd = buffer.indexOf(CRLF)
          if (lineEnd === -1) {
            if (buffer.length > 256) throw malformed("boundary line too long")
            return
          }
          if (buffer.subarray(0, lineEnd).toString("latin1").trim() !== "") throw malformed("garbage after boundary")
          buffer = buffer.subarray(lineEnd + 2)
          state = "headers"
          break
        }
        case "headers": {
          // An empty header block is just the blank line.
          const index = buffer.subarray(0, 2).equals(CRLF) ? -2 : buffer.indexOf(HEADER_END)
          if (index === -1) {
            if (buffer.length > MAX_HEADER_BYTES) throw malformed("part headers too large")
            return
          }
          await startPart(index === -2 ? "" : buffer.toString("utf8", 0, index))
          buffer = buffer.subarray(index === -2 ? 2 : index + HEADER_END.length)
          state = "body"
          break
        }
      }
    }
  }

  try {
    for await (const chunk of body) {
      buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk])
      await process()
    }
    // `state` is advanced inside process(); TS cannot see that through the closure.
    if ((state as typeof state | "done") !== "done") throw malformed("unexpected end of body")
  } finally {
    await handle?.close()
  }
  return { fields, file }
}

/** Parameters of a Content-Disposition header (`name`, `filename`; `filename*` decoded when present). */
const parseDisposition = (value: string): Map<string, string> => {
  const params = new Map<string, string>()
  const pattern = /;\s*([A-Za-z0-9_*-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)/g
  for (let match = pattern.exec(value); match !== null; match = pattern.exec(value)) {
    const key = match[1]!.toLowerCase()
    let raw = match[2]!.trim()
    if (raw.startsWith('"')) raw = raw.slice(1, -1).replace(/\\(.)/g, "$1")
    if (key === "filename*") {
      const encoded = /^[^']*'[^']*'(.*)$/.exec(raw)
      try {
        params.set("filename", decodeURIComponent(encoded?.[1] ?? raw))
      } catch {
        params.set("filename", raw)
      }
    } else if (!(key === "filename" && params.has("filename"))) {
      params.set(key, key === "filename" ? decodeQuotedFilename(raw) : raw)
    }
  }
  return params
}

/** Browsers and undici percent-encode `"`, CR and LF in quoted filenames. */
const decodeQuotedFilename = (raw: string): string =>
  raw.replace(/%22/g, '"').replace(/%0D/gi, "\r").replace(/%0A/gi, "\n")
