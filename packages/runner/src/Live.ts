/**
 * The usual environment of a run on Node: the local file system for the run directory, and
 * the providers configured from the environment over undici.
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { Registry } from "@sluice/providers"
import type { BatchProvider } from "@sluice/providers"
import { Layer } from "effect"

/** FileSystem, Path and Providers (from OPENAI_API_KEY etc.; `overrides` replace providers by name). */
export const layer = (overrides: Readonly<Record<string, BatchProvider>> = {}) =>
  Layer.mergeAll(NodeContext.layer, Registry.layerFromEnv(overrides).pipe(Layer.provide(NodeHttpClient.layerUndici)))
