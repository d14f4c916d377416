/**
 * The OpenAI wire routes: Files and Batches (the real-time endpoints are in openaiRealtime.ts).
 * The router serves them under several API roots (OpenAI, Azure, gateway prefixes);
 * `WireStyle` bends the Batch object the way some compatible services do.
 */
import { unlink } from "node:fs/promises"
import type { Batches } from "./batches.js"
import { type Clock, toUnixSeconds } from "./clock.js"
import { ApiError, invalidRequest, invalidValue, missingParameter, notFound } from "./errors.js"
import type { Faults } from "./faults.js"
import { randomHex } from "./hash.js"
import { intParam, readJson, type Reply } from "./http.js"
import { boundaryOf, parseMultipartUpload } from "./multipart.js"
import type { FileRecord, Store } from "./store.js"

/** How Batch objects look on the wire, for services that differ from OpenAI. */
export interface WireStyle {
  /** Together-style statuses: `VALIDATING`, `IN_PROGRESS`, `COMPLETED` … */
  readonly upperCaseStatuses?: boolean | undefined
  /** Azure-style: capitalised statuses (`InProgress`, `Completed` …) and `""` for absent file ids. */
  readonly azureQuirks?: boolean | undefined
}

export interface OpenAiContext {
  readonly store: Store
  readonly batches: Batches
  readonly faults: Faults
  readonly seed: string
  readonly clock: Clock
  readonly wire?: WireStyle | undefined
}

const FILE_PURPOSES = ["assistants", "batch", "batch-api", "fine-tune", "vision", "user_data", "evals"]
/** Purposes of batch input files: OpenAI's `batch`, Together's `batch-api`. */
export const BATCH_INPUT_PURPOSES: ReadonlyArray<string> = ["batch", "batch-api"]
const MAX_FILE_BYTES = 512 * 1024 * 1024
const MAX_BATCH_FILE_BYTES = 200 * 1024 * 1024

/** Dispatches `/v1/...` (segments after "v1"); returns false when no route matches. */
export const handleOpenAi = async (
  ctx: OpenAiContext,
  method: string,
  segments: ReadonlyArray<string>,
  query: URLSearchParams,
  reply: Reply
): Promise<boolean> => {
  const [resource, id, action, ...extra] = segments
  if (extra.length > 0) return false
  switch (resource) {
    case "files":
      if (id === undefined) {
        if (method === "POST") return done(await uploadFile(ctx, reply))
        if (method === "GET") return done(listFiles(ctx, query, reply))
      } else if (id === "upload" && action === undefined && method === "POST") {
        // Together's multipart upload (`file_name`, `purpose`, `file_type`, `file`).
        return done(await uploadFile(ctx, reply))
      } else if (action === undefined) {
        if (method === "GET") return done(reply.json(200, fileObject(getFile(ctx, id))))
        if (method === "DELETE") return done(await deleteFile(ctx, id, reply))
      } else if (action === "content" && method === "GET") {
        return done(await downloadFile(ctx, id, reply))
      }
      return false
    case "batches":
      if (id === undefined) {
        if (method === "POST") return done(reply.json(200, wireBatch(ctx, await ctx.batches.create(await readJson(reply.req)))))
        if (method === "GET") {
          const limit = intParam(query, "limit", 20, 1, 100)
          const page = await ctx.batches.list(query.get("after") ?? undefined, limit)
          const data = page["data"] as ReadonlyArray<Obj>
          return done(reply.json(200, { ...page, data: data.map((batch) => wireBatch(ctx, batch)) }))
        }
      } else if (action === undefined && method === "GET") {
        return done(reply.json(200, wireBatch(ctx, await ctx.batches.retrieve(id))))
      } else if (action === "cancel" && method === "POST") {
        return done(reply.json(200, wireBatch(ctx, await ctx.batches.cancel(id))))
      }
      return false
    default:
      return false
  }
}

const done = (_: void): true => true

type Obj = { readonly [key: string]: unknown }

const pascalCase = (status: string): string =>
  status.split("_").map((word) => word.charAt(0).toUpperCase() + word.slice(1)).join("")

/** A Batch object in the configured wire style (OpenAI's by default: unchanged). */
const wireBatch = (ctx: OpenAiContext, batch: Obj): Obj => {
  const style = ctx.wire
  if (style === undefined || (style.upperCaseStatuses !== true && style.azureQuirks !== true)) return batch
  const status = String(batch["status"])
  if (style.upperCaseStatuses === true) return { ...batch, status: status.toUpperCase() }
  return {
    ...batch,
    status: pascalCase(status),
    output_file_id: batch["output_file_id"] ?? "",
    error_file_id: batch["error_file_id"] ?? ""
  }
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

export const fileObject = (file: FileRecord) => ({
  id: file.id,
  object: "file",
  bytes: file.bytes,
  created_at: file.created_at,
  filename: file.filename,
  purpose: file.purpose,
  status: "processed",
  expires_at: null,
  status_details: null
})

const getFile = (ctx: OpenAiContext, id: string): FileRecord => {
  const file = ctx.store.files.get(id)
  if (file === undefined) throw notFound(`No such File object: ${id}`, "id")
  return file
}

const uploadFile = async (ctx: OpenAiContext, reply: Reply): Promise<void> => {
  const boundary = boundaryOf(reply.req.headers["content-type"])
  if (boundary === undefined) throw invalidRequest("Expected a multipart/form-data body with a boundary.", null, "invalid_content_type")
  const id = `file-${randomHex(12)}`
  const path = ctx.store.filePath(id)
  try {
    const upload = await parseMultipartUpload(reply.req, boundary, path, {
      maxFileBytes: MAX_FILE_BYTES,
      maxFieldBytes: 64 * 1024
    })
    const purpose = upload.fields.get("purpose")
    if (purpose === undefined || purpose === "") throw missingParameter("purpose")
    if (!FILE_PURPOSES.includes(purpose)) {
      throw invalidValue("purpose", `'${purpose}'. Supported values are: ${FILE_PURPOSES.map((p) => `'${p}'`).join(", ")}.`)
    }
    const file = upload.file
    if (file === null) throw missingParameter("file")
    const filename = upload.fields.get("file_name") || file.filename || "upload"
    if (BATCH_INPUT_PURPOSES.includes(purpose)) {
      if (!filename.toLowerCase().endsWith(".jsonl")) {
        throw invalidRequest("Invalid file format for Batch API. Must be .jsonl", "file", "invalid_file_format")
      }
      if (file.bytes > MAX_BATCH_FILE_BYTES) {
        throw new ApiError(413, "File is too large for the Batch API: the limit is 200 MB.", "invalid_request_error", "file", "file_too_large")
      }
    }
    const record: FileRecord = {
      id,
      bytes: file.bytes,
      created_at: toUnixSeconds(ctx.clock()),
      filename,
      purpose,
      seq: ctx.store.nextSeq()
    }
    ctx.store.files.set(id, record)
    await ctx.store.persist()
    reply.json(200, fileObject(record))
  } catch (error) {
    if (!ctx.store.files.has(id)) await unlink(path).catch(() => undefined)
    throw error
  }
}

const listFiles = (ctx: OpenAiContext, query: URLSearchParams, reply: Reply): void => {
  const limit = intParam(query, "limit", 10_000, 1, 10_000)
  const order = query.get("order") ?? "desc"
  if (order !== "asc" && order !== "desc") throw invalidValue("order", `'${order}'. Supported values are: 'asc', 'desc'.`)
  const purpose = query.get("purpose")
  const all = [...ctx.store.files.values()]
    .filter((file) => purpose === null || purpose === "" || file.purpose === purpose)
    .sort((a, b) => (order === "asc" ? a.seq - b.seq : b.seq - a.seq))
  const after = query.get("after")
  let start = 0
  if (after !== null && after !== "") {
    const index = all.findIndex((file) => file.id === after)
    start = index === -1 ? all.length : index + 1
  }
  const page = all.slice(start, start + limit)
  reply.json(200, {
    object: "list",
    data: page.map(fileObject),
    first_id: page[0]?.id ?? null,
    last_id: page[page.length - 1]?.id ?? null,
    has_more: start + limit < all.length
  })
}

const deleteFile = async (ctx: OpenAiContext, id: string, reply: Reply): Promise<void> => {
  getFile(ctx, id)
  ctx.store.files.delete(id)
  // A live batch still reads its input at result time: keep the bytes until the state is reset.
  if (!ctx.store.isInputOfLiveBatch(id)) await unlink(ctx.store.filePath(id)).catch(() => undefined)
  await ctx.store.persist()
  reply.json(200, { id, object: "file", deleted: true })
}

const downloadFile = async (ctx: OpenAiContext, id: string, reply: Reply): Promise<void> => {
  const file = getFile(ctx, id)
  if (BATCH_INPUT_PURPOSES.includes(file.purpose)) throw invalidRequest(`Not allowed to download files of purpose: ${file.purpose}`, null, "invalid_request")
  await reply.file(ctx.store.filePath(id), file.bytes, "application/octet-stream")
}
