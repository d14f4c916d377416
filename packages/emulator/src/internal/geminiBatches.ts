/**
 * Gemini batch mode on top of the emulator's batch service.
 *
 * A Gemini batch *is* a batch of the shared `Batches` service: at create, its requests
 * (inline, or the lines of an uploaded JSONL file) are written as chat-completions lines to a
 * private input file and handed to `Batches.create`. So the lifecycle in time, the timing
 * options, errorRate (first submission only), invalidJsonRate, dropLines, lateOutputFileMs,
 * forced expiry (`expireBatch`), reset, restarts on a stateDir and the ledger all work as for
 * OpenAI batches, with the same deterministic, schema-aware answers. What this module adds is
 * the Gemini view:
 *
 * - the Operation (`BATCH_STATE_*`, int64-as-string `batchStats`, RFC 3339 times);
 * - once terminal, the OpenAI result files are turned into Gemini result lines
 *   (`{key, response}` / `{key, error}`), in a File API file (`response.responsesFile`) for a
 *   file input, or in the Operation (`inlinedResponses`, in input order) for inline requests;
 * - EXPIRED and CANCELLED batches return nothing (and their ledger deliveries are cleared,
 *   since nothing was delivered).
 *
 * The Gemini facts are kept on the records themselves (an extra `gemini` field, persisted
 * with them in state.json), so nothing else of the emulator needs to know about Gemini.
 * Known differences: a Gemini batch is also visible through the OpenAI `/v1/batches` routes
 * (under the same id), and a batch holds at most 50,000 requests (the shared validator's cap).
 */
import { readFile, unlink, writeFile } from "node:fs/promises"
import { GeminiDisplayName } from "@sluice/core"
import { CHAT_ENDPOINT } from "./answers.js"
import type { Batches } from "./batches.js"
import type { Clock } from "./clock.js"
import { toUnixSeconds } from "./clock.js"
import { randomHex } from "./hash.js"
import { isBlank, readLineChunks } from "./jsonl.js"
import type { BatchFinal, BatchRecord, FileRecord, Store } from "./store.js"
import { AppendFile } from "./appendFile.js"
import {
  failedPrecondition,
  invalidArgument,
  isObject,
  lineError,
  notFound,
  toChatBody,
  toGenerateContentResponse
} from "./geminiWire.js"

type Obj = { readonly [key: string]: unknown }

export interface GeminiContext {
  readonly store: Store
  readonly batches: Batches
  readonly clock: Clock
}

/** `purpose` of Gemini File API files in the shared store (OpenAI's /v1/files lists them under it). */
export const GEMINI_FILE_PURPOSE = "gemini"
/** The File API deletes files after 48 h (reported as expirationTime; not enforced). */
const FILE_TTL_MS = 48 * 60 * 60 * 1000
/** Largest File API upload. */
export const MAX_GEMINI_FILE_BYTES = 2 * 1024 * 1024 * 1024
/** Key given to requests sent without one (never shown back). */
const SYNTHETIC_KEY = "__sluice_gemini_request_"

/** `@type` of the Operation's metadata and response, in the API version of the call. */
const typeUrl = (version: string, message: string): string => `type.googleapis.com/google.ai.generativelanguage.${version}.${message}`

/** Where the client called: file URIs and upload URLs point back at that origin and API version. */
export interface UrlBase {
  readonly origin: string
  /** `v1beta` or `v1`. */
  readonly version: string
}

export interface GeminiFileInfo {
  readonly displayName: string
  readonly mimeType: string
  readonly source: "UPLOADED" | "GENERATED"
  readonly createdMs: number
}
export type GeminiFileRecord = FileRecord & { readonly gemini: GeminiFileInfo }

export interface GeminiBatchInfo {
  readonly displayName: string
  /** `models/…` */
  readonly model: string
  readonly mode: "inline" | "file"
  /** `files/…` of a file input. */
  readonly inputFile: string | null
  readonly requestCount: number
  /** Results translated (completed) or withdrawn (expired, cancelled): done once. */
  settled: boolean
  /** `DELETE batches/{id}`: gone from the API (not cancelled), still in the ledger. */
  deleted?: boolean
}
export type GeminiBatchRecord = BatchRecord & { gemini: GeminiBatchInfo }

export const isGeminiFile = (file: FileRecord | undefined): file is GeminiFileRecord =>
  file !== undefined && file.purpose === GEMINI_FILE_PURPOSE && isObject((file as { gemini?: unknown }).gemini)

export const isGeminiBatch = (record: BatchRecord | undefined): record is GeminiBatchRecord =>
  record !== undefined && isObject((record as { gemini?: unknown }).gemini)

/** What the ledger adds for a Gemini batch: `api: "gemini"`, and `deleted` once deleted. */
export const geminiLedgerFields = (record: BatchRecord): { readonly api?: "gemini"; readonly deleted?: boolean } =>
  isGeminiBatch(record) ? { api: "gemini", deleted: record.gemini.deleted === true } : {}

const iso = (ms: number): string => new Date(ms).toISOString()

const STATES: Readonly<Record<string, string>> = {
  validating: "BATCH_STATE_PENDING",
  in_progress: "BATCH_STATE_RUNNING",
  finalizing: "BATCH_STATE_RUNNING",
  cancelling: "BATCH_STATE_RUNNING",
  completed: "BATCH_STATE_SUCCEEDED",
  failed: "BATCH_STATE_FAILED",
  expired: "BATCH_STATE_EXPIRED",
  cancelled: "BATCH_STATE_CANCELLED"
}
const TERMINAL: ReadonlySet<string> = new Set(["completed", "failed", "expired", "cancelled"])

/** Page tokens are opaque to clients: the `seq` of the last item, base64url-encoded. */
const pageToken = (seq: number): string => Buffer.from(`seq:${seq}`).toString("base64url")
const afterSeq = (token: string | null): number => {
  if (token === null || token === "") return Infinity
  const match = /^seq:(\d+)$/.exec(Buffer.from(token, "base64url").toString("utf8"))
  if (match === null) throw invalidArgument("Invalid page token.")
  return Number(match[1])
}

const field = (obj: Obj, camel: string): unknown => {
  if (camel in obj) return obj[camel]
  return obj[camel.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)]
}

export class GeminiBatches {
  private readonly settling = new Map<string, Promise<void>>()

  constructor(private readonly ctx: GeminiContext) {}

  // -------------------------------------------------------------------------------------------
  // Files
  // -------------------------------------------------------------------------------------------

  /** Registers a finished upload (its bytes are already at `store.filePath(id)`). */
  async registerUpload(id: string, bytes: number, displayName: string, mimeType: string): Promise<GeminiFileRecord> {
    const now = this.ctx.clock()
    const record: GeminiFileRecord = {
      id,
      bytes,
      created_at: toUnixSeconds(now),
      filename: displayName,
      purpose: GEMINI_FILE_PURPOSE,
      seq: this.ctx.store.nextSeq(),
      gemini: { displayName, mimeType, source: "UPLOADED", createdMs: now }
    }
    this.ctx.store.files.set(id, record)
    await this.ctx.store.persist()
    return record
  }

  file(id: string): GeminiFileRecord {
    const file = this.ctx.store.files.get(id)
    if (!isGeminiFile(file)) throw notFound(`File files/${id} not found.`)
    return file
  }

  fileObject(file: GeminiFileRecord, { origin, version }: UrlBase): Obj {
    return {
      name: `files/${file.id}`,
      ...(file.gemini.displayName === "" ? {} : { displayName: file.gemini.displayName }),
      mimeType: file.gemini.mimeType,
      sizeBytes: String(file.bytes),
      createTime: iso(file.gemini.createdMs),
      updateTime: iso(file.gemini.createdMs),
      expirationTime: iso(file.gemini.createdMs + FILE_TTL_MS),
      uri: `${origin}/${version}/files/${file.id}`,
      ...(file.gemini.source === "GENERATED" ? { downloadUri: `${origin}/download/${version}/files/${file.id}:download?alt=media` } : {}),
      state: "ACTIVE",
      source: file.gemini.source
    }
  }

  listFiles(pageSize: number, token: string | null, base: UrlBase): Obj {
    const after = afterSeq(token)
    const all = [...this.ctx.store.files.values()]
      .filter(isGeminiFile)
      .filter((file) => file.seq < after)
      .sort((a, b) => b.seq - a.seq)
    const page = all.slice(0, pageSize)
    const last = page[page.length - 1]
    return {
      files: page.map((file) => this.fileObject(file, base)),
      ...(all.length > pageSize && last !== undefined ? { nextPageToken: pageToken(last.seq) } : {})
    }
  }

  async deleteFile(id: string): Promise<void> {
    this.file(id)
    this.ctx.store.files.delete(id)
    await unlink(this.ctx.store.filePath(id)).catch(() => undefined)
    await this.ctx.store.persist()
  }

  // -------------------------------------------------------------------------------------------
  // Batches
  // -------------------------------------------------------------------------------------------

  /** `POST /{version}/models/{model}:batchGenerateContent`. */
  async create(model: string, body: unknown, version: string): Promise<Obj> {
    if (!this.ctx.batches.models.accepts(model)) {
      throw notFound(
        `models/${model} is not found for API version ${version}, or is not supported for batchGenerateContent. Call ListModels to see the list of available models and their supported methods.`
      )
    }
    if (!isObject(body)) throw invalidArgument("Invalid JSON payload: expected an object.")
    const batch = field(body, "batch")
    if (!isObject(batch)) throw invalidArgument("* BatchGenerateContentRequest.batch: batch is required")
    const displayNameValue = field(batch, "displayName")
    const displayName = typeof displayNameValue === "string" ? displayNameValue : ""
    const input = field(batch, "inputConfig")
    if (!isObject(input)) throw invalidArgument("* GenerateContentBatch.input_config: input_config is required")
    const fileName = field(input, "fileName")
    const requests = field(input, "requests")
    if ((typeof fileName === "string") === (requests !== undefined && requests !== null)) {
      throw invalidArgument("* GenerateContentBatch.input_config: exactly one of file_name or requests must be set")
    }

    const { store } = this.ctx
    const inputId = `file-gemini-${randomHex(12)}`
    const inputPath = store.filePath(inputId)
    const writer = new AppendFile(inputPath)
    let count = 0
    const line = (key: unknown, request: unknown): string => {
      count++
      const customId = typeof key === "string" && key !== "" ? key : `${SYNTHETIC_KEY}${count}`
      return `${JSON.stringify({ custom_id: customId, method: "POST", url: CHAT_ENDPOINT, body: toChatBody(model, request) })}\n`
    }
    let inputFile: string | null = null
    try {
      try {
        if (typeof fileName === "string") {
          const id = fileName.replace(/^files\//, "")
          const source = store.files.get(id)
          if (!isGeminiFile(source)) throw notFound(`File ${fileName} not found.`)
          inputFile = `files/${id}`
          for await (const lines of readLineChunks(store.filePath(id))) {
            let text = ""
            for (const raw of lines) {
              if (isBlank(raw)) continue
              let parsed: unknown
              try {
                parsed = JSON.parse(raw)
              } catch {
                // Kept as is: the shared validator fails the batch on it (invalid JSON line).
                count++
                text += `${raw}\n`
                continue
              }
              text += isObject(parsed) ? line(parsed["key"], parsed["request"]) : line(undefined, undefined)
            }
            if (text !== "") await writer.write(text)
          }
        } else {
          const list = isObject(requests) ? field(requests, "requests") : requests
          if (!Array.isArray(list)) throw invalidArgument("* GenerateContentBatch.input_config.requests.requests: must be a list")
          for (const item of list) {
            const metadata = isObject(item) ? item["metadata"] : undefined
            await writer.write(line(isObject(metadata) ? metadata["key"] : undefined, isObject(item) ? item["request"] : undefined))
          }
        }
      } finally {
        await writer.close()
      }
      if (count === 0) throw invalidArgument("* GenerateContentBatch.input_config: the batch has no requests")
    } catch (error) {
      await unlink(inputPath).catch(() => undefined)
      throw error
    }

    store.files.set(inputId, {
      id: inputId,
      bytes: writer.bytes,
      created_at: toUnixSeconds(this.ctx.clock()),
      filename: `${inputId}.jsonl`,
      purpose: "batch",
      seq: store.nextSeq()
    })
    let view: Obj
    try {
      // Not OpenAI's `batch_…` shape: `/v1/batches/{id}` tells the two APIs apart by it.
      view = await this.ctx.batches.create({
        input_file_id: inputId,
        endpoint: CHAT_ENDPOINT,
        completion_window: "24h",
        metadata: GeminiDisplayName.metadataOfDisplayName(displayName)
      }, randomHex(16))
    } catch (error) {
      store.files.delete(inputId)
      await unlink(inputPath).catch(() => undefined)
      throw error
    } finally {
      // Hidden from the file listings; the live batch keeps the bytes until it has finished.
      store.files.delete(inputId)
    }
    const record = store.batches.get(view["id"] as string)
    if (record === undefined) throw new Error("the created batch is missing from the store")
    Object.assign(record, {
      gemini: {
        displayName,
        model: `models/${model}`,
        mode: inputFile === null ? "inline" : "file",
        inputFile,
        requestCount: count,
        settled: false
      } satisfies GeminiBatchInfo
    })
    await store.persist()
    return this.operation(record as GeminiBatchRecord, view, version)
  }

  private record(id: string): GeminiBatchRecord {
    const record = this.ctx.store.batches.get(id)
    if (!isGeminiBatch(record) || record.gemini.deleted === true) throw notFound(`Batch batches/${id} not found.`)
    return record
  }

  async retrieve(id: string, version: string): Promise<Obj> {
    const record = this.record(id)
    return this.operation(record, await this.ctx.batches.retrieve(id), version)
  }

  async list(pageSize: number, token: string | null, version: string): Promise<Obj> {
    const after = afterSeq(token)
    const all = [...this.ctx.store.batches.values()]
      .filter(isGeminiBatch)
      .filter((record) => record.gemini.deleted !== true && record.seq < after)
      .sort((a, b) => b.seq - a.seq)
    const page = all.slice(0, pageSize)
    const operations = []
    for (const record of page) operations.push(await this.operation(record, await this.ctx.batches.retrieve(record.id), version))
    const last = page[page.length - 1]
    return { operations, ...(all.length > pageSize && last !== undefined ? { nextPageToken: pageToken(last.seq) } : {}) }
  }

  /** `POST batches/{id}:cancel`: answers an empty object, like google.protobuf.Empty. */
  async cancel(id: string): Promise<Obj> {
    this.record(id)
    const view = await this.ctx.batches.retrieve(id)
    if (TERMINAL.has(view["status"] as string)) {
      throw failedPrecondition(`Batch batches/${id} has already finished (${STATES[view["status"] as string]}); it cannot be cancelled.`)
    }
    await this.ctx.batches.cancel(id)
    return {}
  }

  /**
   * `DELETE batches/{id}` (google.longrunning DeleteOperation): the client is no longer
   * interested in the result. The batch is not cancelled; it is gone from get and list, and
   * stays in the ledger (`deleted: true`). Its result file, a File API file, is not deleted.
   */
  async delete(id: string): Promise<Obj> {
    const record = this.record(id)
    record.gemini.deleted = true
    await this.ctx.store.persist()
    return {}
  }

  // -------------------------------------------------------------------------------------------
  // The Operation
  // -------------------------------------------------------------------------------------------

  private async operation(record: GeminiBatchRecord, view: Obj, version: string): Promise<Obj> {
    const status = view["status"] as string
    const terminal = TERMINAL.has(status)
    const now = this.ctx.clock()
    const final = record.final
    let output: Obj | undefined
    if (terminal && final !== null) {
      await this.settle(record, final)
      // lateOutputFileMs: SUCCEEDED, but the output shows up only later.
      if (final.status === "completed" && now >= final.outputVisibleAtMs) output = await this.output(record, version)
    }
    const counts = isObject(view["request_counts"]) ? view["request_counts"] : {}
    const succeeded = typeof counts["completed"] === "number" ? counts["completed"] : 0
    const failed = typeof counts["failed"] === "number" ? counts["failed"] : 0
    const total = record.gemini.requestCount
    const endMs = final === null ? null : (final.completedAtMs ?? final.cancelledAtMs ?? final.expiredAtMs ?? final.failedAtMs)
    const name = `batches/${record.id}`
    const metadata = {
      "@type": typeUrl(version, "GenerateContentBatch"),
      name,
      ...(record.gemini.displayName === "" ? {} : { displayName: record.gemini.displayName }),
      model: record.gemini.model,
      ...(record.gemini.inputFile === null ? {} : { inputConfig: { fileName: record.gemini.inputFile } }),
      createTime: iso(record.createdMs),
      updateTime: iso(terminal && endMs !== null ? endMs : now),
      ...(terminal && endMs !== null ? { endTime: iso(endMs) } : {}),
      state: STATES[status] ?? "BATCH_STATE_UNSPECIFIED",
      batchStats: {
        requestCount: String(total),
        successfulRequestCount: String(succeeded),
        failedRequestCount: String(failed),
        pendingRequestCount: String(terminal ? 0 : Math.max(0, total - succeeded - failed))
      },
      ...(output === undefined ? {} : { output })
    }
    const errors = isObject(view["errors"]) && Array.isArray(view["errors"]["data"]) ? view["errors"]["data"] : []
    const error = status === "failed" ?
      {
        code: 3,
        message: errors
          .filter(isObject)
          .map((e) => `${String(e["message"])}${typeof e["line"] === "number" ? ` (line ${e["line"]})` : ""}`)
          .join("; ") || "The batch failed."
      } :
      undefined
    return {
      name,
      metadata,
      ...(terminal ? { done: true } : {}),
      ...(output === undefined ? {} : { response: output }),
      ...(error === undefined ? {} : { error })
    }
  }

  private responsesId(record: GeminiBatchRecord): string {
    const hex = record.id.replace(/^batch_/, "")
    return record.gemini.mode === "file" ? `batch-${hex}` : `gemini-inline-${hex}`
  }

  private async output(record: GeminiBatchRecord, version: string): Promise<Obj> {
    const id = this.responsesId(record)
    const type = typeUrl(version, "GenerateContentBatchOutput")
    if (record.gemini.mode === "file") return { "@type": type, responsesFile: `files/${id}` }
    // Inline: the responses in input order (the shared writer processes out of order).
    const order = new Map<string, number>()
    const ids = await readFile(this.ctx.store.idsPath(record.id), "utf8").catch(() => "")
    for (const line of ids.split("\n")) if (line !== "") order.set(JSON.parse(line) as string, order.size)
    const text = await readFile(this.ctx.store.filePath(id), "utf8").catch(() => "")
    const entries: Array<{ readonly at: number; readonly entry: Obj }> = []
    for (const line of text.split("\n")) {
      if (line === "") continue
      const { key, ...rest } = JSON.parse(line) as { key?: string } & Obj
      entries.push({
        at: key === undefined ? Infinity : (order.get(key) ?? Infinity),
        entry: { ...rest, ...(key === undefined ? {} : { metadata: { key } }) }
      })
    }
    entries.sort((a, b) => a.at - b.at)
    return { "@type": type, inlinedResponses: { inlinedResponses: entries.map((e) => e.entry) } }
  }

  /**
   * Once per terminal batch: a completed one gets its Gemini responses (from the OpenAI
   * result files, which are then removed); an expired or cancelled one returns nothing, so its
   * ledger deliveries are cleared.
   */
  private settle(record: GeminiBatchRecord, final: BatchFinal): Promise<void> {
    if (record.gemini.settled) return Promise.resolve()
    const running = this.settling.get(record.id)
    if (running !== undefined) return running
    const promise = (async () => {
      const { store } = this.ctx
      if (final.status === "completed") await this.writeResponses(record, final)
      else if (final.status === "expired" || final.status === "cancelled") await writeFile(store.deliveredPath(record.id), "")
      for (const id of [final.outputFileId, final.errorFileId]) {
        if (id === null || !store.files.has(id)) continue
        store.files.delete(id)
        await unlink(store.filePath(id)).catch(() => undefined)
      }
      record.gemini.settled = true
      await store.persist()
    })()
    this.settling.set(record.id, promise)
    const cleanup = () => this.settling.delete(record.id)
    promise.then(cleanup, cleanup)
    return promise
  }

  private async writeResponses(record: GeminiBatchRecord, final: BatchFinal): Promise<void> {
    const { store } = this.ctx
    const id = this.responsesId(record)
    const writer = new AppendFile(store.filePath(id))
    const modelVersion = record.gemini.model.replace(/^models\//, "")
    try {
      for (const source of [final.outputFileId, final.errorFileId]) {
        if (source === null) continue
        for await (const lines of readLineChunks(store.filePath(source))) {
          let text = ""
          for (const raw of lines) {
            if (isBlank(raw)) continue
            const translated = geminiLine(raw, modelVersion)
            if (translated !== undefined) text += `${translated}\n`
          }
          if (text !== "") await writer.write(text)
        }
      }
    } finally {
      await writer.close()
    }
    if (record.gemini.mode === "file") {
      const now = this.ctx.clock()
      const file: GeminiFileRecord = {
        id,
        bytes: writer.bytes,
        created_at: toUnixSeconds(now),
        filename: id,
        purpose: GEMINI_FILE_PURPOSE,
        seq: store.nextSeq(),
        gemini: { displayName: id, mimeType: "application/jsonl", source: "GENERATED", createdMs: now }
      }
      store.files.set(id, file)
    }
  }
}

/** One OpenAI result line as a Gemini result line; undefined for lines Gemini never writes. */
const geminiLine = (raw: string, modelVersion: string): string | undefined => {
  const line = JSON.parse(raw) as Obj
  const customId = typeof line["custom_id"] === "string" ? line["custom_id"] : ""
  const key = customId.startsWith(SYNTHETIC_KEY) ? {} : { key: customId }
  const response = line["response"]
  if (!isObject(response)) return undefined // batch_expired / batch_cancelled: not in a completed batch
  const status = typeof response["status_code"] === "number" ? response["status_code"] : 500
  if (status === 200 && isObject(response["body"])) {
    return JSON.stringify({ ...key, response: toGenerateContentResponse(response["body"], modelVersion) })
  }
  return JSON.stringify({ ...key, error: lineError(status) })
}
