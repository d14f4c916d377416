/**
 * Input tokens of a rendered request, as `estimate`, `--budget` and the context-window check
 * count them (see `Tokens` in @sluice/core for the tokenizers).
 */
import { Prompt, Tokens } from "@sluice/core"
import type { BatchRequest } from "@sluice/core"

/** Input tokens of one request; `schema` of them are its output schema's (see `Tokens.schema`). */
export interface RequestTokens extends Tokens.Count {
  readonly schema: number
}

/**
 * Input tokens of one rendered request. Content parts: each text part counted like a text
 * message's content, each image as `Prompt.imageTokens` (the emulator counts them the same
 * way); a request with images is never `exact`. An output schema is counted on top (it is
 * billed as input), approximately; `exact` speaks of the messages.
 */
export const requestTokens = (request: BatchRequest): RequestTokens => {
  if (request._tag !== "chat") return { ...Tokens.text(request.model, request.input), schema: 0 }
  const { messages, model } = request
  const schema = request.output === undefined ? 0 : Tokens.schema(model, request.output).tokens
  if (messages.every((m): m is typeof m & { readonly content: string } => typeof m.content === "string")) {
    const count = Tokens.chat(model, messages)
    return { tokens: count.tokens + schema, exact: count.exact, schema }
  }
  // The framing of every message (and its role) as for text; the parts on top.
  const framing = Tokens.chat(model, messages.map((m) => ({ role: m.role, content: typeof m.content === "string" ? m.content : "" })))
  let tokens = framing.tokens
  let images = 0
  for (const m of messages) {
    if (typeof m.content === "string") continue
    for (const part of m.content) {
      if (part.type === "text") tokens += Tokens.text(model, part.text).tokens
      else images++
    }
  }
  // Images are an approximation, whatever the tokenizer.
  return { tokens: tokens + images * Prompt.imageTokens + schema, exact: framing.exact && images === 0, schema }
}
