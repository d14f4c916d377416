/**
 * Credentials in URLs, kept out of exported spans. sluice sends keys in headers (which the HTTP
 * client records redacted), but URLs a provider hands back may carry a credential in their
 * query: Gemini's upload session URL (in a response header, then in the upload's own URL) holds
 * the session's id, which is itself the right to upload. Plain code, no OpenTelemetry import.
 */

/** Query parameters whose values are credentials: a key, a token, a signature, an upload session's id. */
const secretParam = /^(key|api[-_]?key|access[-_]?token|token|sig|signature|upload_id)$/i

const scrubQuery = (query: string): string =>
  query
    .split("&")
    .map((pair) => {
      const name = pair.split("=")[0] ?? ""
      let decoded = name
      try {
        decoded = decodeURIComponent(name)
      } catch {
        // Not percent-encoded properly: judged as written.
      }
      return secretParam.test(decoded) ? `${name}=<redacted>` : pair
    })
    .join("&")

/** One attribute's value with the credentials of its URL (or of `url.query`) redacted. */
export const scrubValue = (key: string, value: string): string => {
  if (key === "url.query") return scrubQuery(value)
  const q = value.indexOf("?")
  return q !== -1 && URL.canParse(value) ? value.slice(0, q + 1) + scrubQuery(value.slice(q + 1)) : value
}

/**
 * The attributes with credentials redacted, or undefined when there were none; `text` also
 * scrubs URLs inside free-text values (a span event's log message).
 */
export const scrubAttributes = (
  attributes: Readonly<Record<string, unknown>>,
  text: (value: string) => string = (value) => value
): Record<string, unknown> | undefined => {
  let changed = false
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(attributes)) {
    const next = typeof value === "string" ? text(scrubValue(key, value)) : value
    if (next !== value) changed = true
    out[key] = next
  }
  return changed ? out : undefined
}

/** Free text (a log line, an error message) with the credentials of the URLs in it redacted. */
export const scrubText = (text: string): string =>
  text.includes("?") ? text.replace(/https?:\/\/[^\s"'<>]+/g, (url) => scrubValue("url.full", url)) : text
