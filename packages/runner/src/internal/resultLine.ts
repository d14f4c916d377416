/**
 * results.jsonl lines, written and read cheaply. The Collector writes each line as
 * `{"shard":…,"attempt":…,["cached":true,]"_tag":…,"customId":…,…,"usage":{…},"raw":…}`,
 * the raw answer as the provider sent it when it can (no second serialisation). Readers take
 * their head (shard, custom_id, whether it succeeded or came from the cache) and their usage
 * without decoding or parsing the raw answer, often far longer than the rest.
 */
import type { BatchResult, Failed } from "@sluice/core"

/**
 * A result's `raw` as JSON text: the text it was received as (`rawText`), else serialised.
 * Received text with a carriage return in it (JSON whitespace, legal) is serialised instead:
 * line readers that split on a bare CR would break the line there. Undefined for no `raw`.
 */
export const rawJson = (result: Pick<BatchResult, "raw" | "rawText">): string | undefined =>
  result.rawText !== undefined && !result.rawText.includes("\r") ? result.rawText : JSON.stringify(result.raw)

/** `head` (a JSON object's text) with `"raw":…` as its last member, as `JSON.stringify` would put it. */
export const withRaw = (head: string, result: Pick<BatchResult, "raw" | "rawText">): string => {
  const raw = rawJson(result)
  return raw === undefined ? head : `${head.slice(0, -1)}${head.length > 2 ? "," : ""}"raw":${raw}}`
}

/** A failed result as stored (results.jsonl, online answers): its fields, `raw` last, no `rawText`. */
export const encodeFailed = (result: Failed): string =>
  withRaw(
    JSON.stringify({
      _tag: result._tag,
      customId: result.customId,
      failure: result.failure,
      code: result.code,
      message: result.message,
      status: result.status
    }),
    result
  )

export interface ResultHead {
  readonly shard: string
  readonly cached: boolean
  readonly succeeded: boolean
  readonly customId: string
  readonly usage: { readonly input: number; readonly output: number } | null
}

const usagePattern = /^,"usage":\{"inputTokens":(\d+),"outputTokens":(\d+),"cachedInputTokens":(\d+)\}/
/**
 * A `,"usage":{"inputTokens":` in the line's bytes can only be the field itself: a JSON string
 * holds no unescaped quote. The field comes before the raw answer, so the first one is it.
 */
const usageBytes = Buffer.from(`,"usage":{"inputTokens":`)
/** Enough of a line to hold its shard, tag and custom_id (ids are at most 64 characters). */
const HEAD = 512

/** The head of a results.jsonl line (its bytes in [start, end)); undefined for a line not written so. */
export const resultHead = (bytes: Buffer, start: number, end: number): ResultHead | undefined => {
  let text = bytes.toString("utf8", start, Math.min(end, start + HEAD))
  let head = headOf(text)
  if (head === undefined && end - start > HEAD) head = headOf((text = bytes.toString("utf8", start, end)))
  if (head === undefined) return undefined
  let usage: ResultHead["usage"] = null
  if (head.succeeded) {
    const at = bytes.subarray(start, end).indexOf(usageBytes)
    const m = at < 0 ? null : usagePattern.exec(bytes.toString("latin1", start + at, Math.min(end, start + at + 120)))
    if (m !== null) usage = { input: Number(m[1]), output: Number(m[2]) }
  }
  return { ...head, usage }
}

const headOf = (line: string): Omit<ResultHead, "usage"> | undefined => {
  const shardEnd = line.indexOf(`","attempt":`)
  if (!line.startsWith(`{"shard":"`) || shardEnd < 0) return undefined
  const tagAt = line.indexOf(`"_tag":"`, shardEnd)
  const idAt = line.indexOf(`"customId":"`, tagAt)
  if (tagAt < 0 || idAt < 0) return undefined
  const idStart = idAt + 12
  const idEnd = line.indexOf(`"`, idStart)
  if (idEnd < 0) return undefined
  let customId = line.slice(idStart, idEnd)
  // An id with an escape in it (sluice writes none, but a key may hold anything): read it properly.
  if (customId.includes("\\")) {
    try {
      customId = (JSON.parse(line) as { customId: string }).customId
    } catch {
      return undefined
    }
  }
  return {
    shard: JSON.parse(line.slice(9, shardEnd + 1)) as string,
    cached: line.slice(shardEnd, tagAt).includes(`"cached":true`),
    succeeded: line.startsWith(`"_tag":"Succeeded"`, tagAt),
    customId
  }
}
