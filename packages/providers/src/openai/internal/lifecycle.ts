/**
 * The OpenAI Batch API's lifecycle: the calls. Upload a shard file (multipart, streamed from
 * disk), find an upload by name after a crash, create a batch (never retried), poll, list,
 * cancel, and stream the output and error files. What the bytes mean is `codec.ts`.
 */
import * as HttpBody from "@effect/platform/HttpBody"
import type { HttpClient } from "@effect/platform"
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
import { defaultOnlineTimeout, displayUrl, makeProviderHttp, truncate } from "../../internal/http.js"
import type { ProviderHttp } from "../../internal/http.js"
import { classifyResultLines, defaultMaxLineBytes } from "../../internal/lines.js"
import { reportedBaseUrl } from "../../internal/origin.js"
import { retryOptions } from "../../internal/retry.js"
import { multipartFile } from "../../internal/upload.js"
import type { ProviderError } from "../../ProviderError.js"
import * as ProviderIdentity from "../../ProviderIdentity.js"
import type { OpenAiConfig } from "../OpenAiBatch.js"
import * as Online from "../../internal/online.js"
import * as RateLimit from "../../RateLimit.js"
import {
  decodeBatchInfo,
  decodeBatchPage,
  decodeFile,
  decodeFilePage,
  encode,
  endpointUrl,
  onlineLine,
  onlineResult,
  parseResultLine,
  quotaCodes,
  toStoredFile
} from "./codec.js"

// -----------------------------------------------------------------------------------------
// Limits and capabilities
// -----------------------------------------------------------------------------------------

export const limits: ProviderLimits = {
  maxRequests: 50_000,
  // The documented cap is 200 MB; stay safely below it.
  maxBytes: 190_000_000,
  oneModelPerShard: true
}

export const capabilities: ProviderCapabilities = {
  cancel: true,
  list: true,
  metadata: true,
  partialResults: true
}

// -----------------------------------------------------------------------------------------
// The provider
// -----------------------------------------------------------------------------------------

/** The shard's file name at OpenAI: the Batch API accepts only `.jsonl` names. */
export const stagedFileName = (name: string): string => (name.endsWith(".jsonl") ? name : `${name}.jsonl`)

const clamp = (n: number | undefined, min: number, max: number, fallback: number): number =>
  n === undefined || !Number.isFinite(n) ? fallback : Math.min(max, Math.max(min, Math.floor(n)))

/**
 * OpenAI-style base URLs end in their API version (`https://api.openai.com/v1`, a gateway's
 * `…/azure/v1`); one without a version segment (`http://localhost:8080`) answers every path
 * 404. The hint a 404 then carries, unless the version travels in the query (Azure's
 * `api-version`).
 */
export const missingVersionHint = (baseUrl: string, query: Readonly<Record<string, string>> | undefined): string | undefined => {
  if (query !== undefined && Object.keys(query).length > 0) return undefined
  let path: string
  try {
    path = new URL(baseUrl).pathname
  } catch {
    return undefined
  }
  if (path.split("/").some((segment) => /^v\d/.test(segment))) return undefined
  const shown = displayUrl(baseUrl)
  return `the base URL ${shown} has no API version: did you mean ${shown}/v1?`
}

/** Builds the provider over a given `HttpClient`. */
export const makeWithClient = (client: HttpClient.HttpClient, config: OpenAiConfig): BatchProvider => {
  const name = config.name ?? "openai"
  const requestTimeout = config.requestTimeout ?? Duration.seconds(60)
  const idleTimeout = config.downloadIdleTimeout ?? Duration.seconds(60)
  const uploadRate = config.minUploadBytesPerSecond ?? 256 * 1024
  const listPageSize = clamp(config.listPageSize, 1, 100, 100)
  const filesPageSize = clamp(config.filesPageSize, 1, 10_000, 1_000)
  const purpose = config.purpose ?? "batch"
  const uploadPath = config.upload?.path ?? "/files"
  const providerLimits: ProviderLimits = { ...limits, ...config.limits }
  const providerCapabilities: ProviderCapabilities = { ...capabilities, ...config.capabilities }
  const maxLineBytes = clamp(config.maxResultLineBytes, 1, Number.MAX_SAFE_INTEGER, defaultMaxLineBytes)
  const auth = config.auth ?? "bearer"
  const apiKey = auth === "none" ? undefined : trimKey(config.apiKey)

  const headers: Record<string, string> = { accept: "application/json", "user-agent": "sluice" }
  if (config.organization !== undefined) headers["openai-organization"] = config.organization
  if (config.project !== undefined) headers["openai-project"] = config.project
  Object.assign(headers, config.headers ?? {})

  const secretHeaders: Record<string, Redacted.Redacted<string>> = { ...config.secretHeaders }
  if (apiKey === undefined || auth === "none") {
    // A server without a key (self-hosted): no credential header at all.
  } else if (auth === "bearer") {
    secretHeaders["authorization"] = Redacted.make(`Bearer ${Redacted.value(apiKey)}`)
  } else {
    secretHeaders[auth.header.toLowerCase()] = apiKey
  }

  const http: ProviderHttp = makeProviderHttp(client, {
    provider: name,
    baseUrl: config.baseUrl.replace(/\/+$/, ""),
    headers,
    secretHeaders,
    secrets: apiKey === undefined ? [] : [apiKey],
    query: config.query,
    requestTimeout,
    retry: retryOptions(config.retry),
    quotaCodes,
    notFoundHint: missingVersionHint(config.baseUrl, config.query),
    allowInsecureHttp: config.allowInsecureHttp,
    tracePropagation: config.tracePropagation,
    maxResponseBytes: config.maxResponseBytes
  })

  const decodeWith = <A>(operation: string, decode: (u: unknown) => Either.Either<A, string>) => (u: unknown) =>
    Either.match(decode(u), {
      onLeft: (reason) =>
        Effect.fail(http.error({ reason: "Decode", operation, description: truncate(`unexpected response: ${reason}`) })),
      onRight: Effect.succeed
    })

  const batchInfo = (operation: string) => decodeWith(operation, decodeBatchInfo)

  const jsonBody = (value: unknown) => HttpBody.text(JSON.stringify(value), "application/json")

  const enc = encodeURIComponent

  // --- files ---

  const stage = (path: string, stagedName: string): Effect.Effect<StagedInput, ProviderError> => {
    const operation = `POST ${uploadPath}`
    const filename = stagedFileName(stagedName)
    // Streamed from disk in large pieces (see upload.ts), never read into memory; the body
    // is built per attempt, since a request body is read once.
    const size = Effect.tryPromise({
      try: () => NodeFs.promises.stat(path).then((s) => s.size),
      catch: (cause) =>
        http.error({
          reason: "Rejected",
          operation,
          description: `cannot read shard file ${path}: ${cause instanceof Error ? cause.message : String(cause)}`
        })
    })
    const fields: Array<readonly [string, string]> = [["purpose", purpose]]
    if (config.upload?.fileNameField !== undefined) fields.push([config.upload.fileNameField, filename])
    for (const [field, value] of Object.entries(config.upload?.fields ?? {})) fields.push([field, value])
    return Effect.gen(function*() {
      const bytes = yield* size
      const timeout = Duration.sum(requestTimeout, Duration.millis(Math.ceil((bytes / uploadRate) * 1000)))
      const spec = Effect.sync(() => ({
        method: "POST" as const,
        path: uploadPath,
        body: multipartFile(fields, { field: "file", filename, contentType: "application/jsonl", path, size: bytes })
      }))
      const json = yield* http.json(spec, { retry: true, timeout })
      const file = yield* decodeWith(operation, decodeFile)(json)
      return { inputRef: file.id }
    })
  }

  const findStaged = (stagedName: string): Effect.Effect<Option.Option<StagedInput>, ProviderError> => {
    const filename = stagedFileName(stagedName)
    const operation = "GET /files"
    const decodeFiles = decodeWith(operation, decodeFilePage)
    const loop = (after: string | undefined): Effect.Effect<Option.Option<StagedInput>, ProviderError> =>
      http.json({
        method: "GET",
        path: "/files",
        urlParams: {
          purpose,
          order: "desc",
          limit: String(filesPageSize),
          ...(after === undefined ? {} : { after })
        }
      }, { retry: true }).pipe(
        Effect.flatMap(decodeFiles),
        Effect.flatMap((page) => {
          // Newest first: the most recent upload under this name wins.
          const hit = page.files.find((f) =>
            f.filename === filename &&
            (f.purpose === undefined || f.purpose === null || f.purpose === purpose) &&
            f.status !== "error" && f.status !== "deleted"
          )
          if (hit !== undefined) return Effect.succeed(Option.some({ inputRef: hit.id }))
          const next = page.lastId ?? page.files[page.files.length - 1]?.id
          return page.hasMore && next !== undefined && next !== after ? loop(next) : Effect.succeed(Option.none())
        })
      )
    return loop(undefined)
  }

  const deleteStaged = (inputRef: string): Effect.Effect<void, ProviderError> =>
    http.json({ method: "DELETE", path: `/files/${enc(inputRef)}` }, { retry: true }).pipe(
      Effect.asVoid,
      // Already gone (or deleted by an earlier attempt whose answer was lost): done.
      Effect.catchIf((e) => e.reason === "NotFound", () => Effect.void)
    )

  /** Every file of every purpose (inputs, outputs, errors), newest first. */
  const files: Stream.Stream<StoredFile, ProviderError> = Stream.paginateChunkEffect(
    undefined as string | undefined,
    (after) =>
      http.json({
        method: "GET",
        path: "/files",
        urlParams: { order: "desc", limit: String(filesPageSize), ...(after === undefined ? {} : { after }) }
      }, { retry: true }).pipe(
        Effect.flatMap(decodeWith("GET /files", decodeFilePage)),
        Effect.map((page) => {
          const next = page.lastId ?? page.files[page.files.length - 1]?.id
          return [
            Chunk.unsafeFromArray(page.files.filter((f) => f.status !== "deleted").map(toStoredFile)),
            page.hasMore && next !== undefined && next !== after ? Option.some(next) : Option.none()
          ] as const
        })
      )
  )

  const storage: ProviderStorage = {
    inputFile: (inputRef) => (inputRef === "" ? null : inputRef),
    outputFiles: (batch) => [batch.outputFileId, batch.errorFileId].filter((id): id is string => id !== null && id !== ""),
    // Input, output and error files are all deleted the same way.
    deleteFile: deleteStaged,
    files
  }

  // --- batches ---

  const create = (input: CreateBatch): Effect.Effect<BatchInfo, ProviderError> =>
    // Not idempotent: never retried here. A Transport/Timeout/Server failure is `ambiguous`
    // and the caller reconciles with `list` (metadata names run, shard and attempt).
    http.json({
      method: "POST",
      path: "/batches",
      body: jsonBody({
        input_file_id: input.inputRef,
        endpoint: endpointUrl(input.endpoint),
        completion_window: "24h",
        metadata: input.metadata
      })
    }, { retry: false }).pipe(Effect.flatMap(batchInfo("POST /batches")))

  const retrieve = (batchId: string): Effect.Effect<BatchInfo, ProviderError> => {
    const path = `/batches/${enc(batchId)}`
    return http.json({ method: "GET", path, headers: { "cache-control": "no-cache" } }, { retry: true }).pipe(
      Effect.flatMap(batchInfo(`GET ${path}`))
    )
  }

  const cancel = (batchId: string): Effect.Effect<BatchInfo, ProviderError> => {
    const path = `/batches/${enc(batchId)}/cancel`
    return http.json({ method: "POST", path }, { retry: true }).pipe(Effect.flatMap(batchInfo(`POST ${path}`)))
  }

  const decodePage = decodeWith("GET /batches", decodeBatchPage)

  const list: Stream.Stream<BatchInfo, ProviderError> = Stream.paginateChunkEffect(
    undefined as string | undefined,
    (after) =>
      http.json({
        method: "GET",
        path: "/batches",
        headers: { "cache-control": "no-cache" },
        urlParams: { limit: String(listPageSize), ...(after === undefined ? {} : { after }) }
      }, { retry: true }).pipe(
        Effect.flatMap(decodePage),
        Effect.map((page) => {
          const next = page.lastId ?? page.batches[page.batches.length - 1]?.id
          return [
            Chunk.unsafeFromArray(page.batches),
            page.hasMore && next !== undefined && next !== after ? Option.some(next) : Option.none()
          ] as const
        })
      )
  )

  // --- results ---

  /** The lines of one output or error file, classified (see `classifyResultLines`). */
  const fileResults = (id: string): Stream.Stream<BatchResult, ProviderError> =>
    http.stream(
      { method: "GET", path: `/files/${enc(id)}/content`, headers: { accept: "application/binary" } },
      { retry: true, idleTimeout }
    ).pipe(
      classifyResultLines({ provider: name, source: `file ${id}`, idField: "custom_id", maxLineBytes, parse: parseResultLine })
    )

  const results = (batch: BatchInfo): Stream.Stream<BatchResult, ProviderError> => {
    const ids = [batch.outputFileId, batch.errorFileId].filter((id): id is string => id !== null && id !== "")
    return Stream.flatMap(Stream.fromIterable(ids), fileResults)
  }

  // --- real time ---

  // Azure's versioned API (`…/openai?api-version=…`) serves real-time calls per deployment;
  // its v1 API, OpenAI and gateways take the model in the body.
  const perDeployment = config.query?.["api-version"] !== undefined && !/\/v\d[^/]*$/.test(config.baseUrl.replace(/\/+$/, ""))
  const onlineCodec: Online.OnlineCodec = {
    limits: (headers, _body, now) => RateLimit.fromOpenAiHeaders(headers, now),
    result: onlineResult
  }
  const online: OnlineApi = {
    send: (line, customId) =>
      Either.match(onlineLine(line), {
        onLeft: (reason) => Effect.fail(http.error({ reason: "Rejected", operation: "POST (real time)", description: `${reason} (custom_id ${customId})` })),
        onRight: (request) => {
          // The line's URL names the API version (`/v1/chat/completions`); the base URL has it already.
          const rest = request.url.replace(/^\/v\d+(?=\/)/, "")
          const path = perDeployment && request.model !== undefined ? `/deployments/${enc(request.model)}${rest}` : rest
          return Online.send(http, onlineCodec, { path, body: request.body }, customId, config.onlineTimeout ?? defaultOnlineTimeout)
        }
      })
  }

  return {
    name,
    // Never the credentials or query a base URL built in code may carry (refused at the first call).
    origin: reportedBaseUrl(config.baseUrl),
    identity: ProviderIdentity.make({ family: "openai", provider: name, baseUrl: config.baseUrl, apiVersion: config.query?.["api-version"] }),
    limits: providerLimits,
    capabilities: providerCapabilities,
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
    online
  }
}
