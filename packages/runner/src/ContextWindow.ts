/**
 * Requests too long for their model. A model's context window comes from the price table
 * (data/prices.json, or a `--prices` file); a request whose input tokens exceed it would be
 * refused by the provider, so a run fails it before sending (`context_length`) and
 * `estimate` warns about it. Models without a known window are not checked.
 *
 * Counting tokens costs time on every row, so a cheap bound comes first. Each tokenizer
 * sluice counts with spends at least one byte of UTF-8 text on a token (byte-level BPE for
 * OpenAI's encodings; about four characters a token for the rest), and a request's wire line
 * holds all of its text, roles and schema plus far more framing bytes than the chat format's
 * framing tokens. So a request's input tokens are at most its line's bytes, plus the fixed
 * count of each image (whose base64 bytes may be fewer): a line that fits under the window
 * that way is never tokenized. Only longer lines are counted.
 */
import { Prompt } from "@sluice/core"
import type { BatchRequest } from "@sluice/core"
import { requestTokens } from "./RequestTokens.js"

export interface Overflow {
  readonly tokens: number
  /** False when the count is approximate (no tokenizer for the model, images, the schema). */
  readonly exact: boolean
  readonly window: number
}

/** An upper bound of a request's input tokens, from its encoded line's length in bytes. */
export const tokenBound = (request: BatchRequest, lineBytes: number): number => {
  if (request._tag !== "chat") return lineBytes
  let images = 0
  for (const m of request.messages) images += Prompt.imageCount(m.content)
  return lineBytes + images * Prompt.imageTokens
}

/** The overflow of a request over `window`, or undefined when it fits (counted only when the bound says it may not). */
export const check = (request: BatchRequest, lineBytes: number, window: number): Overflow | undefined => {
  if (tokenBound(request, lineBytes) <= window) return undefined
  const count = requestTokens(request)
  return count.tokens > window ? { tokens: count.tokens, exact: count.exact && count.schema === 0, window } : undefined
}

/** "the request has 1234 input tokens, more than gpt-4o-mini's context window of 1000" */
export const describe = (model: string, o: Overflow): string =>
  `the request has ${o.exact ? "" : "about "}${o.tokens} input tokens, more than ${model}'s context window of ${o.window}`
