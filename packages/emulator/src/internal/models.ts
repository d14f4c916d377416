/**
 * The model names the emulator knows. A request naming another model is refused the way the
 * real API refuses it (OpenAI: 404 `model_not_found`, an error line in a batch; Anthropic: an
 * `errored` result with `not_found_error`; Gemini: 404 NOT_FOUND on create), so a typo such as
 * `gpt-4o-minni` is caught offline.
 *
 * A list holds patterns: `*` matches any characters, `#` a number (digits: `4`, `2025`),
 * `{a,b,}` one of the alternatives (the empty one included). Every pattern also accepts a dated
 * snapshot or `-latest` after it (`gpt-4o-mini-2024-07-18`, `claude-sonnet-4-5-20250929`,
 * `gemini-2.0-flash-001`, `gemini-2.5-flash-preview-05-20`). The entry `default` stands for
 * DEFAULT_MODELS; `*` accepts any model.
 */

/**
 * The current model families of each provider sluice supports. Precise enough to catch a
 * misspelt variant (`gpt-4o-minni`, `claude-haiku-4.5`), loose enough for new versions of a
 * family (`gpt-5.4-mini`, `gemini-3-pro-preview`).
 */
export const DEFAULT_MODELS: ReadonlyArray<string> = [
  // OpenAI
  "gpt-{#,#.#,#o}{,-mini,-nano,-pro,-turbo,-codex,-codex-mini,-chat-latest,-preview,-turbo-preview,-instruct,-16k,-32k}",
  "gpt-#o{,-mini}-{audio,search,realtime}-preview",
  "gpt-oss-{20b,120b}",
  "chatgpt-4o-latest",
  "o#{,-mini,-pro,-deep-research}",
  "text-embedding-{3-small,3-large,ada-002}",
  // Anthropic
  "claude-{opus,sonnet,haiku}-#{,-#}",
  "claude-#{,-#}-{opus,sonnet,haiku}",
  // Gemini
  "gemini-{#,#.#}-{pro,flash,flash-lite}{,-preview,-exp}{,-image}",
  "gemini-{pro,flash,flash-lite}",
  "gemini-embedding",
  "text-embedding-004",
  "gemma-#{,n}-*",
  // Open-weight models served by the gateways (Groq, Together …) under their own names
  "{meta-llama,Qwen,qwen,deepseek-ai,mistralai,openai,moonshotai,google}/*",
  "{llama,mistral,mixtral,qwen,deepseek}-*",
  "gemma#-*"
]

/** `-2024-07-18`, `-20250929`, `-0613`, `-001`, `-05-20`, `-09-2025`, `-latest`. */
const SNAPSHOT = String.raw`(?:-\d{4}-\d{2}-\d{2}|-\d{8}|-\d{3,4}|-\d{2}-\d{2}|-\d{2}-\d{4}|-latest)?`

const escape = (text: string): string => text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")

/** One pattern as a regular expression source (anchored by the caller). */
const patternSource = (pattern: string): string => {
  let out = ""
  let literal = ""
  let depth = 0
  const flush = () => {
    out += escape(literal)
    literal = ""
  }
  for (const char of pattern) {
    if (char === "*" || char === "#" || char === "{" || char === "}" || (char === "," && depth > 0)) {
      flush()
      if (char === "*") out += ".*"
      else if (char === "#") out += String.raw`\d+`
      else if (char === "{") (out += "(?:", depth++)
      else if (char === "}") (out += ")", depth--)
      else out += "|"
    } else {
      literal += char
    }
  }
  flush()
  if (depth !== 0) throw new Error(`unbalanced braces in model pattern '${pattern}'`)
  return out
}

/** Splits at the commas outside braces: `gpt-{4o,4.1},claude-*` is two patterns. */
const splitList = (list: string): Array<string> => {
  const entries: Array<string> = []
  let depth = 0
  let start = 0
  for (let i = 0; i < list.length; i++) {
    if (list[i] === "{") depth++
    else if (list[i] === "}") depth--
    else if (list[i] === "," && depth === 0) {
      entries.push(list.slice(start, i))
      start = i + 1
    }
  }
  entries.push(list.slice(start))
  return entries
}

/**
 * A comma-separated list as the `models` option (what `sluice emulator --models` takes).
 * Throws with the reason when the list is empty or a pattern is malformed.
 */
export const parseModelList = (text: string): ReadonlyArray<string> => {
  const entries = splitList(text).map((entry) => entry.trim()).filter((entry) => entry !== "")
  KnownModels.of(entries)
  return entries
}

export class KnownModels {
  private constructor(
    /** The patterns as given (`default` expanded); empty when any model is accepted. */
    readonly patterns: ReadonlyArray<string>,
    private readonly regex: RegExp | undefined
  ) {}

  /** Any model name is accepted. */
  static readonly any = new KnownModels([], undefined)

  /**
   * A list of patterns (an array, or one comma-separated string as the CLI takes it). `default`
   * expands to DEFAULT_MODELS; `*` alone accepts any model. Throws on an empty list or
   * unbalanced braces.
   */
  static of(list: string | ReadonlyArray<string> = ["default"]): KnownModels {
    const entries = (typeof list === "string" ? splitList(list) : list).map((entry) => entry.trim()).filter((entry) => entry !== "")
    if (entries.length === 0) throw new Error("the list of known models is empty (use '*' to accept any model)")
    if (entries.includes("*")) return KnownModels.any
    const patterns = entries.flatMap((entry) => (entry === "default" ? DEFAULT_MODELS : [entry]))
    return new KnownModels(patterns, new RegExp(`^(?:${patterns.map((p) => `(?:${patternSource(p)})`).join("|")})${SNAPSHOT}$`))
  }

  /** True when `model` (for Gemini, without its `models/` prefix) is known. */
  accepts(model: string): boolean {
    return this.regex === undefined || this.regex.test(model)
  }
}
