/**
 * Validation of a batch input file (the "validating" phase), in one
 * streaming pass. It produces what the lifecycle needs (valid?, total) and
 * what the result writer needs (per-request outcome), plus the ids file of
 * the ledger. Everything derives from the file and the batch's captured
 * settings, so it can be recomputed after a restart.
 *
 * Processing order: requests are processed in windows of WINDOW consecutive
 * lines, each window in the order of a hash of its requests. Results are
 * therefore not in input order, yet the result writer can stream the input
 * once with bounded memory.
 */
import { createWriteStream } from "node:fs"
import { once } from "node:events"
import { checkRequest, EMBEDDINGS_ENDPOINT, embeddingInputCount, isStructured, unknownModel } from "./answers.js"
import { DigestOffset, fractionAt, requestDigest } from "./hash.js"
import { isBlank, readLineChunks } from "./jsonl.js"
import type { KnownModels } from "./models.js"
import type { BatchErrorEntry } from "./store.js"

export const MAX_REQUESTS = 50_000
export const MAX_EMBEDDING_INPUTS = 50_000
/** Lines per processing window (see module comment). */
export const WINDOW = 512
/** errors.data is capped like a real service would, the file is still read to the end. */
const MAX_ERRORS = 100

/** Outcome of one request, decided at validation so progress counts and result files agree. */
export const Outcome = { ok: 0, serverError: 1, badRequest: 2, invalidJson: 3, modelNotFound: 4 } as const

/** Outcomes that fail their request (an error-file line). */
export const isFailure = (outcome: number | undefined): boolean =>
  outcome === Outcome.serverError || outcome === Outcome.badRequest || outcome === Outcome.modelNotFound

export interface ValidInput {
  readonly valid: true
  readonly total: number
  readonly model: string | null
  /** Outcome per request, in input order (blank lines skipped). */
  readonly outcomes: Uint8Array
  /** failedBefore[p] = failed requests among the first p in processing order. */
  readonly failedBefore: Uint32Array
  /** Keys of the seen map this batch took first-time faults for (already recorded in `seen`). */
  readonly seenKeys: ReadonlyArray<string>
}

export interface InvalidInput {
  readonly valid: false
  readonly total: number
  readonly model: string | null
  readonly errors: ReadonlyArray<BatchErrorEntry>
}

export type AnalysedInput = ValidInput | InvalidInput

export interface ParsedRequest {
  readonly customId: string
  readonly body: { readonly [key: string]: unknown }
  readonly bodyJson: string
  readonly digest: Buffer
}

/** Parses a line known to be valid (result writer) or returns a reason (validation). */
export const parseRequestLine = (
  line: string,
  endpoint: string,
  seed: string
): ParsedRequest | Omit<BatchErrorEntry, "line"> => {
  let value: unknown
  try {
    value = JSON.parse(line)
  } catch {
    return { code: "invalid_json_line", message: "This line is not parseable as valid JSON.", param: null }
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return { code: "invalid_json_line", message: "This line is not a JSON object.", param: null }
  }
  const record = value as { readonly [key: string]: unknown }
  const customId = record["custom_id"]
  if (typeof customId !== "string" || customId.length === 0) {
    return { code: "invalid_request", message: "Missing required parameter: 'custom_id'.", param: "custom_id" }
  }
  if (record["method"] !== "POST") {
    return { code: "invalid_request", message: "The 'method' of each request must be 'POST'.", param: "method" }
  }
  if (record["url"] !== endpoint) {
    return {
      code: "url_mismatch",
      message: `The provided URL for this request does not match the batch endpoint '${endpoint}'.`,
      param: "url"
    }
  }
  const body = record["body"]
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return { code: "invalid_request", message: "Missing required parameter: 'body'.", param: "body" }
  }
  const bodyJson = JSON.stringify(body)
  return { customId, body: body as ParsedRequest["body"], bodyJson, digest: requestDigest(seed, customId, bodyJson) }
}

export const isParsed = (value: ParsedRequest | Omit<BatchErrorEntry, "line">): value is ParsedRequest =>
  "customId" in value

/** Line indexes of one window in processing order. */
export const windowOrder = (orderKeys: ArrayLike<number>, start: number, end: number): Array<number> => {
  const indexes: Array<number> = []
  for (let i = start; i < end; i++) indexes.push(i)
  return indexes.sort((a, b) => orderKeys[a]! - orderKeys[b]! || a - b)
}

export interface AnalyseArgs {
  readonly inputPath: string
  readonly idsPath: string
  readonly endpoint: string
  readonly batchId: string
  readonly seed: string
  readonly errorRate: number
  readonly invalidJsonRate: number
  readonly models: KnownModels
  /** Recorded in place as decisions are made, so batches validated concurrently cannot both take a first-time fault. */
  readonly seen: Map<string, string>
}

export const seenKey = (kind: "error" | "invalidJson", digest: Buffer): string => `${kind}:${digest.toString("hex")}`

export const analyseInput = async (args: AnalyseArgs): Promise<AnalysedInput> => {
  const { endpoint, seed, batchId } = args
  const errors: Array<BatchErrorEntry> = []
  const addError = (entry: BatchErrorEntry) => {
    if (errors.length < MAX_ERRORS) errors.push(entry)
  }
  const customIds = new Set<string>()
  const orderKeys: Array<number> = []
  const outcomes: Array<number> = []
  const seenKeys: Array<string> = []
  let model: string | null = null
  let embeddingInputs = 0
  let physicalLine = 0
  const ids = createWriteStream(args.idsPath)
  const idsClosed = once(ids, "close")
  idsClosed.catch(() => undefined) // a write error surfaces where it is awaited, never as an unhandled rejection
  let requests = 0 // non-blank lines, valid or not (what too_many_tasks counts)
  try {
    for await (const lines of readLineChunks(args.inputPath)) {
      let idsChunk = ""
      for (const line of lines) {
        physicalLine++
        if (isBlank(line)) continue
        requests++
        const parsed = parseRequestLine(line, endpoint, seed)
        if (!isParsed(parsed)) {
          addError({ ...parsed, line: physicalLine })
          continue
        }
        idsChunk += `${JSON.stringify(parsed.customId)}\n`
        if (customIds.has(parsed.customId)) {
          addError({
            code: "duplicate_custom_id",
            message: `The custom_id '${parsed.customId}' is a duplicate of another request. The custom_id parameter must be unique for each request in a batch.`,
            param: "custom_id",
            line: physicalLine
          })
          continue
        }
        customIds.add(parsed.customId)
        const lineModel = parsed.body["model"]
        if (typeof lineModel !== "string") {
          addError({ code: "invalid_request", message: "Missing required parameter: 'body.model'.", param: "body.model", line: physicalLine })
          continue
        }
        if (model === null) model = lineModel
        else if (lineModel !== model) {
          addError({
            code: "model_mismatch",
            message: `The provided model '${lineModel}' does not match the model '${model}' of the other requests in the batch. A batch must use a single model.`,
            param: "body.model",
            line: physicalLine
          })
          continue
        }
        if (endpoint === EMBEDDINGS_ENDPOINT) embeddingInputs += embeddingInputCount(parsed.body)
        if (errors.length > 0) continue // the batch will fail: no need to decide outcomes
        orderKeys.push(parsed.digest.readUInt32BE(DigestOffset.order))
        outcomes.push(decideOutcome(parsed, args, seenKeys))
      }
      if (idsChunk.length > 0 && !ids.write(idsChunk)) await once(ids, "drain")
    }
  } finally {
    ids.end()
    await idsClosed
  }

  const total = requests
  if (total === 0) {
    addError({ code: "empty_file", message: "The batch input file is empty.", param: null, line: null })
  }
  if (total > MAX_REQUESTS) {
    addError({
      code: "too_many_tasks",
      message: `The batch input file contains ${total} requests; the limit is ${MAX_REQUESTS}.`,
      param: null,
      line: null
    })
  } else if (embeddingInputs > MAX_EMBEDDING_INPUTS) {
    addError({
      code: "too_many_tasks",
      message: `The batch input file contains ${embeddingInputs} embedding inputs; the limit is ${MAX_EMBEDDING_INPUTS}.`,
      param: null,
      line: null
    })
  }
  if (errors.length > 0) {
    // An invalid batch processes nothing: it must not consume anyone's first-time fault.
    for (const key of seenKeys) if (args.seen.get(key) === batchId) args.seen.delete(key)
    return { valid: false, total, model, errors }
  }

  // Processing order -> prefix counts of failures, so progress counts are O(1) per retrieve.
  const failedBefore = new Uint32Array(orderKeys.length + 1)
  let position = 0
  for (let start = 0; start < orderKeys.length; start += WINDOW) {
    for (const index of windowOrder(orderKeys, start, Math.min(orderKeys.length, start + WINDOW))) {
      const failed = isFailure(outcomes[index])
      failedBefore[position + 1] = failedBefore[position]! + (failed ? 1 : 0)
      position++
    }
  }
  return { valid: true, total: orderKeys.length, model, outcomes: Uint8Array.from(outcomes), failedBefore, seenKeys }
}

/**
 * First-time faults: a request hit by errorRate (or invalidJsonRate) in one
 * batch succeeds when resubmitted in another. The seen map remembers which
 * batch took the fault; the same batch recomputing its outcomes (after a
 * restart) gets the same answer.
 */
const decideOutcome = (parsed: ParsedRequest, args: AnalyseArgs, seenKeys: Array<string>): number => {
  if (unknownModel(args.models, parsed.body) !== undefined) return Outcome.modelNotFound
  if (checkRequest(args.endpoint, parsed.body) !== undefined) return Outcome.badRequest
  const firstTime = (key: string) => {
    const owner = args.seen.get(key)
    return owner === undefined || owner === args.batchId
  }
  if (fractionAt(parsed.digest, DigestOffset.error) < args.errorRate) {
    const key = seenKey("error", parsed.digest)
    if (firstTime(key)) {
      args.seen.set(key, args.batchId)
      seenKeys.push(key)
      return Outcome.serverError
    }
  }
  if (isStructured(args.endpoint, parsed.body) && fractionAt(parsed.digest, DigestOffset.invalidJson) < args.invalidJsonRate) {
    const key = seenKey("invalidJson", parsed.digest)
    if (firstTime(key)) {
      args.seen.set(key, args.batchId)
      seenKeys.push(key)
      return Outcome.invalidJson
    }
  }
  return Outcome.ok
}
