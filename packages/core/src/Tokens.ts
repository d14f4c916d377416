/**
 * Token counts of rendered requests, for cost estimates before anything is submitted.
 * OpenAI models are counted with their real tokenizer (gpt-tokenizer: o200k_base for the
 * gpt-4o / gpt-4.1 / gpt-5 / o-series families, cl100k_base for gpt-4, gpt-3.5 and the
 * embedding models). Other models get an approximation of one token per four characters,
 * which is typically within 10–20% for English prose; `exact` says which applies.
 */
import { createRequire } from "node:module"

export interface Count {
  readonly tokens: number
  /** True when counted with the model's own tokenizer. */
  readonly exact: boolean
}

type Counter = (text: string) => number

const approximate: Counter = (text) => Math.ceil(text.length / 4)

/**
 * Text that spells a special token ("<|endoftext|>") is plain text in a prompt: counted as
 * such, where the tokenizer's default would throw.
 */
const asText = { disallowedSpecial: new Set<string>() }
/**
 * The tokenizers' rank tables take a quarter of a second and ~100 MB to load: loaded on the
 * first count, not by every process that imports sluice (`sluice --help`, a run that never
 * estimates).
 */
type Encoding = typeof import("gpt-tokenizer/encoding/o200k_base")
const load = createRequire(import.meta.url)
let o200k: Encoding | undefined
let cl100k: Encoding | undefined
const o200kText: Counter = (text) => (o200k ??= load("gpt-tokenizer/cjs/encoding/o200k_base") as Encoding).countTokens(text, asText)
const cl100kText: Counter = (text) => (cl100k ??= load("gpt-tokenizer/cjs/encoding/cl100k_base") as Encoding).countTokens(text, asText)

/** The tokenizer of a model, or undefined when sluice has none for it. */
export const counterFor = (model: string): Counter | undefined => {
  if (/^(gpt-4o|gpt-4\.1|gpt-4\.5|gpt-5|o1|o3|o4|chatgpt-4o)/.test(model)) return o200kText
  if (/^(gpt-4|gpt-3\.5|text-embedding-3|text-embedding-ada)/.test(model)) return cl100kText
  return undefined
}

/** Every message costs a few tokens of framing; the reply is primed with three more. */
const PER_MESSAGE = 3
const REPLY_PRIMING = 3

/** Input tokens of a chat request: its messages' text plus the chat format's framing. */
export const chat = (model: string, messages: ReadonlyArray<{ readonly role: string; readonly content: string }>): Count => {
  const counter = counterFor(model)
  const count = counter ?? approximate
  let tokens = REPLY_PRIMING
  for (const m of messages) tokens += PER_MESSAGE + count(m.role) + count(m.content)
  return { tokens, exact: counter !== undefined }
}

/** Tokens of a plain text (an embeddings input, or an answer). */
export const text = (model: string, value: string): Count => {
  const counter = counterFor(model)
  return { tokens: (counter ?? approximate)(value), exact: counter !== undefined }
}

/**
 * Input tokens of a structured-output schema: providers put it in the prompt and bill it
 * (OpenAI's `response_format`, the forced tool's `input_schema` on Anthropic, Gemini's
 * `responseJsonSchema`). How each renders it is not published: this counts the schema's JSON
 * text and its name, so the count is never `exact`.
 */
export const schema = (model: string, format: { readonly name: string; readonly schema: unknown }): Count => {
  const count = counterFor(model) ?? approximate
  return { tokens: count(format.name) + count(JSON.stringify(format.schema)), exact: false }
}
