/**
 * The Gemini batch mode lifecycle: the calls. Stage a shard (inline below a size, else a
 * resumable File API upload streamed from disk), find an upload by name after a crash,
 * create a batch (never retried), poll, list, cancel, and read the results (a responses file,
 * streamed, or the Operation's inline responses). What the bytes mean is `codec.ts`.
 */
import * as HttpBody from "@effect/platform/HttpBody"
import * as HttpClient from "@effect/platform/HttpClient"
import type { BatchResult } from "@sluice/core"
import { Chunk, Duration, Effect, Either, Option, Redacted, Stream } from "effect"
import * as NodeFs from "node:fs"
import type {
  BatchInfo,
  BatchProvider,
  CreateBatch,
  OnlineApi,
  ProviderCapabilities,
  ProviderLimits,
  ProviderStorage,
  StagedInput,
  StoredFile
} from "../../BatchProvider.js"
import { trimKey } from "../../internal/env.js"
import type { HttpSettings, ProviderHttp, RequestSpec } from "../../internal/http.js"
import { defaultMaxResponseBytes, defaultOnlineTimeout, makeProviderHttp, truncate } from "../../internal/http.js"
import * as Online from "../../internal/online.js"
import * as RateLimit from "../../RateLimit.js"
import { classifyResultLines, defaultMaxLineBytes } from "../../internal/lines.js"
import { reportedBaseUrl } from "../../internal/origin.js"
import { retryOptions } from "../../internal/retry.js"
import { fileStream } from "../../internal/upload.js"
import { ProviderError } from "../../ProviderError.js"
import * as ProviderIdentity from "../../ProviderIdentity.js"
import type { GeminiConfig } from "../GeminiBatch.js"
import type { WireOperation } from "./codec.js"
import {
  decodeBatchInfo,
  decodeBatchPage,
  decodeFilePage,
  decodeOperation,
  decodeUploaded,
  displayNameOf,
  encode,
  inlineBody,
  inlineResponseLines,
  inlineResponses,
  modelName,
  modelOfLine,
  onlineLine,
  onlineResult,
  parseResultLine,
  parseResultRecord,
  toBatchInfo,
  toStoredFile
} from "./codec.js"

/**
 * Default API version. Batch mode is served under `v1beta` and `v1` alike (the official SDK
 * 2.x calls `v1beta`, 3.x `v1`); `GEMINI_API_VERSION` (or `apiVersion`) picks another.
 */
export const defaultApiVersion = "v1beta"

/** The whole inline create body must stay under this (Gemini: "< 20 MB"). */
export const maxInlineBodyBytes = 20_000_000

/**
 * Default largest shard file sent inline. The inline body is a little larger than the file
 * (`"metadata":{"key":…}` instead of `"key":…`, about 16 bytes a line, so under 10 % for
 * any line sluice writes), so this leaves a safe margin below 20 MB.
 */
export const defaultInlineMaxBytes = 16_000_000

/**
 * Default largest JSON answer read (`maxResponseBytes`): an ended inline batch's Operation
 * holds all its answers (the input was under 20 MB), and it is read whole on every poll and
 * list page, so Gemini gets more room than the other providers' 64 MiB.
 */
export const defaultMaxOperationBytes = Math.max(defaultMaxResponseBytes, 256 * 1024 * 1024)

// -----------------------------------------------------------------------------------------
// Limits and capabilities
// -----------------------------------------------------------------------------------------

export const limits: ProviderLimits = {
  // Gemini documents no request-count limit per batch; this is a sane ceiling.
  maxRequests: 100_000,
  // The File API takes files up to 2 GB; stay safely below it.
  maxBytes: 1_900_000_000,
  // The model is part of the create URL.
  oneModelPerShard: true
}

export const capabilities: ProviderCapabilities = {
  cancel: true,
  list: true,
  // No metadata field, but `displayName` carries run, shard and submission and is parsed back
  // into `metadata` (see the module comment): the runner adopts orphans by it.
  metadata: true,
  // EXPIRED batches return no results.
  partialResults: false
}

// -----------------------------------------------------------------------------------------
// Shard files
// -----------------------------------------------------------------------------------------

/** The first non-blank line of a file, read in small chunks (never the whole file). */
const readFirstLine = async (path: string): Promise<string> => {
  const handle = await NodeFs.promises.open(path, "r")
  try {
    const chunks: Array<Buffer> = []
    let position = 0
    for (;;) {
      const buffer = Buffer.alloc(64 * 1024)
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, position)
      if (bytesRead === 0) break
      position += bytesRead
      const chunk = buffer.subarray(0, bytesRead)
      let start = 0
      for (let nl = chunk.indexOf(10); nl !== -1; nl = chunk.indexOf(10, start)) {
        const line = Buffer.concat([...chunks, chunk.subarray(start, nl)]).toString("utf8")
        chunks.length = 0
        if (line.trim() !== "") return line
        start = nl + 1
      }
      chunks.push(chunk.subarray(start))
    }
    return Buffer.concat(chunks).toString("utf8")
  } finally {
    await handle.close()
  }
}

// -----------------------------------------------------------------------------------------
// The provider
// -----------------------------------------------------------------------------------------

export const inlinePrefix = "inline:"
const jsonlMimeType = "application/jsonl"

const clamp = (n: number | undefined, min: number, max: number, fallback: number): number =>
  n === undefined || !Number.isFinite(n) ? fallback : Math.min(max, Math.max(min, Math.floor(n)))

/** Encodes each segment of a resource name (`batches/abc`), keeping the slashes. */
const resourcePath = (name: string): string => name.split("/").map(encodeURIComponent).join("/")

/** A batch name from an id given with or without its collection. */
const batchName = (id: string): string => (id.startsWith("batches/") ? id : `batches/${id}`)

const describe = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

/** Builds the provider over a given `HttpClient`. */
export const makeWithClient = (client: HttpClient.HttpClient, config: GeminiConfig): BatchProvider => {
  const name = config.name ?? "gemini"
  const version = `/${(config.apiVersion ?? "").replace(/^\/+|\/+$/g, "") || defaultApiVersion}`
  const baseUrl = config.baseUrl.replace(/\/+$/, "")
  const requestTimeout = config.requestTimeout ?? Duration.seconds(60)
  const idleTimeout = config.downloadIdleTimeout ?? Duration.seconds(60)
  const uploadRate = config.minUploadBytesPerSecond ?? 256 * 1024
  const listPageSize = clamp(config.listPageSize, 1, 1000, 100)
  const filesPageSize = clamp(config.filesPageSize, 1, 100, 100)
  const inlineMaxBytes = clamp(config.inlineMaxBytes, 0, maxInlineBodyBytes, defaultInlineMaxBytes)
  const retry = retryOptions(config.retry)
  const apiKey = trimKey(config.apiKey)
  const maxLineBytes = clamp(config.maxResultLineBytes, 1, Number.MAX_SAFE_INTEGER, defaultMaxLineBytes)

  const headers: Record<string, string> = { accept: "application/json", "user-agent": "sluice", ...config.headers }
  const auth = config.auth ?? "api-key"
  const secretHeaders: Record<string, Redacted.Redacted<string>> = { ...config.secretHeaders }
  if (auth === "api-key") secretHeaders["x-goog-api-key"] = apiKey
  else if (auth === "bearer") secretHeaders["authorization"] = Redacted.make(`Bearer ${Redacted.value(apiKey)}`)
  else secretHeaders[auth.header.toLowerCase()] = apiKey

  const settings: HttpSettings = {
    provider: name,
    baseUrl,
    headers,
    secretHeaders,
    secrets: [apiKey],
    requestTimeout,
    retry,
    quotaCodes: new Set(),
    allowInsecureHttp: config.allowInsecureHttp,
    tracePropagation: config.tracePropagation,
    // An ended inline batch carries its answers in its Operation, on every read (poll, list).
    maxResponseBytes: config.maxResponseBytes ?? defaultMaxOperationBytes
  }
  const http: ProviderHttp = makeProviderHttp(client, settings)

  /** Gemini answers a wrong key with 400 INVALID_ARGUMENT "API key not valid": that is Unauthorized. */
  const fixAuth = (e: ProviderError): ProviderError =>
    e.reason === "Rejected" && /API key not valid|API_KEY_INVALID/i.test(e.description) ?
      new ProviderError({
        reason: "Unauthorized",
        provider: e.provider,
        operation: e.operation,
        description: e.description,
        ...(e.status === undefined ? {} : { status: e.status })
      }) :
      e

  const json = (spec: RequestSpec | Effect.Effect<RequestSpec, ProviderError>, options: Parameters<ProviderHttp["json"]>[1]) =>
    http.json(spec, options).pipe(Effect.mapError(fixAuth))

  const decodeWith = <A>(operation: string, decode: (u: unknown) => Either.Either<A, string>) => (u: unknown) =>
    Either.match(decode(u), {
      onLeft: (reason) =>
        Effect.fail(http.error({ reason: "Decode", operation, description: truncate(`unexpected response: ${reason}`) })),
      onRight: Effect.succeed
    })

  const readError = (operation: string) => (cause: unknown) =>
    http.error({ reason: "Rejected", operation, description: `cannot read shard file: ${describe(cause)}` })

  const jsonBody = (value: unknown) => HttpBody.text(JSON.stringify(value), "application/json")

  const timeoutFor = (bytes: number) => Duration.sum(requestTimeout, Duration.millis(Math.ceil((bytes / uploadRate) * 1000)))

  // --- files ---

  /** Resumable upload, step 1: opens a session; its URL comes back in `x-goog-upload-url`. */
  const startUpload = (size: number, displayName: string): Effect.Effect<string, ProviderError> =>
    Effect.suspend(() => {
      let uploadUrl: string | undefined
      // A client that keeps the header of this one call (the JSON helper returns bodies only).
      const capturing = HttpClient.tap(client, (response) =>
        Effect.sync(() => {
          uploadUrl = response.headers["x-goog-upload-url"]
        }))
      const operation = `POST /upload${version}/files`
      return makeProviderHttp(capturing, settings).json({
        method: "POST",
        path: `/upload${version}/files`,
        headers: {
          "x-goog-upload-protocol": "resumable",
          "x-goog-upload-command": "start",
          "x-goog-upload-header-content-length": String(size),
          "x-goog-upload-header-content-type": jsonlMimeType
        },
        body: jsonBody({ file: { display_name: displayName } })
      }, { retry: true }).pipe(
        Effect.mapError(fixAuth),
        Effect.flatMap(() =>
          uploadUrl === undefined || uploadUrl === "" ?
            Effect.fail(http.error({ reason: "Decode", operation, description: "no x-goog-upload-url in the answer" })) :
            Effect.succeed(uploadUrl)
        )
      )
    })

  /**
   * Where to send the bytes. Under the base URL: through the normal client. Elsewhere: the
   * session URL is itself the credential, so the API key is sent only to the base URL's origin.
   */
  const uploadTarget = (uploadUrl: string): { http: ProviderHttp; path: string; urlParams: Record<string, string> } => {
    const url = new URL(uploadUrl)
    const urlParams = Object.fromEntries(url.searchParams)
    const base = new URL(baseUrl)
    const basePath = base.pathname.replace(/\/+$/, "")
    if (url.origin === base.origin && url.pathname.startsWith(`${basePath}/`)) {
      return { http, path: url.pathname.slice(basePath.length), urlParams }
    }
    const other = makeProviderHttp(client, {
      ...settings,
      baseUrl: url.origin,
      secretHeaders: url.origin === base.origin ? secretHeaders : {}
    })
    return { http: other, path: url.pathname, urlParams }
  }

  /** Uploads a shard through the File API (resumable: start, then upload + finalize in one request). */
  const upload = (path: string, displayName: string): Effect.Effect<StagedInput, ProviderError> => {
    const operation = `POST /upload${version}/files`
    return Effect.gen(function*() {
      const size = (yield* Effect.tryPromise({ try: () => NodeFs.promises.stat(path), catch: readError(operation) })).size
      // One session: start, then the bytes (upload + finalize, offset 0). Each step retries
      // transient failures on its own; the body is streamed afresh from disk at every try.
      const session = Effect.gen(function*() {
        const target = uploadTarget(yield* startUpload(size, displayName))
        const answer = yield* target.http.json({
          method: "POST",
          path: target.path,
          urlParams: target.urlParams,
          headers: { "x-goog-upload-command": "upload, finalize", "x-goog-upload-offset": "0" },
          // Opened only when the body is sent, closed when it ends or is interrupted.
          body: HttpBody.stream(fileStream(path), jsonlMimeType, size)
        }, { retry: true, timeout: timeoutFor(size) }).pipe(Effect.mapError(fixAuth))
        return yield* decodeWith(operation, decodeUploaded)(answer)
      })
      // A session the server no longer accepts (lost, or a retry at offset 0 after part of the
      // body got through) is abandoned for one fresh session.
      const uploaded = yield* session.pipe(
        Effect.catchIf((e) => e.reason === "Rejected" || e.reason === "NotFound", () => session)
      )
      return { inputRef: uploaded.file.name }
    })
  }

  const stage = (path: string, stagedName: string): Effect.Effect<StagedInput, ProviderError> =>
    Effect.tryPromise({ try: () => NodeFs.promises.stat(path), catch: readError("stage") }).pipe(
      Effect.flatMap((stat) =>
        stat.size <= inlineMaxBytes ? Effect.succeed({ inputRef: `${inlinePrefix}${path}` }) : upload(path, stagedName)
      )
    )

  const findStaged = (stagedName: string): Effect.Effect<Option.Option<StagedInput>, ProviderError> => {
    const path = `${version}/files`
    const decodePage = decodeWith(`GET ${path}`, decodeFilePage)
    const loop = (pageToken: string | undefined): Effect.Effect<Option.Option<StagedInput>, ProviderError> =>
      json({
        method: "GET",
        path,
        headers: { "cache-control": "no-cache" },
        urlParams: { pageSize: String(filesPageSize), ...(pageToken === undefined ? {} : { pageToken }) }
      }, { retry: true }).pipe(
        Effect.flatMap(decodePage),
        Effect.flatMap((page) => {
          const hit = (page.files ?? []).find((f) => f.displayName === stagedName && f.state !== "FAILED")
          if (hit !== undefined) return Effect.succeed(Option.some({ inputRef: hit.name }))
          const next = page.nextPageToken ?? undefined
          return next !== undefined && next !== "" && next !== pageToken ? loop(next) : Effect.succeed(Option.none())
        })
      )
    return loop(undefined)
  }

  const deleteStaged = (inputRef: string): Effect.Effect<void, ProviderError> =>
    inputRef.startsWith(inlinePrefix) ?
      Effect.void :
      json({ method: "DELETE", path: `${version}/${resourcePath(inputRef)}` }, { retry: true }).pipe(
        Effect.asVoid,
        Effect.catchIf((e) => e.reason === "NotFound", () => Effect.void)
      )

  const filesPath = `${version}/files`
  const files: Stream.Stream<StoredFile, ProviderError> = Stream.paginateChunkEffect(
    undefined as string | undefined,
    (pageToken) =>
      json({
        method: "GET",
        path: filesPath,
        headers: { "cache-control": "no-cache" },
        urlParams: { pageSize: String(filesPageSize), ...(pageToken === undefined ? {} : { pageToken }) }
      }, { retry: true }).pipe(
        Effect.flatMap(decodeWith(`GET ${filesPath}`, decodeFilePage)),
        Effect.map((page) => {
          const next = page.nextPageToken ?? undefined
          return [
            Chunk.unsafeFromArray((page.files ?? []).map(toStoredFile)),
            next !== undefined && next !== "" && next !== pageToken ? Option.some(next) : Option.none()
          ] as const
        })
      )
  )

  const storage: ProviderStorage = {
    inputFile: (inputRef) => (inputRef.startsWith(inlinePrefix) || inputRef === "" ? null : inputRef),
    outputFiles: (batch) =>
      batch.outputFileId === null || batch.outputFileId === "" || batch.outputFileId === inlineResponses ? [] : [batch.outputFileId],
    deleteFile: deleteStaged,
    files
  }

  // --- batches ---

  const operationInfo = (operation: string) => decodeWith(operation, decodeBatchInfo)

  const create = (input: CreateBatch): Effect.Effect<BatchInfo, ProviderError> =>
    Effect.gen(function*() {
      if (input.endpoint !== "chat") {
        return yield* Effect.fail(http.error({
          reason: "Rejected",
          operation: "create",
          description: "Gemini embeddings batches (asyncBatchEmbedContent) are not supported; use a chat stage"
        }))
      }
      const displayName = displayNameOf(input.metadata)
      const inline = input.inputRef.startsWith(inlinePrefix)
      // The shard file as the runner knows it now (a run directory may have moved since stage).
      const shardPath = input.path !== "" ? input.path : input.inputRef.slice(inlinePrefix.length)
      const firstLine = yield* Effect.tryPromise({ try: () => readFirstLine(shardPath), catch: readError("create") })
      const model = modelOfLine(firstLine)
      if (model === undefined) {
        return yield* Effect.fail(http.error({
          reason: "Rejected",
          operation: "create",
          description: "the shard file's first line names no request.model"
        }))
      }
      const path = `${version}/${resourcePath(modelName(model))}:batchGenerateContent`
      const operation = `POST ${path}`
      let body: string
      if (inline) {
        const text = yield* Effect.tryPromise({ try: () => NodeFs.promises.readFile(shardPath, "utf8"), catch: readError(operation) })
        body = yield* Effect.try({
          try: () => inlineBody(text, displayName),
          catch: (cause) => http.error({ reason: "Rejected", operation, description: `bad shard line: ${describe(cause)}` })
        })
        const bytes = Buffer.byteLength(body)
        if (bytes >= maxInlineBodyBytes) {
          return yield* Effect.fail(http.error({
            reason: "Rejected",
            operation,
            description: `the inline request body is ${bytes} bytes; Gemini takes less than 20 MB inline ` +
              "(lower inlineMaxBytes so such shards go through the File API)"
          }))
        }
      } else {
        body = JSON.stringify({ batch: { displayName, inputConfig: { fileName: input.inputRef } } })
      }
      // Not idempotent (Gemini says so explicitly): never retried here. The caller reconciles
      // an ambiguous failure with `list` (the displayName names run, shard and submission).
      const answer = yield* json(
        { method: "POST", path, body: HttpBody.text(body, "application/json") },
        { retry: false, timeout: timeoutFor(body.length) }
      )
      return yield* operationInfo(operation)(answer)
    })

  const getOperation = (batchId: string): Effect.Effect<WireOperation, ProviderError> => {
    const path = `${version}/${resourcePath(batchName(batchId))}`
    return json({ method: "GET", path, headers: { "cache-control": "no-cache" } }, { retry: true }).pipe(
      Effect.flatMap(decodeWith(`GET ${path}`, decodeOperation))
    )
  }

  const retrieve = (batchId: string): Effect.Effect<BatchInfo, ProviderError> =>
    Effect.map(getOperation(batchId), toBatchInfo)

  const cancel = (batchId: string): Effect.Effect<BatchInfo, ProviderError> => {
    const path = `${version}/${resourcePath(batchName(batchId))}:cancel`
    // Cancel answers an empty object: read the batch back for its state.
    return json({ method: "POST", path }, { retry: true }).pipe(Effect.zipRight(retrieve(batchId)))
  }

  const deleteBatch = (batchId: string): Effect.Effect<void, ProviderError> =>
    json({ method: "DELETE", path: `${version}/${resourcePath(batchName(batchId))}` }, { retry: true }).pipe(
      Effect.asVoid,
      Effect.catchIf((e) => e.reason === "NotFound", () => Effect.void)
    )

  const listPath = `${version}/batches`
  const decodeListPage = decodeWith(`GET ${listPath}`, decodeBatchPage)

  const list: Stream.Stream<BatchInfo, ProviderError> = Stream.paginateChunkEffect(
    undefined as string | undefined,
    (pageToken) =>
      json({
        method: "GET",
        path: listPath,
        headers: { "cache-control": "no-cache" },
        urlParams: { pageSize: String(listPageSize), ...(pageToken === undefined ? {} : { pageToken }) }
      }, { retry: true }).pipe(
        Effect.flatMap(decodeListPage),
        Effect.map((page) =>
          [
            Chunk.unsafeFromArray(page.batches),
            page.next !== undefined && page.next !== pageToken ? Option.some(page.next) : Option.none()
          ] as const
        )
      )
  )

  // --- results ---

  /**
   * Classifies result lines (text, or parsed inline entries). One that cannot be attributed
   * to a request (not JSON, no key) is logged with its position and skipped, so one garbage
   * line never costs the other results; the runner finds that request *missing*.
   */
  const classify = (source: string, records: ReadonlyArray<unknown>, firstLine: number) => {
    const out: Array<BatchResult> = []
    const warnings: Array<string> = []
    records.forEach((record, i) => {
      if (typeof record === "string" && record.trim() === "") return
      const parsed = typeof record === "string" ? parseResultLine(record) : parseResultRecord(record)
      if (Either.isRight(parsed)) out.push(parsed.right)
      else warnings.push(`${name}: skipping unusable result ${firstLine + i} of ${source}: ${parsed.left}`)
    })
    const chunk = Chunk.unsafeFromArray(out)
    return warnings.length === 0 ?
      Effect.succeed(chunk) :
      Effect.as(Effect.forEach(warnings, (w) => Effect.logWarning(w), { discard: true }), chunk)
  }

  /** The lines of a responses file, streamed and classified (see `classifyResultLines`). */
  const fileResults = (file: string): Stream.Stream<BatchResult, ProviderError> =>
    http.stream(
      {
        method: "GET",
        path: `/download${version}/${resourcePath(file)}:download`,
        urlParams: { alt: "media" },
        headers: { accept: "application/octet-stream" }
      },
      { retry: true, idleTimeout }
    ).pipe(
      Stream.mapError(fixAuth),
      classifyResultLines({ provider: name, source: `file ${file}`, idField: "key", maxLineBytes, parse: parseResultLine })
    )

  /** Inline responses live in the Operation itself: read it again and iterate them. */
  const inlineResults = (batchId: string): Stream.Stream<BatchResult, ProviderError> =>
    Stream.unwrap(
      Effect.flatMap(getOperation(batchId), (wire) =>
        Effect.map(classify(`batch ${batchId}`, inlineResponseLines(wire), 1), (chunk) => Stream.fromChunk(chunk)))
    )

  const results = (batch: BatchInfo): Stream.Stream<BatchResult, ProviderError> =>
    batch.outputFileId === null || batch.outputFileId === "" ?
      // EXPIRED / CANCELLED / FAILED batches return nothing: the runner finds the requests missing.
      Stream.empty :
      batch.outputFileId === inlineResponses ?
      inlineResults(batch.id) :
      fileResults(batch.outputFileId)

  // --- real time ---

  const onlineCodec: Online.OnlineCodec = {
    limits: (headers, body, now) => RateLimit.fromGeminiAnswer(headers, body, now),
    result: onlineResult,
    // A wrong key is a 400 INVALID_ARGUMENT "API key not valid": the run's, not the row's.
    fatal: (status, text) => (status === 400 && /API key not valid|API_KEY_INVALID/i.test(text) ? "Unauthorized" : undefined)
  }
  const online: OnlineApi = {
    send: (line, customId) =>
      Either.match(onlineLine(line), {
        onLeft: (reason) => Effect.fail(http.error({ reason: "Rejected", operation: "POST :generateContent", description: `${reason} (custom_id ${customId})` })),
        onRight: (request) =>
          Online.send(
            http,
            onlineCodec,
            { path: `${version}/${resourcePath(request.model)}:${request.embeddings ? "embedContent" : "generateContent"}`, body: request.body },
            customId,
            config.onlineTimeout ?? defaultOnlineTimeout
          ).pipe(Effect.mapError(fixAuth))
      })
  }

  return {
    name,
    origin: reportedBaseUrl(baseUrl),
    identity: ProviderIdentity.make({ family: "gemini", provider: name, baseUrl, apiVersion: version.slice(1) }),
    limits,
    capabilities,
    encode,
    stage,
    findStaged,
    create,
    retrieve,
    list,
    cancel,
    results,
    deleteStaged,
    storage,
    deleteBatch,
    online
  }
}
