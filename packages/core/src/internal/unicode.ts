/**
 * Text a sink may be unable to store. A JavaScript string can hold a lone surrogate (half of
 * a UTF-16 pair), which no UTF-8 file or database can: encoders silently put U+FFFD in its
 * place. U+0000 is valid UTF-8, but PostgreSQL's text and jsonb refuse it. Model output can
 * contain either (it can be steered by the source data), so sinks check before writing.
 */

/** A code point of category Cs: in `u` mode only an unpaired surrogate is one. */
const LONE_SURROGATE = /\p{Cs}/u

/** The index of the first lone surrogate in `s`, or -1. */
export const loneSurrogateAt = (s: string): number => s.search(LONE_SURROGATE)

const hex = (code: number) => `U+${code.toString(16).toUpperCase().padStart(4, "0")}`

/**
 * Why `s` cannot be stored (with `nul`, U+0000 counts too), naming the character and its
 * position (a UTF-16 index, as JavaScript counts), or undefined when it can.
 */
export const textProblem = (s: string, nul: boolean): string | undefined => {
  const lone = loneSurrogateAt(s)
  const zero = nul ? s.indexOf("\u0000") : -1
  if (zero >= 0 && (lone < 0 || zero < lone)) return `U+0000 at character ${zero}`
  if (lone >= 0) return `a lone surrogate (${hex(s.charCodeAt(lone))}) at character ${lone}`
  return undefined
}

/** A path into a value for a message: `output`, `output.answer`, `output.topics[2]`. */
const member = (path: string, key: string): string =>
  /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`

/**
 * The first string in `value` — itself, or nested in the arrays and objects JSON.stringify
 * would write, object keys included — that cannot be stored: `"<path> has <problem>"`, or
 * undefined. A cycle is left for the encoder to report.
 */
export const jsonProblem = (value: unknown, path: string, nul: boolean): string | undefined => {
  const seen = new Set<object>()
  const walk = (v: unknown, at: string): string | undefined => {
    if (typeof v === "string") {
      const problem = textProblem(v, nul)
      return problem === undefined ? undefined : `${at} has ${problem}`
    }
    if (typeof v !== "object" || v === null || v instanceof Date || seen.has(v)) return undefined
    seen.add(v)
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        const found = walk(v[i], `${at}[${i}]`)
        if (found !== undefined) return found
      }
      return undefined
    }
    for (const key of Object.keys(v)) {
      const problem = textProblem(key, nul)
      if (problem !== undefined) return `a key of ${at} has ${problem}`
      const found = walk((v as Record<string, unknown>)[key], member(at, key))
      if (found !== undefined) return found
    }
    return undefined
  }
  return walk(value, path)
}
