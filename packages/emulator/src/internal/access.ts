/**
 * Who may talk to the emulator, checked before any route runs, so that an emulator left running
 * on a developer's machine cannot be driven or read by a web page the developer visits.
 *
 * - Every route: the `Host` header must name the emulator as the machine itself knows it
 *   (loopback names, the address it is bound to) or a name the user allowed (`allowedHosts`).
 *   A page on `evil.example` whose DNS answer flips to 127.0.0.1 (DNS rebinding) is same-origin
 *   for the browser, but its requests carry `Host: evil.example`: they are refused.
 * - The test API (`/_emulator/*`) in addition: the API key when one is set (the header styles of
 *   the API routes), no `Origin` header (browsers send one on every cross-site call and on every
 *   POST; the emulator serves no page, so no legitimate caller sends one), and a JSON body for
 *   anything but GET/HEAD (a cross-site `<form>` can only post form or text bodies).
 */
import { timingSafeEqual } from "node:crypto"
import type { IncomingMessage } from "node:http"
import { isIPv6 } from "node:net"
import { ApiError } from "./errors.js"
import { sha256 } from "./hash.js"
import { apiKeyOf } from "./http.js"

/** Host names (lower case; IPv6 in brackets) always accepted: the loopback interface. */
const LOOPBACK: ReadonlyArray<string> = ["localhost", "127.0.0.1", "[::1]"]

/** The host-name part of a `Host` header value (`name`, `name:port`, `[v6]`, `[v6]:port`), or undefined when malformed. */
const nameOfHostHeader = (value: string): string | undefined => {
  const match = /^(\[[0-9a-f:.]+\]|[^:[\]@\s/]+)(?::\d{1,5})?$/i.exec(value.trim())
  return match === null ? undefined : match[1]!.toLowerCase()
}

/**
 * A host name or address as it appears in a `Host` header: lower case, IPv6 literals in brackets.
 * Throws on a name with a port or another character a Host name cannot hold.
 */
const hostName = (host: string): string => {
  const lower = host.trim().toLowerCase()
  const name = isIPv6(lower) ? `[${lower}]` : lower
  if (nameOfHostHeader(name) !== name) throw new Error(`'${host}' is not a host name (give names without a port, e.g. "emulator" or "10.0.0.5")`)
  return name
}

/**
 * The `Host` names one emulator answers to. `*` among the allowed names accepts any Host (for an
 * emulator reached through names nobody can list in advance; the user's explicit choice).
 */
export class HostPolicy {
  private readonly names: Set<string>
  readonly any: boolean

  constructor(allowed: ReadonlyArray<string>) {
    this.any = allowed.includes("*")
    this.names = new Set([...LOOPBACK, ...allowed.filter((name) => name !== "*").map(hostName)])
  }

  /** Also accept the name or address the server is bound to (its URL names it); ignores what no Host header can hold. */
  allow(name: string): void {
    try {
      this.names.add(hostName(name))
    } catch {
      // not a Host name: nothing to accept
    }
  }

  /**
   * Throws a 403 unless the request's Host is one of ours. A request without Host (HTTP/1.0) is
   * let through: browsers always send one, so it cannot be a rebinding attempt.
   */
  check(req: IncomingMessage): void {
    if (this.any) return
    const host = req.headers.host
    if (host === undefined) return
    const name = nameOfHostHeader(host)
    if (name !== undefined && this.names.has(name)) return
    throw new ApiError(
      403,
      `Host '${host.slice(0, 100)}' is not served here: the emulator answers only to loopback names (localhost, 127.0.0.1, [::1]), the address it is bound to, and the names of its allowedHosts option.`,
      "forbidden",
      null,
      "host_not_allowed"
    )
  }
}

const sameKey = (given: string, expected: string): boolean => timingSafeEqual(sha256(given), sha256(expected))

/** The test API's own checks (after the Host check every route has). Throws a 403, 401 or 415. */
export const checkControlRequest = (req: IncomingMessage, method: string, apiKey: string | undefined): void => {
  if (req.headers.origin !== undefined) {
    throw new ApiError(403, "The emulator's test API refuses requests from web pages (an Origin header was sent).", "forbidden", null, "origin_not_allowed")
  }
  if (apiKey !== undefined) {
    const key = apiKeyOf(req) ?? headerValue(req, "x-goog-api-key")
    // The key is never echoed: error messages may end up in logs.
    if (key === undefined) {
      throw new ApiError(401, "The emulator's test API needs its API key (Authorization: Bearer K, x-api-key: K or api-key: K).", "invalid_request_error")
    }
    if (!sameKey(key, apiKey)) throw new ApiError(401, "Incorrect API key provided.", "invalid_request_error", null, "invalid_api_key")
  }
  if (method !== "GET" && method !== "HEAD") {
    const type = headerValue(req, "content-type")?.split(";")[0]?.trim().toLowerCase()
    if (type !== "application/json") {
      throw new ApiError(
        415,
        `The emulator's test API takes JSON: send Content-Type: application/json (got ${type === undefined || type === "" ? "none" : `'${type.slice(0, 100)}'`}).`,
        "invalid_request_error",
        null,
        "unsupported_media_type"
      )
    }
  }
}

const headerValue = (req: IncomingMessage, name: string): string | undefined => {
  const value = req.headers[name]
  return typeof value === "string" && value.length > 0 ? value : undefined
}
