/**
 * Repair of answers that fail the output Schema: the row's original messages, the model's
 * answer, and what was wrong with it go back to the model in a later shard. An answer cut
 * off at the token limit is asked again with twice the room instead.
 */
import type { BatchRequest, Pipeline } from "@sluice/core"
import type { BatchProvider } from "@sluice/providers"

/** The custom_id of a repair: the row's id with its repair number (ids stay ≤ 64 characters). */
export const repairId = (customId: string): string => {
  const match = /-r(\d+)$/.exec(customId)
  return match === null ? `${customId}-r1` : `${customId.slice(0, match.index)}-r${Number(match[1]) + 1}`
}

const DEFAULT_MAX_TOKENS = 1024

const instruction = (error: string) =>
  "Your previous answer does not match the required JSON schema:\n" +
  error.slice(0, 2000) +
  "\nAnswer again with only a JSON value that matches the schema exactly."

/** The repair request of a row, as a wire line, or undefined when none can be made. */
export const request = (
  stage: Pipeline.BatchStage<any, any>,
  row: { readonly id: string; readonly input: unknown },
  answer: { readonly text: string; readonly finishReason: string | null },
  error: string,
  provider: BatchProvider
): { readonly customId: string; readonly line: string; readonly request: BatchRequest } | undefined => {
  const original = stage.render(row.input)
  if (original._tag !== "chat") return undefined
  let repaired: BatchRequest
  if (answer.finishReason === "length") {
    // Truncated, not wrong: the same question with more room.
    const max = original.params["max_tokens"] ?? original.params["max_completion_tokens"]
    const room = typeof max === "number" ? max * 2 : DEFAULT_MAX_TOKENS * 2
    const key = "max_completion_tokens" in original.params ? "max_completion_tokens" : "max_tokens"
    repaired = { ...original, params: { ...original.params, [key]: room } }
  } else {
    repaired = {
      ...original,
      messages: [...original.messages, { role: "assistant", content: answer.text }, { role: "user", content: instruction(error) }]
    }
  }
  const customId = repairId(row.id)
  return { customId, line: provider.encode(repaired, customId), request: repaired }
}
