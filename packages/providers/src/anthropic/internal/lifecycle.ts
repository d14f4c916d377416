/**
 * The Anthropic Message Batches lifecycle: the calls. Create a batch from a shard file
 * (requests inline, the body streamed from disk; never retried), poll, list, cancel, delete,
 * stream the results, and find an orphan batch without metadata. What the bytes mean is
 * `codec.ts`.
 */
import * as HttpBody from "@effect/platform/HttpBody"
import type { HttpClient } from "@effect/platform"
import type { BatchResult } from "@sluice/core"
import { Chunk, Duration, Effect, Either, Option, Redacted, Stream } from "effect"
import type {
  BatchInfo,
  CreateBatch,
  OnlineApi,
  OrphanSearch,
  ProviderCapabilities,
  ProviderLimits,
  ShardIdentity,
  StagedInput
} from "../../BatchProvider.js"
import { isTerminal } from "../../BatchProvider.js"
import { trimKey } from "../../internal/env.js"
import { defaultOnlineTimeout, displayUrl, makeProviderHttp, truncate } from "../../internal/http.js"
import type { ProviderHttp, RequestSpec } from "../../internal/http.js"
import { classifyResultLines, defaultMaxLineBytes } from "../../internal/lines.js"
import { reportedBaseUrl } from "../../internal/origin.js"
import { retryOptions } from "../../internal/retry.js"
import type { ProviderError } from "../../ProviderError.js"
import * as ProviderIdentity from "../../ProviderIdentity.js"
import type { AnthropicBatchProvider, AnthropicConfig, OrphanVerdict } from "../AnthropicBatch.js"
import * as Online from "../../internal/online.js"
import * as RateLimit from "../../RateLimit.js"
import { decodeBatchInfo, decodeBatchPage, defaultMaxTokens, encodeWith, onlineParams, onlineResult, parseResultLine, quotaCodes } from "./codec.js"
import { measureRequestBody, requestBody, shardCustomIds } from "./shardFile.js"

export const defaultBatchesPath = "/v1/messages/batches"
/** The API version sent with `x-api-key` auth. */
export const defaultVersion = "2023-06-01"
/** The API version sent with `Authorization: Bearer` auth (the one `@anthropic-ai/sdk` 1.12 sends). */
export const defaultBearerVersion = "2026-10-21"

// -----------------------------------------------------------------------------------------
// Limits and capabilities
// -----------------------------------------------------------------------------------------

export const limits: ProviderLimits = {
  maxRequests: 100_000,
  // The documented cap is 256 MB per create request. The shard file counts one newline per
  // line where the body has one comma, plus 15 bytes of envelope: 250,000,000 file bytes stay
  // below 256 MB whether "MB" means 10^6 or 2^20 bytes.
  maxBytes: 250_000_000,
  // Models may differ within one batch.
  oneModelPerShard: false
}

export const capabilities: ProviderCapabilities = {
  cancel: true,
  list: true,
  // Message batches carry no user metadata: see `findOrphan` below for what can be done instead.
  metadata: false,
  partialResults: true
}

// -----------------------------------------------------------------------------------------
// Orphan adoption without metadata
// -----------------------------------------------------------------------------------------
//
// The runner adopts the batch of a create whose answer it never journaled (a crash, a lost
// response) by listing batches and matching `metadata.sluice_run/shard/submission`. Message
// batches carry no metadata, and a listed batch shows only its id, `created_at`,
// `processing_status` and `request_counts` (whose five members always sum to the number of
// requests). The custom_ids — `<stage>-<key>-<request hash>`, unique to the rows of one shard
// — become visible only in the results, once the batch has ended. So:
//
// - a batch *can* hold a shard when it was created after the shard's submit intent (less
//   clock skew), is not journaled for any shard of the run, and holds exactly as many
//   requests ("undecided" while it runs);
// - it *does* hold the shard once it has ended and its results carry the shard's custom_ids
//   ("match"); one foreign custom_id refutes it ("mismatch").
//
// `findOrphan(shard)` below does that search (`matchShard` judges one batch). The remaining
// window: from the lost create until the orphan ends (up to 24 h), an orphan can be proven
// only if it is the *only* unjournaled batch of that request count created since the intent
// (less skew). Two or more such batches — sibling shards of the same size whose creates were
// in flight together at the crash (the planner packs shards to equal sizes), or another
// process in the same workspace — stay `undecided` until they end.
//
// What the runner needs (Submitter.ts matches metadata only, so today it never adopts an
// Anthropic batch and creates the shard again, paying twice):
// 1. An optional port member, `findOrphan?: (shard: ShardIdentity) => Effect<OrphanSearch>`
//    (with `ShardIdentity` and `OrphanSearch` moved to BatchProvider.ts), used by
//    `Submitter.findOrphan` when `capabilities.metadata` is false: pass the shard file,
//    `intentAt`, and as `exclude` every batch id the run's journal names (all shards, all
//    submissions — a resubmission reuses the custom_ids of the batch it retries, so that
//    batch would "match" too).
// 2. `adopt` set: journal `Created {adopted: true}` as today.
// 3. `undecided` non-empty: do not create. Adopt the single candidate tentatively when exactly
//    one remains (journal it as adopted but unverified), poll it as usual, and at collection
//    check that its results' custom_ids are the shard's (the Collector already reads them);
//    on a foreign id, journal the adoption as refuted and search again. With several
//    candidates, wait for them to end (they are then proven or refuted), bounded by a
//    setting after which the shard is created again, knowingly risking a duplicate.
// 4. For providers without metadata, run at most one `create` at a time per provider: a crash
//    then leaves at most one orphan per run, which removes the sibling-shard ambiguity; what
//    remains is another process creating a batch of the same size in the same window.

/** Results read to prove a match (all of them for smaller batches). */
const verifyLines = 2_000

const clamp = (n: number | undefined, min: number, max: number, fallback: number): number =>
  n === undefined || !Number.isFinite(n) ? fallback : Math.min(max, Math.max(min, Math.floor(n)))

/** Builds the provider over a given `HttpClient`. */
export const makeWithClient = (client: HttpClient.HttpClient, config: AnthropicConfig): AnthropicBatchProvider => {
  const name = config.name ?? "anthropic"
  const requestTimeout = config.requestTimeout ?? Duration.seconds(60)
  const idleTimeout = config.downloadIdleTimeout ?? Duration.seconds(60)
  const uploadRate = config.minUploadBytesPerSecond ?? 256 * 1024
  const listPageSize = clamp(config.listPageSize, 1, 1000, 100)
  const maxTokens = clamp(config.defaultMaxTokens, 1, Number.MAX_SAFE_INTEGER, defaultMaxTokens)
  const batchesPath = "/" + (config.batchesPath ?? defaultBatchesPath).replace(/^\/+/, "").replace(/\/+$/, "")
  const baseUrl = config.baseUrl.replace(/\/+$/, "")
  const auth = config.auth ?? "x-api-key"
  const apiKey = trimKey(config.apiKey)
  const maxLineBytes = clamp(config.maxResultLineBytes, 1, Number.MAX_SAFE_INTEGER, defaultMaxLineBytes)

  const headers: Record<string, string> = {
    accept: "application/json",
    "user-agent": "sluice",
    "anthropic-version": config.version ?? (auth === "bearer" ? defaultBearerVersion : defaultVersion)
  }
  if (config.betas !== undefined && config.betas.length > 0) headers["anthropic-beta"] = config.betas.join(",")
  Object.assign(headers, config.headers ?? {})

  const secretHeaders: Record<string, Redacted.Redacted<string>> = { ...config.secretHeaders }
  if (auth === "bearer") secretHeaders["authorization"] = Redacted.make(`Bearer ${Redacted.value(apiKey)}`)
  else secretHeaders["x-api-key"] = apiKey

  const settings = {
    provider: name,
    headers,
    secretHeaders,
    secrets: [apiKey],
    requestTimeout,
    retry: retryOptions(config.retry),
    quotaCodes,
    allowInsecureHttp: config.allowInsecureHttp,
    tracePropagation: config.tracePropagation,
    maxResponseBytes: config.maxResponseBytes
  }
  // Anthropic's base URL stops before the version its paths start with: `…/v1` doubles it.
  const doubledVersion = /\/v1\/?$/.test(baseUrl) && batchesPath.startsWith("/v1/")
  const notFoundHint = doubledVersion
    ? `the base URL ${displayUrl(baseUrl)} ends in /v1, which Anthropic's paths start with: did you mean ${displayUrl(baseUrl).replace(/\/v1$/, "")}?`
    : undefined
  const http: ProviderHttp = makeProviderHttp(client, { ...settings, baseUrl, notFoundHint })

  // Same origin, other path prefix: `results_url` may lie outside `baseUrl` (e.g. when the
  // base URL carries a gateway prefix the API does not echo). Built on first use.
  let originHttp: ProviderHttp | undefined
  // An unparsable base URL fails every call with a clear "invalid URL" error (http.ts), not here.
  const base = URL.canParse(baseUrl) ? new URL(baseUrl) : undefined
  const basePath = base?.pathname.replace(/\/+$/, "") ?? ""
  const atOrigin = (origin: string) => (originHttp ??= makeProviderHttp(client, { ...settings, baseUrl: origin }))

  const decodeWith = <A>(operation: string, decode: (u: unknown) => Either.Either<A, string>) => (u: unknown) =>
    Either.match(decode(u), {
      onLeft: (reason) =>
        Effect.fail(http.error({ reason: "Decode", operation, description: truncate(`unexpected response: ${reason}`) })),
      onRight: Effect.succeed
    })

  const batchInfo = (operation: string) => decodeWith(operation, decodeBatchInfo)
  const enc = encodeURIComponent
  const batchPath = (id: string) => `${batchesPath}/${enc(id)}`

  // --- staging: nothing to upload ---

  /** Requests are sent inline by `create`: the shard file itself is the staged input. */
  const stage = (path: string, _name: string): Effect.Effect<StagedInput, ProviderError> =>
    Effect.succeed({ inputRef: path })

  /** Nothing is ever staged at the provider. */
  const findStaged = (_name: string): Effect.Effect<Option.Option<StagedInput>, ProviderError> => Effect.succeedNone

  /** The staged input is the runner's own shard file: never deleted here. */
  const deleteStaged = (_inputRef: string): Effect.Effect<void, ProviderError> => Effect.void

  // --- batches ---

  const create = (input: CreateBatch): Effect.Effect<BatchInfo, ProviderError> => {
    const operation = `POST ${batchesPath}`
    const path = input.path !== "" ? input.path : input.inputRef
    const measured = Effect.tryPromise({
      try: () => measureRequestBody(path),
      catch: (cause) =>
        http.error({
          reason: "Rejected",
          operation,
          description: `cannot read shard file ${path}: ${cause instanceof Error ? cause.message : String(cause)}`
        })
    })
    return Effect.gen(function*() {
      const { bytes, requests } = yield* measured
      if (requests === 0) {
        return yield* Effect.fail(http.error({ reason: "Rejected", operation, description: `shard file ${path} holds no requests` }))
      }
      if (requests > limits.maxRequests) {
        return yield* Effect.fail(http.error({
          reason: "Rejected",
          operation,
          description: `shard file ${path} holds ${requests} requests; a message batch takes at most ${limits.maxRequests}`
        }))
      }
      const timeout = Duration.sum(requestTimeout, Duration.millis(Math.ceil((bytes / uploadRate) * 1000)))
      const body = HttpBody.stream(
        Stream.fromAsyncIterable(requestBody(path), (cause) => cause),
        "application/json",
        bytes
      )
      // Not idempotent: never retried here. A Transport/Timeout/Server failure is `ambiguous`
      // and the caller reconciles (see `findOrphan`). The spec is built lazily, once.
      const json = yield* http.json({ method: "POST", path: batchesPath, body }, { retry: false, timeout })
      return yield* batchInfo(operation)(json)
    })
  }

  const retrieve = (batchId: string): Effect.Effect<BatchInfo, ProviderError> => {
    const path = batchPath(batchId)
    return http.json({ method: "GET", path, headers: { "cache-control": "no-cache" } }, { retry: true }).pipe(
      Effect.flatMap(batchInfo(`GET ${path}`))
    )
  }

  const cancel = (batchId: string): Effect.Effect<BatchInfo, ProviderError> => {
    const path = `${batchPath(batchId)}/cancel`
    return http.json({ method: "POST", path }, { retry: true }).pipe(Effect.flatMap(batchInfo(`POST ${path}`)))
  }

  const deleteBatch = (batchId: string): Effect.Effect<void, ProviderError> =>
    http.json({ method: "DELETE", path: batchPath(batchId) }, { retry: true }).pipe(
      Effect.asVoid,
      // Already gone (or deleted by an earlier attempt whose answer was lost): done.
      Effect.catchIf((e) => e.reason === "NotFound", () => Effect.void)
    )

  const decodePage = decodeWith(`GET ${batchesPath}`, decodeBatchPage)

  /** Newest first; `after_id` = the previous page's `last_id` while `has_more`. */
  const list: Stream.Stream<BatchInfo, ProviderError> = Stream.paginateChunkEffect(
    undefined as string | undefined,
    (after) =>
      http.json({
        method: "GET",
        path: batchesPath,
        headers: { "cache-control": "no-cache" },
        urlParams: { limit: String(listPageSize), ...(after === undefined ? {} : { after_id: after }) }
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

  /**
   * Where the results of a batch are read. `results_url` is absolute; it is fetched with our
   * credentials only at the configured origin. A `results_url` at another origin (a gateway
   * passing the upstream's URL through) never gets our key: the documented path
   * `{batchesPath}/{id}/results` below our base URL is read instead, as it is when the batch
   * info has no `results_url` at all.
   */
  const resultsRequest = (batch: BatchInfo): { readonly http: ProviderHttp; readonly spec: RequestSpec } => {
    const fallback = { http, spec: { method: "GET" as const, path: `${batchPath(batch.id)}/results` } }
    if (batch.outputFileId === null) return fallback
    let url: URL
    try {
      url = new URL(batch.outputFileId, `${baseUrl}/`)
    } catch {
      return fallback
    }
    if (base === undefined || url.origin !== base.origin) return fallback
    const urlParams = Object.fromEntries(url.searchParams.entries())
    const params = Object.keys(urlParams).length > 0 ? { urlParams } : {}
    if (basePath !== "" && (url.pathname === basePath || url.pathname.startsWith(`${basePath}/`))) {
      return { http, spec: { method: "GET", path: url.pathname.slice(basePath.length), ...params } }
    }
    return { http: basePath === "" ? http : atOrigin(base.origin), spec: { method: "GET", path: url.pathname, ...params } }
  }

  /** Every result line of an ended batch, streamed and classified (see `classifyResultLines`). */
  const results = (batch: BatchInfo): Stream.Stream<BatchResult, ProviderError> =>
    Stream.suspend(() => {
      const { http: via, spec } = resultsRequest(batch)
      return via.stream({ ...spec, headers: { accept: "application/binary" } }, { retry: true, idleTimeout }).pipe(
        classifyResultLines({ provider: name, source: `batch ${batch.id}`, idField: "custom_id", maxLineBytes, parse: parseResultLine })
      )
    })

  // --- orphans ---

  const readShardIds = (path: string) =>
    Effect.tryPromise({
      try: () => shardCustomIds(path).then((ids) => new Set(ids)),
      catch: (cause) =>
        http.error({
          reason: "Rejected",
          operation: "findOrphan",
          description: `cannot read shard file ${path}: ${cause instanceof Error ? cause.message : String(cause)}`
        })
    })

  const matchShard = (
    batch: BatchInfo,
    shard: ShardIdentity,
    customIds?: ReadonlySet<string>
  ): Effect.Effect<OrphanVerdict, ProviderError> =>
    Effect.gen(function*() {
      if (shard.exclude?.has(batch.id) === true) return "mismatch" as const
      if (batch.createdAt < shard.intentAt - (shard.skewSeconds ?? 600)) return "mismatch" as const
      const ids = customIds ?? (yield* readShardIds(shard.path))
      if (batch.counts.total !== ids.size) return "mismatch" as const
      if (!isTerminal(batch.status) || batch.outputFileId === null) return "undecided" as const
      const seen = yield* results(batch).pipe(
        Stream.take(verifyLines),
        Stream.runFoldWhile(
          { read: 0, foreign: false },
          (s) => !s.foreign,
          (s, r) => ({ read: s.read + 1, foreign: !ids.has(r.customId) })
        )
      )
      if (seen.foreign) return "mismatch" as const
      return seen.read > 0 ? ("match" as const) : ("undecided" as const)
    })

  const findOrphan = (shard: ShardIdentity): Effect.Effect<OrphanSearch, ProviderError> =>
    Effect.gen(function*() {
      const ids = yield* readShardIds(shard.path)
      const since = shard.intentAt - (shard.skewSeconds ?? 600)
      const candidates = yield* list.pipe(
        Stream.takeWhile((b) => b.createdAt >= since),
        Stream.filter((b) => shard.exclude?.has(b.id) !== true && b.counts.total === ids.size),
        Stream.runCollect
      )
      const matches: Array<BatchInfo> = []
      const undecided: Array<BatchInfo> = []
      for (const batch of candidates) {
        const verdict = yield* matchShard(batch, shard, ids)
        if (verdict === "match") matches.push(batch)
        else if (verdict === "undecided") undecided.push(batch)
      }
      // Two proven matches mean the same submission was created twice (both after the intent,
      // neither journaled): both are paid for; adopt the newest (listed first).
      return { adopt: matches.length > 0 ? Option.some(matches[0]!) : Option.none(), undecided }
    })

  // --- real time ---

  const messagesPath = "/" + (config.messagesPath ?? (batchesPath.endsWith("/messages/batches") ? batchesPath.slice(0, -"/batches".length) : "/v1/messages"))
    .replace(/^\/+/, "").replace(/\/+$/, "")
  const onlineCodec: Online.OnlineCodec = {
    limits: (headers, _body, now) => RateLimit.fromAnthropicHeaders(headers, now),
    result: onlineResult
  }
  const online: OnlineApi = {
    send: (line, customId) =>
      Either.match(onlineParams(line), {
        onLeft: (reason) => Effect.fail(http.error({ reason: "Rejected", operation: `POST ${messagesPath}`, description: `${reason} (custom_id ${customId})` })),
        onRight: (body) => Online.send(http, onlineCodec, { path: messagesPath, body }, customId, config.onlineTimeout ?? defaultOnlineTimeout)
      })
  }

  return {
    name,
    origin: reportedBaseUrl(baseUrl),
    identity: ProviderIdentity.make({ family: "anthropic", provider: name, baseUrl, batchesPath }),
    limits,
    capabilities,
    encode: encodeWith(maxTokens),
    stage,
    findStaged,
    create,
    retrieve,
    list,
    cancel,
    results,
    deleteStaged,
    deleteBatch,
    matchShard,
    findOrphan,
    online
  }
}
