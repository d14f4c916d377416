/**
 * Where credentials may go. A provider's key is sent only to the origin of its base URL, and
 * a base URL is refused when it would leak something on its own: credentials in it (they
 * would reach the manifest, logs and errors), a query string (`?key=…`), or `http://` to a
 * host that is not this machine (the key would cross the network in clear text) unless the
 * user opts in (`SLUICE_ALLOW_INSECURE_HTTP=1`, `allowInsecureHttp: true`).
 *
 * Messages show a URL only masked (`maskUrl`): never a password, a user name or a query value.
 */

/** Hosts whose traffic never leaves the machine: 127.0.0.0/8, ::1 and `localhost`. */
export const isLoopbackHost = (hostname: string): boolean => {
  const host = hostname.toLowerCase().replace(/\.$/, "")
  if (host === "localhost" || host === "[::1]" || host === "::1") return true
  // `new URL` has already normalised IPv4 forms (`127.1`, `2130706433`) to dotted quads.
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)
}

/**
 * A URL as messages may show it: user name and password as `***`, every query value as
 * `***`, a fragment as `#***`. Text that is not a URL is not shown at all.
 */
export const maskUrl = (text: string): string => {
  let url: URL
  try {
    url = new URL(text)
  } catch {
    return "(not a URL)"
  }
  const userinfo = url.username === "" && url.password === "" ? "" : url.password === "" ? "***@" : "***:***@"
  const query = url.search === "" ? "" : "?" + [...url.searchParams.keys()].map((k) => `${encodeURIComponent(k)}=***`).join("&")
  const fragment = url.hash === "" ? "" : "#***"
  return `${url.protocol}//${userinfo}${url.host}${url.pathname}${query}${fragment}`
}

export interface OriginOptions {
  /** Send credentials over `http://` to a host that is not this machine. */
  readonly allowInsecureHttp?: boolean | undefined
}

/**
 * What is wrong with a base URL that credentials are to be sent to, as the end of a sentence
 * that starts with the setting's name ("OPENAI_BASE_URL carries credentials …"); `undefined`
 * when it is fine.
 */
export const baseUrlProblem = (baseUrl: string, options: OriginOptions = {}): string | undefined => {
  let url: URL
  try {
    url = new URL(baseUrl)
  } catch {
    // Never the value: it may be a key pasted into the wrong variable.
    return "is not a URL (expected https://…)"
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") return "must be an http(s) URL"
  if (url.username !== "" || url.password !== "") {
    return `carries credentials (${maskUrl(baseUrl)}): give the key as the API key setting, never in the URL`
  }
  if (url.search !== "" || url.hash !== "") {
    return `carries a query string or fragment (${maskUrl(baseUrl)}): keys and parameters never go in the base URL`
  }
  if (url.protocol === "http:" && !isLoopbackHost(url.hostname) && options.allowInsecureHttp !== true) {
    return `is http:// to ${url.host}, which is not this machine: the key would cross the network unencrypted. ` +
      "Use https://, or set SLUICE_ALLOW_INSECURE_HTTP=1 (allowInsecureHttp: true in code) to send it anyway"
  }
  return undefined
}

/** The origin of a URL (`scheme://host[:port]`), or undefined when it does not parse. */
export const originOf = (url: string | URL): string | undefined => {
  try {
    return (typeof url === "string" ? new URL(url) : url).origin
  } catch {
    return undefined
  }
}

/**
 * A base URL as a provider reports it (`BatchProvider.origin`, which names cache entries and
 * log lines): as given, without a trailing slash, unless it carries credentials, a query or a
 * fragment: then only scheme, host and path (such a URL is refused at the first call anyway).
 */
export const reportedBaseUrl = (baseUrl: string): string => {
  const trimmed = baseUrl.replace(/\/+$/, "")
  let url: URL
  try {
    url = new URL(trimmed)
  } catch {
    return trimmed.replace(/[?#].*$/, "").replace(/\/\/[^/]*@/, "//")
  }
  if (url.username === "" && url.password === "" && url.search === "" && url.hash === "") return trimmed
  return `${url.protocol}//${url.host}${url.pathname}`.replace(/\/+$/, "")
}
