/**
 * Which way a stage's requests go: its `mode` (or the run's `--mode`), resolved against what
 * its provider can do. `auto` goes by batch where the provider has a batch API and online
 * where it has none (the deadline-driven hybrid builds on this). What cannot be done is
 * refused before anything is sent: a `batch` stage on a provider without a batch API, an
 * `online` stage on a provider that cannot answer in real time, a stage on OpenAI's
 * Responses API at a provider that does not speak it.
 */
import type { Pipeline } from "@sluice/core"
import type { BatchProvider } from "@sluice/providers"
import { hasBatchApi, ProviderIdentity } from "@sluice/providers"
import { Schema } from "effect"
import type { ShardMode } from "./RunState.js"

export class ModeUnsupported extends Schema.TaggedError<ModeUnsupported>()("ModeUnsupported", {
  stage: Schema.String,
  provider: Schema.String,
  description: Schema.String
}) {
  override get message(): string {
    return `stage "${this.stage}" on ${this.provider}: ${this.description}`
  }
}

/** The mode a stage's new shards take, or why the stage cannot run as asked. */
export const resolve = (
  stage: Pipeline.BatchStage<any, any>,
  provider: BatchProvider,
  override: Pipeline.Mode | undefined
): ShardMode | ModeUnsupported => {
  const asked = override ?? stage.mode
  const refuse = (description: string) => new ModeUnsupported({ stage: stage.name, provider: provider.name, description })
  if (stage.endpoint === "responses" && ProviderIdentity.of(provider).family !== "openai") {
    return refuse(`the Responses API (api: "responses") is OpenAI's; ${provider.name} does not serve it`)
  }
  const batch = hasBatchApi(provider)
  const mode: ShardMode = asked === "auto" ? (batch ? "batch" : "online") : asked
  if (mode === "batch" && !batch) {
    return refuse(
      `${provider.name} has no batch API, so the stage cannot run in batch mode; ` +
        `run it online: mode "online" (or "auto") on the stage, or --mode online`
    )
  }
  if (mode === "online" && provider.online === undefined) {
    return refuse(`${provider.name} cannot answer in real time, so the stage cannot run online; use mode "batch"`)
  }
  return mode
}

/**
 * Whether a stage is hybrid (see Hybrid.ts): asked `auto`, and its provider has both a batch
 * API and a real-time endpoint. `undefined`: asked `auto` on a provider that cannot answer in
 * real time, so a deadline cannot help it (the run says so).
 */
export const hybrid = (stage: Pipeline.BatchStage<any, any>, provider: BatchProvider, override: Pipeline.Mode | undefined): boolean | undefined => {
  if ((override ?? stage.mode) !== "auto" || !hasBatchApi(provider)) return false
  return provider.online === undefined ? undefined : true
}
