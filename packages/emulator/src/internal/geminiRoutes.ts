/**
 * The Gemini API batch-mode routes, at the same origin as the OpenAI and Anthropic ones, under
 * both API versions, `v1beta` and `v1` (`{v}` below; the official SDK 2.x uses `v1beta`, 3.x
 * `v1`):
 *
 *   POST   /upload/{v}/files                          File API, resumable protocol: `start` (JSON
 *                                                     `{file: {display_name}}`) answers the session
 *                                                     URL in `x-goog-upload-url`; POST the bytes
 *                                                     there with `upload`, `finalize` (chunks with
 *                                                     `X-Goog-Upload-Offset` work too) -> `{file}`
 *   GET    /{v}/files?pageSize=&pageToken=            newest first, `{files, nextPageToken}`
 *   GET    /{v}/files/{id}, DELETE /{v}/files/{id}
 *   GET    /{v}/files/{id}:download?alt=media         the bytes (what the SDK's files.download asks)
 *   GET    /download/{v}/files/{id}:download?alt=media   the same (the file's `downloadUri`)
 *   POST   /{v}/models/{model}:batchGenerateContent   inline requests or `fileName` -> Operation
 *   GET    /{v}/batches?pageSize=&pageToken=          newest first, `{operations, nextPageToken}`
 *   GET    /{v}/batches/{id}                          the Operation (`metadata.state` BATCH_STATE_*)
 *   POST   /{v}/batches/{id}:cancel                   -> `{}`
 *   DELETE /{v}/batches/{id}                          -> `{}`: forgets the Operation (it is not
 *                                                     cancelled; the ledger keeps it, `deleted`)
 *   POST   /{v}/models/{model}:generateContent        real time (geminiGenerate.ts, realtime.ts)
 *
 * `/v1` is also OpenAI's root: `geminiRoute` tells the two apart by the shape of the call (see
 * there), so the OpenAI routes are unchanged.
 *
 * Auth: `x-goog-api-key: K` (or `?key=K`, or `Authorization: Bearer K`), checked only when the
 * emulator has an `apiKey`. Errors are Google-shaped: `{error: {code, message, status}}`.
 * Call faults (429 RESOURCE_EXHAUSTED with a RetryInfo detail — plus `Retry-After`, an
 * emulator convenience —, 5xx, resets) follow the same sequence as on `/v1`.
 *
 * Batches live in the shared batch service (see geminiBatches.ts): the ledger lists them
 * under their id without the `batches/` prefix, which is also what `expireBatch` takes.
 */
import { createWriteStream } from "node:fs"
import type { IncomingMessage, ServerResponse } from "node:http"
import { unlink } from "node:fs/promises"
import { Transform } from "node:stream"
import { pipeline } from "node:stream/promises"
import type { Faults } from "./faults.js"
import { generateContent } from "./geminiGenerate.js"
import type { RealtimeCalls } from "./realtime.js"
import { randomHex } from "./hash.js"
import { intParam, readJson, Reply } from "./http.js"
import type { Store } from "./store.js"
import { type GeminiContext, GeminiBatches, MAX_GEMINI_FILE_BYTES, type UrlBase } from "./geminiBatches.js"
import {
  ApiError,
  checkGeminiKey,
  GeminiError,
  invalidArgument,
  isObject,
  notFound,
  replyError,
  statusName,
  toGeminiError
} from "./geminiWire.js"

export interface GeminiRouteContext extends GeminiContext {
  readonly realtime: RealtimeCalls
  readonly faults: Faults
  readonly apiKey: string | undefined
  readonly log: ((line: string) => void) | undefined
}

/** Largest create body (Gemini: inline requests under 20 MB). */
const MAX_CREATE_BYTES = 20 * 1024 * 1024

interface UploadSession {
  readonly fileId: string
  readonly displayName: string
  readonly mimeType: string
  readonly declared: number | null
  received: number
}

interface GeminiState {
  readonly batches: GeminiBatches
  readonly sessions: Map<string, UploadSession>
}

/** One Gemini state per emulator (keyed by its store); upload sessions are not persisted. */
const states = new WeakMap<Store, GeminiState>()
const stateOf = (ctx: GeminiRouteContext): GeminiState => {
  let state = states.get(ctx.store)
  if (state === undefined) {
    state = { batches: new GeminiBatches(ctx), sessions: new Map() }
    states.set(ctx.store, state)
  }
  return state
}

/** The API versions served (the path segment after the origin, or after `/upload`, `/download`). */
export const GEMINI_VERSIONS: ReadonlyArray<string> = ["v1beta", "v1"]

/** A Gemini call: its API version, and the segments after `/{v}` (or `/upload/{v}`, `/download/{v}`). */
export interface GeminiRoute {
  readonly surface: "api" | "upload" | "download"
  readonly version: string
  readonly rest: ReadonlyArray<string>
}

const isVersion = (segment: string | undefined): segment is string => segment !== undefined && GEMINI_VERSIONS.includes(segment)

/**
 * The Gemini route of a path (decoded segments), or undefined. `/v1beta`, `/upload/{v}` and
 * `/download/{v}` are Gemini's alone. Under `/v1`, shared with OpenAI, a call is Gemini's when
 * - it names a method with a colon (`models/{m}:batchGenerateContent`, `batches/{id}:cancel`,
 *   `files/{id}:download`) — OpenAI paths have none;
 * - it carries Google's key (`x-goog-api-key`, `?key=`) or client header (`x-goog-api-client`),
 *   which the official SDK always sends;
 * - it lists with Google's paging (`pageSize`, `pageToken`), or gets or deletes a batch or file
 *   whose id is not OpenAI-shaped (OpenAI's are `batch_…` and `file-…`; Gemini's are
 *   `batches/{hex}`, `files/{id}`).
 * Everything else under `/v1` (`/v1/files/{id}/content`, `POST /v1/batches`, Together's
 * `POST /v1/files/upload` …) stays OpenAI's.
 */
export const geminiRoute = (
  method: string,
  segments: ReadonlyArray<string>,
  query: URLSearchParams,
  req: IncomingMessage
): GeminiRoute | undefined => {
  if ((segments[0] === "upload" || segments[0] === "download") && isVersion(segments[1])) {
    return { surface: segments[0], version: segments[1], rest: segments.slice(2) }
  }
  if (!isVersion(segments[0])) return undefined
  const route: GeminiRoute = { surface: "api", version: segments[0], rest: segments.slice(1) }
  if (segments[0] !== "v1") return route
  const [collection, item, ...extra] = route.rest
  if (collection === "models") return item?.includes(":") === true && extra.length === 0 ? route : undefined
  if ((collection !== "files" && collection !== "batches") || extra.length > 0) return undefined
  if (item?.includes(":") === true) return route
  if (header(req, "x-goog-api-key") !== undefined || header(req, "x-goog-api-client") !== undefined || query.has("key")) return route
  if (item === undefined) return method === "GET" && (query.has("pageSize") || query.has("pageToken")) ? route : undefined
  if (method !== "GET" && method !== "DELETE") return undefined
  return (collection === "batches" ? item.startsWith("batch_") : item.startsWith("file-")) ? undefined : route
}

const header = (req: IncomingMessage, name: string): string | undefined => {
  const value = req.headers[name]
  return typeof value === "string" && value.length > 0 ? value : undefined
}

/** `scheme://host` the client used: upload URLs and file URIs point back at it. */
const originOf = (req: IncomingMessage): string => {
  const host = header(req, "x-forwarded-host") ?? header(req, "host") ?? "127.0.0.1"
  return `${header(req, "x-forwarded-proto") ?? "http"}://${host}`
}

/** `name:action` -> [name, action]. */
const splitAction = (segment: string | undefined): readonly [string | undefined, string | undefined] => {
  if (segment === undefined) return [undefined, undefined]
  const colon = segment.lastIndexOf(":")
  return colon === -1 ? [segment, undefined] : [segment.slice(0, colon), segment.slice(colon + 1)]
}

/**
 * Answers one Gemini call; never throws (errors are rendered Google-style). Returns the reply
 * used (a reset fault swaps it) and a note for the access log.
 */
export const handleGemini = async (
  ctx: GeminiRouteContext,
  method: string,
  target: GeminiRoute,
  url: URL,
  req: IncomingMessage,
  res: ServerResponse
): Promise<{ readonly reply: Reply; readonly note: string }> => {
  let reply = new Reply(req, res, false)
  let note = ""
  try {
    checkGeminiKey(ctx.apiKey, req, url.searchParams)
    const [collection, item, ...extra] = target.rest
    const [model, action] = splitAction(item)
    if (target.surface === "api" && method === "POST" && collection === "models" && action === "generateContent" && model !== undefined && extra.length === 0) {
      // Real time: faults, limits and the ledger on the common path (realtime.ts).
      return await ctx.realtime.serve(generateContent(model, target.version), url.pathname, req, res)
    }
    const fault = ctx.faults.decide(`${method} ${url.pathname}`)
    if (fault !== undefined) note = ` [fault ${fault._tag}]`
    if (fault?._tag === "RateLimited") {
      const ms = fault.retryAfterMs
      throw new GeminiError(
        429,
        "RESOURCE_EXHAUSTED",
        "Resource has been exhausted (e.g. check quota).",
        [{ "@type": "type.googleapis.com/google.rpc.RetryInfo", retryDelay: `${Math.ceil(ms / 1000)}s` }],
        { "retry-after": String(Math.ceil(ms / 1000)), "retry-after-ms": String(ms) }
      )
    }
    if (fault?._tag === "ServerError") {
      throw new GeminiError(
        fault.status,
        statusName(fault.status),
        fault.status === 500 ? "An internal error has occurred. Please retry." : "The service is currently unavailable."
      )
    }
    if (fault?._tag === "Reset") reply = new Reply(req, res, true)
    if (method === "DELETE" && ctx.faults.settings.refuseDeletes) throw new GeminiError(403, "PERMISSION_DENIED", "The caller does not have permission.")
    if (!(await route(ctx, stateOf(ctx), method, target, url.searchParams, reply))) {
      throw notFound(`The requested URL ${url.pathname} was not found on this server (${method}).`)
    }
  } catch (error) {
    if (res.headersSent || res.destroyed) {
      res.destroy()
    } else if (error instanceof GeminiError) {
      replyError(reply, error)
    } else if (error instanceof ApiError) {
      replyError(reply, toGeminiError(error))
    } else {
      ctx.log?.(`internal error on ${method} ${url.pathname}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`)
      replyError(reply, new GeminiError(500, "INTERNAL", "The sluice emulator failed to handle this request."))
    }
  }
  return { reply, note }
}

const route = async (
  ctx: GeminiRouteContext,
  state: GeminiState,
  method: string,
  target: GeminiRoute,
  query: URLSearchParams,
  reply: Reply
): Promise<boolean> => {
  const base = { origin: originOf(reply.req), version: target.version }
  const gemini = state.batches
  const { rest } = target
  if (target.surface === "upload") {
    if (method !== "POST" || rest.length !== 1 || rest[0] !== "files") return false
    await upload(ctx, state, query, reply, base)
    return true
  }
  const [collection, item, ...extra] = rest
  if (extra.length > 0) return false
  const [id, action] = splitAction(item)
  if (target.surface === "download" && (collection !== "files" || action !== "download")) return false
  switch (collection) {
    case "files":
      if (id === undefined && method === "GET") {
        const pageSize = intParam(query, "pageSize", 10, 1, 100)
        reply.json(200, gemini.listFiles(pageSize, query.get("pageToken"), base))
        return true
      }
      if (id !== undefined && action === "download" && method === "GET") {
        const file = gemini.file(id)
        await reply.file(ctx.store.filePath(file.id), file.bytes, "application/octet-stream")
        return true
      }
      if (id !== undefined && action === undefined && method === "GET") {
        reply.json(200, gemini.fileObject(gemini.file(id), base))
        return true
      }
      if (id !== undefined && action === undefined && method === "DELETE") {
        await gemini.deleteFile(id)
        reply.json(200, {})
        return true
      }
      return false
    case "models":
      if (id !== undefined && action === "batchGenerateContent" && method === "POST") {
        reply.json(200, await gemini.create(id, await readJson(reply.req, MAX_CREATE_BYTES), target.version))
        return true
      }
      return false
    case "batches":
      if (id === undefined && method === "GET") {
        const pageSize = intParam(query, "pageSize", 50, 1, 1000)
        reply.json(200, await gemini.list(pageSize, query.get("pageToken"), target.version))
        return true
      }
      if (id !== undefined && action === undefined && method === "GET") {
        reply.json(200, await gemini.retrieve(id, target.version))
        return true
      }
      if (id !== undefined && action === "cancel" && method === "POST") {
        reply.json(200, await gemini.cancel(id))
        return true
      }
      if (id !== undefined && action === undefined && method === "DELETE") {
        reply.json(200, await gemini.delete(id))
        return true
      }
      return false
    default:
      return false
  }
}

// ---------------------------------------------------------------------------------------------
// Resumable uploads
// ---------------------------------------------------------------------------------------------

const upload = async (
  ctx: GeminiRouteContext,
  state: GeminiState,
  query: URLSearchParams,
  reply: Reply,
  base: UrlBase
): Promise<void> => {
  const req = reply.req
  const commands = (header(req, "x-goog-upload-command") ?? "").split(",").map((c) => c.trim().toLowerCase()).filter((c) => c !== "")
  const uploadId = query.get("upload_id")
  if (uploadId === null) {
    if (header(req, "x-goog-upload-protocol")?.toLowerCase() !== "resumable" || !commands.includes("start")) {
      throw invalidArgument(
        "The sluice emulator supports the resumable upload protocol only: send X-Goog-Upload-Protocol: resumable and X-Goog-Upload-Command: start."
      )
    }
    const body = await readJson(req, 64 * 1024)
    const file = isObject(body) && isObject(body["file"]) ? body["file"] : {}
    const name = file["displayName"] ?? file["display_name"]
    const declaredHeader = header(req, "x-goog-upload-header-content-length")
    const declared = declaredHeader === undefined ? null : Number(declaredHeader)
    if (declared !== null && (!Number.isInteger(declared) || declared < 0)) {
      throw invalidArgument("X-Goog-Upload-Header-Content-Length must be a byte count.")
    }
    if (declared !== null && declared > MAX_GEMINI_FILE_BYTES) throw invalidArgument("The file is larger than the 2 GB limit of the File API.")
    const mime = file["mimeType"] ?? file["mime_type"]
    const session: UploadSession = {
      fileId: randomHex(6),
      displayName: typeof name === "string" ? name : "",
      mimeType: header(req, "x-goog-upload-header-content-type") ?? (typeof mime === "string" ? mime : "application/octet-stream"),
      declared,
      received: 0
    }
    const sessionId = randomHex(16)
    state.sessions.set(sessionId, session)
    reply.json(200, {}, {
      "x-goog-upload-url": `${base.origin}/upload/${base.version}/files?upload_id=${sessionId}&upload_protocol=resumable`,
      "x-goog-upload-status": "active",
      "x-goog-upload-chunk-granularity": "8388608"
    })
    return
  }

  const session = state.sessions.get(uploadId)
  if (session === undefined) {
    req.resume()
    throw notFound("Upload session not found (it was finalized, cancelled or never started).")
  }
  const path = ctx.store.filePath(session.fileId)
  if (commands.includes("cancel")) {
    req.resume()
    state.sessions.delete(uploadId)
    await unlink(path).catch(() => undefined)
    reply.json(200, {}, { "x-goog-upload-status": "cancelled" })
    return
  }
  if (commands.includes("query")) {
    req.resume()
    reply.json(200, {}, { "x-goog-upload-status": "active", "x-goog-upload-size-received": String(session.received) })
    return
  }
  if (commands.includes("upload")) {
    const offset = Number(header(req, "x-goog-upload-offset") ?? "0")
    if (offset !== session.received) {
      req.resume()
      throw invalidArgument(`X-Goog-Upload-Offset ${offset} does not match the ${session.received} bytes received so far.`)
    }
    try {
      session.received += await append(req, path, MAX_GEMINI_FILE_BYTES - session.received)
    } catch (error) {
      state.sessions.delete(uploadId)
      await unlink(path).catch(() => undefined)
      throw error
    }
  } else {
    req.resume()
  }
  if (!commands.includes("finalize")) {
    if (!commands.includes("upload")) throw invalidArgument("X-Goog-Upload-Command must be upload, finalize, query or cancel.")
    reply.json(200, {}, { "x-goog-upload-status": "active", "x-goog-upload-size-received": String(session.received) })
    return
  }
  state.sessions.delete(uploadId)
  if (session.declared !== null && session.received !== session.declared) {
    await unlink(path).catch(() => undefined)
    throw invalidArgument(`The upload declared ${session.declared} bytes but ${session.received} were received.`)
  }
  if (session.received === 0) await appendNothing(path)
  const record = await state.batches.registerUpload(session.fileId, session.received, session.displayName, session.mimeType)
  reply.json(200, { file: state.batches.fileObject(record, base) }, { "x-goog-upload-status": "final" })
}

/** Streams the request body to the end of a file (never into memory); returns its size. */
const append = async (req: IncomingMessage, path: string, limit: number): Promise<number> => {
  let bytes = 0
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length
      if (bytes > limit) callback(new GeminiError(400, "INVALID_ARGUMENT", "The file is larger than the 2 GB limit of the File API."))
      else callback(null, chunk)
    }
  })
  await pipeline(req, counter, createWriteStream(path, { flags: "a" }))
  return bytes
}

/** An empty upload still gets a file on disk. */
const appendNothing = (path: string): Promise<void> =>
  new Promise((resolve, reject) => {
    const stream = createWriteStream(path, { flags: "a" })
    stream.on("error", reject)
    stream.end(resolve)
  })
