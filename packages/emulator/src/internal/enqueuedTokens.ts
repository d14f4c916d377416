/**
 * An organisation's enqueued-token limit, the way OpenAI enforces it: per model, the input
 * tokens of the batches not yet ended. A batch whose tokens would take its model past the limit
 * fails validation with `token_limit_exceeded` (it is never run). The highest total the
 * emulator accepted per model is kept, so a test can tell whether clients together stayed under it.
 */
import { readFile } from "node:fs/promises"
import { promptTokens, schemaTokens } from "./answers.js"

/** A batch's model and input tokens, counted as its answers' usage is (see answers.ts). */
export const countInput = async (path: string, approximateTokens = false): Promise<{ readonly model: string; readonly tokens: number }> => {
  const text = await readFile(path, "utf8").catch(() => "")
  let model = ""
  let tokens = 0
  for (const line of text.split("\n")) {
    if (line.trim().length === 0) continue
    try {
      const body = (JSON.parse(line) as { body?: Record<string, unknown> }).body ?? {}
      const m = typeof body["model"] === "string" ? body["model"] : ""
      if (model === "") model = m
      const messages = Array.isArray(body["messages"]) ? (body["messages"] as ReadonlyArray<unknown>) : []
      const counted = approximateTokens ? "" : m
      tokens += promptTokens(messages, counted) + schemaTokens(body["response_format"], counted)
    } catch {
      // An unparseable line fails validation on its own (analysis.ts).
    }
  }
  return { model, tokens }
}

/** The message OpenAI gives (its shape: the model, the organisation, the limit). */
export const limitMessage = (model: string, limit: number, enqueued: number): string =>
  `Enqueued token limit reached for ${model} in organization org-emulator. Limit: ${limit.toLocaleString("en-US")} enqueued tokens. ` +
  `Please try submitting your batch again once your enqueued token count is below the limit (${enqueued.toLocaleString("en-US")} now).`

export class EnqueuedTokens {
  /** Highest total of accepted batches' input tokens enqueued at once, per model. */
  readonly maxSeen = new Map<string, number>()
  constructor(readonly limit: number | undefined) {}

  /** Records an accepted batch's total (the model's enqueued tokens with it). */
  accepted(model: string, total: number): void {
    this.maxSeen.set(model, Math.max(this.maxSeen.get(model) ?? 0, total))
  }

  get json(): { readonly limit: number | null; readonly maxSeen: Record<string, number> } {
    return { limit: this.limit ?? null, maxSeen: Object.fromEntries(this.maxSeen) }
  }

  reset(): void {
    this.maxSeen.clear()
  }
}
