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

/** Base64 image data in a wire line: not text, counted per image instead. */
const inlineImage = /data:[a-z]+\/[a-z0-9.+-]+;base64,[A-Za-z0-9+/=]*|"data":"[A-Za-z0-9+/=]{256,}"/g

/** The largest output a wire line allows: its `max_tokens` (or the other APIs' names for it). */
const maxOutput = /"(?:max_tokens|max_completion_tokens|max_output_tokens|maxOutputTokens)":\s*(\d+)/

/**
 * Tokens one wire line will take from a tokens-per-minute limit, for pacing online requests:
 * its text counted with the model's tokenizer (the JSON around the messages makes it a little
 * more than the provider counts: on the safe side), each inline image as `Prompt.imageTokens`,
 * plus its `max_tokens` — which OpenAI counts against the limit when the request arrives —
 * or `defaultOutput` when it names none.
 */
export const lineTokens = (model: string, line: string, defaultOutput: number): number => {
  const output = maxOutput.exec(line)
  return wireTokens(model, line) + (output === null ? defaultOutput : Number(output[1]))
}

/**
 * Input tokens of one wire line, its output not counted: its text with the model's tokenizer
 * (the JSON around the messages included: a little more than the provider counts), each inline
 * image as `Prompt.imageTokens`. For lines whose request is no longer at hand (a shard re-cut).
 */
export const wireTokens = (model: string, line: string): number => {
  let images = 0
  const text = line.length > 4096 ? line.replace(inlineImage, () => (images++, "")) : line
  return Tokens.text(model, text).tokens + images * Prompt.imageTokens
}
