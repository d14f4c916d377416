/**
 * Prompt templates: what a batch stage renders for each row.
 */
import { Schema } from "effect"

export const Role = Schema.Literal("system", "user", "assistant")
export type Role = typeof Role.Type

export const Message = Schema.Struct({
  role: Role,
  content: Schema.String
})
export type Message = typeof Message.Type

/** A rendered chat prompt: the messages sent for one row. */
export const ChatPrompt = Schema.Struct({
  _tag: Schema.Literal("ChatPrompt"),
  messages: Schema.Array(Message)
})
export type ChatPrompt = typeof ChatPrompt.Type

export interface ChatInput {
  /** System instruction, sent first. */
  readonly system?: string
  /** Few-shot examples, sent as user/assistant turns before the row's own turn. */
  readonly examples?: ReadonlyArray<{ readonly user: string; readonly assistant: string }>
  /** Earlier turns of a conversation, sent after the examples. */
  readonly messages?: ReadonlyArray<Message>
  /** The row's own user turn. */
  readonly user?: string
}

/**
 * Builds a chat prompt from a system instruction, few-shot examples, earlier turns and the
 * user turn, in that order.
 */
export const chat = (input: ChatInput): ChatPrompt => {
  const messages: Array<Message> = []
  if (input.system !== undefined) messages.push({ role: "system", content: input.system })
  for (const ex of input.examples ?? []) {
    messages.push({ role: "user", content: ex.user }, { role: "assistant", content: ex.assistant })
  }
  for (const m of input.messages ?? []) messages.push(m)
  if (input.user !== undefined) messages.push({ role: "user", content: input.user })
  if (messages.length === 0) throw new Error("Prompt.chat: a prompt needs at least one message")
  return { _tag: "ChatPrompt", messages }
}
