/**
 * Prompt templates: what a batch stage renders for each row.
 *
 * A message's content is a string, or a list of parts — text, and images by URL or as
 * base64 data — for models that accept images. Images belong in user turns: system and
 * assistant turns carry text only (every provider refuses images there).
 */
import { readFileSync } from "node:fs"
import { extname } from "node:path"
import { Schema } from "effect"

export const Role = Schema.Literal("system", "user", "assistant")
export type Role = typeof Role.Type

/** A text part of a message. */
export const TextPart = Schema.Struct({
  type: Schema.Literal("text"),
  text: Schema.String
})
export type TextPart = typeof TextPart.Type

/** The image types every vision provider sluice speaks accepts (OpenAI, Anthropic, Gemini). */
export const ImageMediaType = Schema.Literal("image/png", "image/jpeg", "image/gif", "image/webp")
export type ImageMediaType = typeof ImageMediaType.Type

/** An image the provider fetches itself. */
export const UrlImageSource = Schema.Struct({
  type: Schema.Literal("url"),
  url: Schema.String
})
export type UrlImageSource = typeof UrlImageSource.Type

/** An image sent inside the request: base64 of the file's bytes (no `data:` prefix). */
export const Base64ImageSource = Schema.Struct({
  type: Schema.Literal("base64"),
  mediaType: ImageMediaType,
  data: Schema.String
})
export type Base64ImageSource = typeof Base64ImageSource.Type

export const ImageSource = Schema.Union(UrlImageSource, Base64ImageSource)
export type ImageSource = typeof ImageSource.Type

/** An image part of a (user) message: `Prompt.imageUrl(url)` or `Prompt.imageFile(path)`. */
export const ImagePart = Schema.Struct({
  type: Schema.Literal("image"),
  source: ImageSource
})
export type ImagePart = typeof ImagePart.Type

export const ContentPart = Schema.Union(TextPart, ImagePart)
export type ContentPart = typeof ContentPart.Type

/** A message's content: plain text, or a list of text and image parts. */
export const Content = Schema.Union(Schema.String, Schema.Array(ContentPart))
export type Content = typeof Content.Type

export const Message = Schema.Struct({
  role: Role,
  content: Content
})
export type Message = typeof Message.Type

/** A rendered chat prompt: the messages sent for one row. */
export const ChatPrompt = Schema.Struct({
  _tag: Schema.Literal("ChatPrompt"),
  messages: Schema.Array(Message)
})
export type ChatPrompt = typeof ChatPrompt.Type

/**
 * Input tokens counted for one image, by `sluice estimate`, the `--budget` check and the
 * emulator's usage. Providers bill images by their size, each in its own way: OpenAI 85 +
 * 170 per 512-px tile at the default detail (765 for a 1024×1024 image, 85 at low detail),
 * Anthropic about width × height / 750 (≈1,400 for 1024×1024, at most ≈1,600 after its
 * downscaling), Gemini 258 per 768-px tile (258 for an image up to 384 px). sluice does not
 * look at the pixels, so every image counts as this one number: OpenAI's count for a
 * 1024×1024 image, in the middle of those ranges.
 */
export const imageTokens = 765

/**
 * What a value is, for an error naming a prompt part that is not text: "undefined", "null",
 * "a number", "an array", …
 */
export const describeValue = (value: unknown): string =>
  value === undefined ? "undefined" : value === null ? "null" : Array.isArray(value) ? "an array" : typeof value === "object" ? "an object" : `a ${typeof value}`

/**
 * `value` when it is a string; else an Error naming the part. A misspelt or missing field
 * renders `undefined`: the row fails (`render_error`) instead of going out without that text.
 */
const requireText = (where: string, part: string, value: unknown): string => {
  if (typeof value === "string") return value
  throw new Error(`${where}: ${part} is ${describeValue(value)}; expected a string`)
}

/** A text part. */
export const text = (value: string): TextPart => ({ type: "text", text: requireText("Prompt.text", "the text", value) })

const mediaTypes: Readonly<Record<string, ImageMediaType>> = {
  ".png": "image/png",
  ".jpg": "image/jpeg",
  ".jpeg": "image/jpeg",
  ".gif": "image/gif",
  ".webp": "image/webp"
}

/** The image media type of a file name or URL path by its extension (png, jpeg/jpg, gif, webp), if any. */
export const mediaTypeOf = (name: string): ImageMediaType | undefined => mediaTypes[extname(name).toLowerCase()]

const isMediaType = (value: string): value is ImageMediaType => Object.values(mediaTypes).includes(value as ImageMediaType)

const shown = (value: string): string => JSON.stringify(value.length > 100 ? `${value.slice(0, 100)}…` : value)

/**
 * An image the provider downloads from `url` (http or https; providers differ in what else
 * they accept). A `data:image/…;base64,…` URL is taken apart into base64 data instead, which
 * every provider accepts.
 */
export const imageUrl = (url: string): ImagePart => {
  requireText("Prompt.imageUrl", "the URL", url)
  const data = /^data:([^;,]+);base64,(.*)$/s.exec(url)
  if (data !== null) {
    const mediaType = data[1]!.toLowerCase()
    if (!isMediaType(mediaType)) {
      throw new Error(`Prompt.imageUrl: a data URL of type ${shown(mediaType)}; expected image/png, image/jpeg, image/gif or image/webp`)
    }
    return { type: "image", source: { type: "base64", mediaType, data: data[2]! } }
  }
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw new Error(`Prompt.imageUrl: ${shown(url)} is not an absolute URL`)
  }
  if (parsed.protocol === "data:") throw new Error(`Prompt.imageUrl: a data URL must be base64-encoded (data:<type>;base64,…)`)
  return { type: "image", source: { type: "url", url } }
}

/**
 * An image read from a local file, sent as base64 data. The file is read when the prompt is
 * rendered (synchronously, so a template stays a plain function); its type comes from the
 * extension: .png, .jpg/.jpeg, .gif, .webp. An unreadable file or an unknown extension is an
 * Error naming the path — the row fails with it, the run goes on.
 */
export const imageFile = (path: string): ImagePart => {
  requireText("Prompt.imageFile", "the path", path)
  const mediaType = mediaTypeOf(path)
  if (mediaType === undefined) {
    throw new Error(`Prompt.imageFile: ${shown(path)} is not a known image type (by its extension); expected .png, .jpg, .jpeg, .gif or .webp`)
  }
  let bytes: Buffer
  try {
    bytes = readFileSync(path)
  } catch (e) {
    const reason = typeof e === "object" && e !== null && "code" in e ? String((e as { code: unknown }).code) : String(e)
    throw new Error(`Prompt.imageFile: cannot read ${shown(path)} (${reason})`)
  }
  if (bytes.length === 0) throw new Error(`Prompt.imageFile: ${shown(path)} is empty`)
  return { type: "image", source: { type: "base64", mediaType, data: bytes.toString("base64") } }
}

/** The parts of a message's content (a string is one text part). */
export const partsOf = (content: Content): ReadonlyArray<ContentPart> => (typeof content === "string" ? [text(content)] : content)

/** The text of a message's content: a string as is, text parts joined by `separator`; images left out. */
export const textOf = (content: Content, separator = "\n"): string => {
  if (typeof content === "string") return content
  const texts: Array<string> = []
  for (const part of content) if (part.type === "text") texts.push(part.text)
  return texts.join(separator)
}

/** How many images a message's content holds. */
export const imageCount = (content: Content): number => {
  if (typeof content === "string") return 0
  let n = 0
  for (const part of content) if (part.type === "image") n++
  return n
}

/**
 * Why these messages cannot be sent (an image outside a user turn, a part that is neither
 * text nor image), or undefined when they can.
 */
export const problemOf = (messages: ReadonlyArray<Message>): string | undefined => {
  for (let i = 0; i < messages.length; i++) {
    const { role, content } = messages[i]!
    if (typeof content === "string") continue
    if (!Array.isArray(content)) return `message ${i} (${role}) has content that is neither a string nor a list of parts`
    for (let j = 0; j < content.length; j++) {
      const part: unknown = content[j]
      const type = typeof part === "object" && part !== null ? (part as { type?: unknown }).type : undefined
      if (type === "text" && typeof (part as { text?: unknown }).text === "string") continue
      if (type === "image") {
        if (role !== "user") return `message ${i} is a ${role} turn with an image: images are only allowed in user turns`
        const source = (part as { source?: unknown }).source as { type?: unknown; url?: unknown; data?: unknown; mediaType?: unknown } | undefined
        const valid =
          typeof source === "object" && source !== null &&
          ((source.type === "url" && typeof source.url === "string") ||
            (source.type === "base64" && typeof source.data === "string" && typeof source.mediaType === "string" && isMediaType(source.mediaType)))
        if (valid) continue
        return `message ${i}, part ${j}: an image needs a source {type: "url", url} or {type: "base64", mediaType, data}`
      }
      return `message ${i}, part ${j}: expected a text part {type: "text", text} or an image part (Prompt.imageUrl, Prompt.imageFile)`
    }
  }
  return undefined
}

/**
 * The parts of a chat prompt. A text part given as `undefined` or `null` (a misspelt or
 * missing field) throws, naming the part, so the row fails (`render_error`) instead of going
 * out without it: leave a key out to send no such part. The lists (`examples`, `messages`,
 * `images`) may be left out or `undefined` (none).
 */
export interface ChatInput {
  /** System instruction, sent first. */
  readonly system?: string
  /** Few-shot examples, sent as user/assistant turns before the row's own turn (text only). */
  readonly examples?: ReadonlyArray<{ readonly user: string; readonly assistant: string }> | undefined
  /** Earlier turns of a conversation, sent after the examples. */
  readonly messages?: ReadonlyArray<Message> | undefined
  /** The row's own user turn. */
  readonly user?: string
  /**
   * Images sent in the row's own user turn, after its text: `Prompt.imageUrl(url)`,
   * `Prompt.imageFile(path)`. Without images the turn's content stays a plain string.
   */
  readonly images?: ReadonlyArray<ImagePart> | undefined
}

/** A list given for `part`: undefined (or left out) is none; anything else must be an array. */
const listOf = <A>(part: string, value: ReadonlyArray<A> | undefined): ReadonlyArray<A> => {
  if (value === undefined) return []
  if (!Array.isArray(value)) throw new Error(`Prompt.chat: ${part} is ${describeValue(value)}; expected a list`)
  return value
}

const roles: ReadonlyArray<unknown> = Role.literals

/**
 * Builds a chat prompt from a system instruction, few-shot examples, earlier turns and the
 * user turn (its text, then its images), in that order. Throws, naming the part, when a text
 * part given is undefined, null or not a string (`user: r.txt` for a field that does not
 * exist: leave a key out to send no such part), when an image is not an image part, or when
 * an image sits in a system or assistant turn.
 */
export const chat = (input: ChatInput): ChatPrompt => {
  const messages: Array<Message> = []
  if ("system" in input) messages.push({ role: "system", content: requireText("Prompt.chat", "system", input.system) })
  listOf("examples", input.examples).forEach((ex: unknown, i) => {
    if (typeof ex !== "object" || ex === null) throw new Error(`Prompt.chat: examples[${i}] is ${describeValue(ex)}; expected {user, assistant}`)
    const { user, assistant } = ex as { readonly user?: unknown; readonly assistant?: unknown }
    messages.push(
      { role: "user", content: requireText("Prompt.chat", `examples[${i}].user`, user) },
      { role: "assistant", content: requireText("Prompt.chat", `examples[${i}].assistant`, assistant) }
    )
  })
  listOf("messages", input.messages).forEach((m: unknown, i) => {
    if (typeof m !== "object" || m === null) throw new Error(`Prompt.chat: messages[${i}] is ${describeValue(m)}; expected {role, content}`)
    const { role, content } = m as { readonly role?: unknown; readonly content?: unknown }
    if (!roles.includes(role)) throw new Error(`Prompt.chat: messages[${i}].role is ${typeof role === "string" ? JSON.stringify(role) : describeValue(role)}; expected "system", "user" or "assistant"`)
    if (Array.isArray(content)) {
      content.forEach((part: unknown, j) => {
        if (typeof part === "object" && part !== null && (part as { type?: unknown }).type === "text") {
          requireText("Prompt.chat", `messages[${i}].content[${j}].text`, (part as { text?: unknown }).text)
        }
      })
    } else requireText("Prompt.chat", `messages[${i}].content`, content)
    messages.push(m as Message)
  })
  const images = listOf("images", input.images)
  images.forEach((image: unknown, i) => {
    if (typeof image !== "object" || image === null || (image as { type?: unknown }).type !== "image") {
      throw new Error(`Prompt.chat: images[${i}] is not an image part; make one with Prompt.imageUrl(url) or Prompt.imageFile(path)`)
    }
  })
  const user = "user" in input ? requireText("Prompt.chat", "user", input.user) : undefined
  if (images.length > 0) {
    const parts: Array<ContentPart> = user === undefined || user === "" ? [] : [text(user)]
    messages.push({ role: "user", content: [...parts, ...images] })
  } else if (user !== undefined) messages.push({ role: "user", content: user })
  if (messages.length === 0) throw new Error("Prompt.chat: a prompt needs at least one message")
  const problem = problemOf(messages)
  if (problem !== undefined) throw new Error(`Prompt.chat: ${problem}`)
  return { _tag: "ChatPrompt", messages }
}
