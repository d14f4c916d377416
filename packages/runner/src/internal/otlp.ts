/**
 * The OTLP/HTTP export of a run's spans and metrics, through `@effect/opentelemetry` and the
 * OpenTelemetry SDK's exporters. Imported only when the environment asks for an export
 * (Telemetry.ts): loading the SDK costs a command's start-up time.
 *
 * The exporters read the standard environment themselves (endpoints, `OTEL_EXPORTER_OTLP_HEADERS`,
 * timeouts, compression) and send OTLP JSON. The resource comes from `OTEL_SERVICE_NAME` and
 * `OTEL_RESOURCE_ATTRIBUTES`, as the SDK's env detector reads them; the service is `sluice`
 * unless they name another.
 *
 * A collector that is down or slow must not cost the run anything: spans and metrics are sent
 * in the background, a failed export is said once per signal (a warning), and the final flush
 * at the end of the run is bounded.
 */
import * as Metrics from "@effect/opentelemetry/Metrics"
import * as Resource from "@effect/opentelemetry/Resource"
import * as Tracer from "@effect/opentelemetry/Tracer"
import { OTLPMetricExporter } from "@opentelemetry/exporter-metrics-otlp-http"
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http"
import { defaultResource, detectResources, envDetector, resourceFromAttributes } from "@opentelemetry/resources"
import { PeriodicExportingMetricReader } from "@opentelemetry/sdk-metrics"
import type { PushMetricExporter, ResourceMetrics } from "@opentelemetry/sdk-metrics"
import { BasicTracerProvider, BatchSpanProcessor } from "@opentelemetry/sdk-trace-base"
import type { ReadableSpan } from "@opentelemetry/sdk-trace-base"
import { Duration, Effect, Layer, Runtime } from "effect"
import { scrubAttributes, scrubText } from "./urlSecrets.js"

/** How long the end of a run waits for each signal's last export. */
const shutdownTimeout = Duration.seconds(3)

/** The exporters' timeout when the environment sets none (the SDK's default is 10 s). */
const defaultExportTimeoutMs = 3000

/** What an exporter's callback gets (the SDK's ExportResult; code 0 is SUCCESS). */
interface ExportResult {
  readonly code: number
  readonly error?: Error
}

const numberFromEnv = (name: string): number | undefined => {
  const value = Number((process.env[name] ?? "").trim())
  return (process.env[name] ?? "").trim() !== "" && Number.isFinite(value) && value > 0 ? value : undefined
}

/** The exporter's config: only a timeout, when the environment gives none (it gives the rest). */
const exporterConfig = (signal: "TRACES" | "METRICS") =>
  (numberFromEnv(`OTEL_EXPORTER_OTLP_${signal}_TIMEOUT`) ?? numberFromEnv("OTEL_EXPORTER_OTLP_TIMEOUT")) !== undefined
    ? {}
    : { timeoutMillis: defaultExportTimeoutMs }

/** Where a signal goes, for the warning (never the headers: they may hold a token). */
const endpointOf = (signal: "TRACES" | "METRICS") => {
  const own = (process.env[`OTEL_EXPORTER_OTLP_${signal}_ENDPOINT`] ?? "").trim()
  const url = own !== "" ? own : `${(process.env["OTEL_EXPORTER_OTLP_ENDPOINT"] ?? "").trim().replace(/\/+$/, "")}/v1/${signal.toLowerCase()}`
  // The SDK sends to its default address (localhost:4318) instead of an endpoint that is no URL.
  if (!URL.canParse(url)) return `"${url}" (not a URL: the default address instead)`
  const shown = new URL(url)
  shown.username = ""
  shown.password = ""
  return shown.href
}

/** Calls `report` the first time an export fails, and never again. */
const onFirstFailure = (report: (error: Error | undefined) => void) => {
  let reported = false
  return (result: ExportResult) => {
    if (result.code !== 0 && !reported) {
      reported = true
      report(result.error)
    }
  }
}

/**
 * The span as exported: URL-valued attributes, its events' attributes (Effect's log lines become
 * span events) and its status message without credential parameters (the span itself when it
 * has none).
 */
const scrubbed = (span: ReadableSpan): ReadableSpan => {
  const replaced: PropertyDescriptorMap = {}
  const attributes = scrubAttributes(span.attributes)
  if (attributes !== undefined) replaced["attributes"] = { value: attributes, enumerable: true }
  let eventsChanged = false
  const events = span.events.map((event) => {
    const scrubbedName = scrubText(event.name)
    const eventAttributes = event.attributes === undefined ? undefined : scrubAttributes(event.attributes, scrubText)
    if (scrubbedName === event.name && eventAttributes === undefined) return event
    eventsChanged = true
    return { ...event, name: scrubbedName, ...(eventAttributes === undefined ? {} : { attributes: eventAttributes as typeof event.attributes }) }
  })
  if (eventsChanged) replaced["events"] = { value: events, enumerable: true }
  const message = span.status.message === undefined ? undefined : scrubText(span.status.message)
  if (message !== span.status.message) replaced["status"] = { value: { ...span.status, message }, enumerable: true }
  // The span's other fields and methods through its prototype; only what held a credential replaced.
  return Object.keys(replaced).length === 0 ? span : (Object.create(span, replaced) as ReadableSpan)
}

class TraceExporter extends OTLPTraceExporter {
  constructor(private readonly failed: (result: ExportResult) => void) {
    super(exporterConfig("TRACES"))
  }
  override export(spans: Array<ReadableSpan>, done: (result: ExportResult) => void): void {
    super.export(spans.map(scrubbed), (result) => {
      this.failed(result)
      done(result)
    })
  }
}

class MetricExporter extends OTLPMetricExporter implements PushMetricExporter {
  constructor(private readonly failed: (result: ExportResult) => void) {
    super(exporterConfig("METRICS"))
  }
  override export(metrics: ResourceMetrics, done: (result: ExportResult) => void): void {
    super.export(metrics, (result) => {
      this.failed(result)
      done(result)
    })
  }
}

/** The resource as the SDK builds it from the environment, with `sluice` as the default service name. */
const resource = () =>
  defaultResource()
    .merge(resourceFromAttributes({ "service.name": "sluice" }))
    .merge(detectResources({ detectors: [envDetector] }))

/** Spans go through a batching processor to the OTLP exporter; the provider is flushed and shut down with the scope. */
const tracerProvider = (failed: (result: ExportResult) => void) =>
  Layer.scoped(
    Tracer.OtelTracerProvider,
    Effect.flatMap(Resource.Resource, (resource) =>
      Effect.acquireRelease(
        Effect.sync(() => new BasicTracerProvider({ resource, spanProcessors: [new BatchSpanProcessor(new TraceExporter(failed))] })),
        (provider) =>
          Effect.tryPromise(() => provider.forceFlush().then(() => provider.shutdown())).pipe(
            Effect.ignore,
            Effect.interruptible,
            Effect.timeoutOption(shutdownTimeout)
          )
      ))
  )

/** Which signals the environment asks to export (undefined: none). */
export interface ExportConfig {
  readonly traces: boolean
  readonly metrics: boolean
}

/** Metrics are read from Effect's registry every `OTEL_METRIC_EXPORT_INTERVAL` (default 60 s), and once more at the end. */
const metricReader = (failed: (result: ExportResult) => void) => () => {
  const interval = numberFromEnv("OTEL_METRIC_EXPORT_INTERVAL") ?? 60_000
  return new PeriodicExportingMetricReader({
    exporter: new MetricExporter(failed),
    exportIntervalMillis: interval,
    exportTimeoutMillis: Math.min(interval, numberFromEnv("OTEL_METRIC_EXPORT_TIMEOUT") ?? 30_000)
  })
}

export const layer = (config: ExportConfig): Layer.Layer<never> =>
  Layer.unwrapEffect(
    Effect.gen(function* () {
      // The warning goes through the caller's logger (the CLI's: one line on stderr).
      const runtime = yield* Effect.runtime<never>()
      const warnOnce = (signal: "TRACES" | "METRICS") =>
        onFirstFailure((error) =>
          Runtime.runFork(runtime)(
            Effect.logWarning(
              `OpenTelemetry: cannot export ${signal.toLowerCase()} to ${endpointOf(signal)}` +
                `${error === undefined ? "" : `: ${error.message.slice(0, 200)}`} (the run is not affected; further failures are not reported)`
            )
          )
        )
      const traces = config.traces ? Layer.provide(Tracer.layer, tracerProvider(warnOnce("TRACES"))) : Layer.empty
      const metrics = config.metrics ? Metrics.layer(metricReader(warnOnce("METRICS")), { shutdownTimeout }) : Layer.empty
      return Layer.mergeAll(traces, metrics).pipe(Layer.provide(Layer.succeed(Resource.Resource, resource())))
    })
  )
