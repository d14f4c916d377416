/**
 * @sluice/runner: run pipelines from your own Effect programs.
 *
 * The operations need `Providers` (e.g. `Registry.layerFromEnv()` from @sluice/providers over
 * an HttpClient) and a FileSystem and Path (`NodeContext.layer`): the run directory is the
 * checkpoint store. `Live.layer()` bundles the usual choices.
 */
export * as Cancel from "./Cancel.js"
export * as OneCall from "./OneCall.js"
export * as PgSink from "./PgSink.js"
export * as Pricing from "./Pricing.js"
export * as Records from "./Records.js"
export * as RunEvent from "./RunEvent.js"
export * as Runner from "./Runner.js"
export { SluiceError } from "./SluiceError.js"
export * as Status from "./Status.js"
export * as Telemetry from "./Telemetry.js"
export * as Live from "./Live.js"
export * as Preview from "./Preview.js"
