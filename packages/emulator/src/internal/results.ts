/**
 * Writes the output and error files of a batch that just became terminal.
 * Streams the input once, window by window (see analysis.ts), so memory
 * stays bounded by one window whatever the batch size.
 */
import { answerRequest, checkRequest, modelNotFound } from "./answers.js"
import { isFailure, isParsed, Outcome, parseRequestLine, type ParsedRequest, type ValidInput, WINDOW, windowOrder } from "./analysis.js"
import { serverErrorBody } from "./errors.js"
import { DigestOffset, mixHex, sha256 } from "./hash.js"
import { isBlank, readLineChunks } from "./jsonl.js"
import { AppendFile } from "./appendFile.js"

export type NotRunCode = "batch_expired" | "batch_cancelled"

const NOT_RUN_MESSAGES: Record<NotRunCode, string> = {
  batch_expired: "This request could not be executed before the completion window expired.",
  batch_cancelled: "This request was not executed because the batch was cancelled."
}

export interface WriteResultsArgs {
  readonly batchId: string
  readonly endpoint: string
  readonly seed: string
  /** See EmulatorOptions.approximateTokens. */
  readonly approximateTokens: boolean
  readonly inputPath: string
  readonly input: ValidInput
  /** Requests processed (in processing order); the rest get `notRun` lines. */
  readonly processed: number
  readonly notRun: NotRunCode
  /** dropLines fault: fraction of lines omitted from both files. */
  readonly dropLines: number
  /** `created` of the chat.completion bodies (Unix seconds). */
  readonly created: number
  readonly outputPath: string
  readonly errorPath: string
  readonly deliveredPath: string
}

export interface WrittenResults {
  readonly outputLines: number
  readonly errorLines: number
  readonly outputBytes: number
  readonly errorBytes: number
  readonly inputTokens: number
  readonly outputTokens: number
}

export const writeResults = async (args: WriteResultsArgs): Promise<WrittenResults> => {
  const output = new AppendFile(args.outputPath)
  const errors = new AppendFile(args.errorPath)
  const delivered = new AppendFile(args.deliveredPath)
  let inputTokens = 0
  let outputTokens = 0
  // Per-batch key: line ids differ between batches even for the same resubmitted request.
  const batchKey = sha256(args.batchId)
  let window: Array<ParsedRequest> = []
  let windowStart = 0

  const flush = async () => {
    let out = ""
    let outCount = 0
    let err = ""
    let errCount = 0
    let ids = ""
    const keys = window.map((request) => request.digest.readUInt32BE(DigestOffset.order))
    const ranked = windowOrder(keys, 0, window.length)
    for (let rank = 0; rank < ranked.length; rank++) {
      const local = ranked[rank]!
      const request = window[local]!
      // Drops are per batch (the request's digest mixed with the batch's key): a dropped
      // line is a glitch of that batch, and the same request resubmitted usually comes back.
      if (parseInt(mixHex(request.digest, batchKey, 4, DigestOffset.drop), 16) / 0x1_0000_0000 < args.dropLines) continue
      const head = `{"id":"batch_req_${mixHex(request.digest, batchKey, 16)}","custom_id":${JSON.stringify(request.customId)},`
      const requestId = `req_${mixHex(request.digest, batchKey, 16, 16)}`
      if (windowStart + rank >= args.processed) {
        const error = { code: args.notRun, message: NOT_RUN_MESSAGES[args.notRun] }
        err += `${head}"response":null,"error":${JSON.stringify(error)}}\n`
        errCount++
        continue
      }
      const outcome = args.input.outcomes[windowStart + local]
      if (isFailure(outcome)) {
        const status = outcome === Outcome.serverError ? 500 : outcome === Outcome.modelNotFound ? 404 : 400
        const error = outcome === Outcome.serverError ? serverErrorBody :
          outcome === Outcome.modelNotFound ? modelNotFound(String(request.body["model"])) :
          checkRequest(args.endpoint, request.body)
        err += `${head}"response":{"status_code":${status},"request_id":"${requestId}","body":${JSON.stringify({ error })}},"error":null}\n`
        errCount++
        continue
      }
      const answer = answerRequest(args.endpoint, request.body, request.bodyJson, {
        seed: args.seed,
        created: args.created,
        id: mixHex(request.digest, batchKey, 12, 8),
        invalidJson: outcome === Outcome.invalidJson,
        approximateTokens: args.approximateTokens
      })
      inputTokens += answer.inputTokens
      outputTokens += answer.outputTokens
      out += `${head}"response":{"status_code":200,"request_id":"${requestId}","body":${JSON.stringify(answer.body)}},"error":null}\n`
      outCount++
      ids += `${JSON.stringify(request.customId)}\n`
    }
    await output.write(out, outCount)
    await errors.write(err, errCount)
    await delivered.write(ids, outCount)
    windowStart += window.length
    window = []
  }

  let complete = false
  try {
    for await (const lines of readLineChunks(args.inputPath)) {
      for (const line of lines) {
        if (isBlank(line)) continue
        const parsed = parseRequestLine(line, args.endpoint, args.seed)
        // The input was validated; a line failing now means the file changed under us.
        if (!isParsed(parsed)) throw new Error(`Input file of ${args.batchId} changed after validation`)
        window.push(parsed)
        if (window.length === WINDOW) await flush()
      }
    }
    if (window.length > 0) await flush()
    complete = true
  } finally {
    const closing = Promise.all([output.close(), errors.close(), delivered.close()])
    // On failure the original error wins; on success a failed flush/close must surface.
    if (complete) await closing
    else await closing.catch(() => undefined)
  }
  return {
    outputLines: output.lines,
    errorLines: errors.lines,
    outputBytes: output.bytes,
    errorBytes: errors.bytes,
    inputTokens,
    outputTokens
  }
}
