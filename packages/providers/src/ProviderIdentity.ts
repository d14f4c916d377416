/**
 * What makes one provider endpoint's answers different from another's: the wire API, the
 * provider's name, where requests go (origin and path prefix) and the settings that change
 * what is answered there (Azure's `api-version`, Gemini's API version, an Anthropic-shaped
 * gateway's batches path). Never a key or a header value.
 *
 * A run records the identity of each stage's provider and is bound to it: its batches live
 * at that endpoint, and its answers came from there.
 */
import { Schema } from "effect"
import type { BatchProvider } from "./BatchProvider.js"

export const ProviderIdentity = Schema.Struct({
  /** The wire API: "openai", "anthropic", "gemini" (a custom provider: its name). */
  family: Schema.String,
  /** The provider's name: "openai", "azure", "groq", "openai-compatible", "anthropic-gateway", … */
  provider: Schema.String,
  /** `scheme://host[:port]`, as the URL standard normalises it; "" when the provider names none. */
  origin: Schema.String,
  /** The path below the origin that requests go to ("/v1", "/openai/v1", "" for none). */
  pathPrefix: Schema.String,
  /** Azure's `api-version` query parameter, or Gemini's version segment ("v1beta"). */
  apiVersion: Schema.optional(Schema.String),
  /** The batches collection of an Anthropic-shaped API ("/v1/messages/batches"). */
  batchesPath: Schema.optional(Schema.String)
})
export type ProviderIdentity = typeof ProviderIdentity.Type

/** The identity of a provider configured with `baseUrl` (scheme, host, port and path prefix). */
export const make = (options: {
  readonly family: string
  readonly provider: string
  readonly baseUrl: string
  readonly apiVersion?: string | undefined
  readonly batchesPath?: string | undefined
}): ProviderIdentity => {
  const trimmed = options.baseUrl.trim().replace(/\/+$/, "")
  const url = URL.canParse(trimmed) ? new URL(trimmed) : undefined
  return {
    family: options.family,
    provider: options.provider,
    // `new URL` lower-cases the host and drops a default port, so equal endpoints compare equal.
    origin: url === undefined ? trimmed : url.origin,
    pathPrefix: url === undefined ? "" : url.pathname.replace(/\/+$/, ""),
    ...(options.apiVersion === undefined ? {} : { apiVersion: options.apiVersion }),
    ...(options.batchesPath === undefined ? {} : { batchesPath: options.batchesPath })
  }
}

/** A provider's identity: its own, or for a provider that declares none, its name and origin. */
export const of = (provider: BatchProvider): ProviderIdentity =>
  provider.identity ?? make({ family: provider.name, provider: provider.name, baseUrl: provider.origin ?? "" })

export const equals = (a: ProviderIdentity, b: ProviderIdentity): boolean =>
  a.family === b.family &&
  a.provider === b.provider &&
  a.origin === b.origin &&
  a.pathPrefix === b.pathPrefix &&
  a.apiVersion === b.apiVersion &&
  a.batchesPath === b.batchesPath

/** The base URL the identity stands for: origin and path prefix. */
export const baseUrl = (identity: ProviderIdentity): string => `${identity.origin}${identity.pathPrefix}`

/**
 * One line for messages: `openai at https://api.openai.com/v1`,
 * `azure (openai API) at https://r.openai.azure.com/openai, api-version 2024-10-21`.
 */
export const render = (identity: ProviderIdentity): string => {
  const name = identity.provider === identity.family ? identity.provider : `${identity.provider} (${identity.family} API)`
  const where = identity.origin === "" ? "at no recorded address" : `at ${baseUrl(identity)}`
  const extra = [
    ...(identity.apiVersion === undefined ? [] : [`API version ${identity.apiVersion}`]),
    ...(identity.batchesPath === undefined ? [] : [`batches at ${identity.batchesPath}`])
  ]
  return [`${name} ${where}`, ...extra].join(", ")
}
