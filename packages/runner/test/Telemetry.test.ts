/**
 * The parts of the OpenTelemetry export that are plain code: which signals the environment asks
 * for, and the credentials kept out of exported URLs. (The export itself is tested end to end:
 * test/telemetry.e2e.test.ts.)
 */
import { describe, expect, it } from "vitest"
import { scrubAttributes, scrubText, scrubValue } from "../src/internal/urlSecrets.js"
import { configFromEnv, protocolProblem } from "../src/Telemetry.js"

describe("configFromEnv", () => {
  it("exports nothing without an endpoint, whatever else is set", () => {
    expect(configFromEnv({})).toBeUndefined()
    expect(configFromEnv({ OTEL_SERVICE_NAME: "x", OTEL_EXPORTER_OTLP_HEADERS: "a=b", OTEL_EXPORTER_OTLP_ENDPOINT: "  " })).toBeUndefined()
  })

  it("exports both signals to the generic endpoint, one to its own", () => {
    expect(configFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318" })).toEqual({ traces: true, metrics: true })
    expect(configFromEnv({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://c:4318/v1/traces" })).toEqual({ traces: true, metrics: false })
    expect(configFromEnv({ OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: "http://c:4318/v1/metrics" })).toEqual({ traces: false, metrics: true })
  })

  it("honours the SDK's switches: OTEL_SDK_DISABLED, and `none` as a signal's exporter", () => {
    expect(configFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318", OTEL_SDK_DISABLED: "TRUE" })).toBeUndefined()
    expect(configFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318", OTEL_SDK_DISABLED: "false" })).toEqual({ traces: true, metrics: true })
    expect(configFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318", OTEL_TRACES_EXPORTER: "none" })).toEqual({ traces: false, metrics: true })
    expect(configFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318", OTEL_TRACES_EXPORTER: "none", OTEL_METRICS_EXPORTER: "none" })).toBeUndefined()
  })
})

describe("protocolProblem", () => {
  it("accepts the HTTP protocols (a collector's HTTP port takes JSON under either name) and unset", () => {
    expect(protocolProblem({})).toBeUndefined()
    expect(protocolProblem({ OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf", OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: " HTTP/JSON " })).toBeUndefined()
  })

  it("refuses gRPC or an unknown protocol, generic or per signal, naming the variable", () => {
    expect(protocolProblem({ OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" })).toMatch(/^OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not supported: .*http\/json.*4318/)
    expect(protocolProblem({ OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: "carrier-pigeon" })).toMatch(/^OTEL_EXPORTER_OTLP_METRICS_PROTOCOL=carrier-pigeon/)
  })
})

describe("credentials in exported URLs", () => {
  // Gemini's upload session URL as the emulator and Google give it.
  const upload = "https://generativelanguage.googleapis.com/upload/v1beta/files?upload_id=ABpAMx_secret-session&upload_protocol=resumable"

  it("redacts an upload session's id, a key or a token wherever a URL shows it, and keeps the rest", () => {
    expect(scrubValue("http.response.header.x-goog-upload-url", upload)).toBe(
      "https://generativelanguage.googleapis.com/upload/v1beta/files?upload_id=<redacted>&upload_protocol=resumable"
    )
    expect(scrubValue("url.query", "upload_id=ABpAMx_secret-session&upload_protocol=resumable")).toBe("upload_id=<redacted>&upload_protocol=resumable")
    expect(scrubValue("url.full", "https://h/v1/x?key=AIzaSecret&alt=json")).toBe("https://h/v1/x?key=<redacted>&alt=json")
    expect(scrubValue("url.full", "https://h/v1/x?api-key=s1&API_KEY=s2&access_token=s3&sig=s4")).toBe(
      "https://h/v1/x?api-key=<redacted>&API_KEY=<redacted>&access_token=<redacted>&sig=<redacted>"
    )
    expect(scrubValue("url.full", "https://h/v1/x?%6Bey=encoded")).toBe("https://h/v1/x?%6Bey=<redacted>")
  })

  it("leaves what holds no credential as it is", () => {
    expect(scrubValue("url.full", "http://127.0.0.1:4000/v1beta/files?pageSize=100")).toBe("http://127.0.0.1:4000/v1beta/files?pageSize=100")
    expect(scrubValue("url.query", "api-version=2024-10-21")).toBe("api-version=2024-10-21")
    expect(scrubValue("sluice.stage", "what?key=not a url")).toBe("what?key=not a url")
    expect(scrubAttributes({ "url.full": "http://h/x?pageSize=1", "http.response.status_code": 200 })).toBeUndefined()
  })

  it("gives the attributes with only the credentials changed", () => {
    expect(scrubAttributes({ "url.full": upload, "url.path": "/upload/v1beta/files", "server.port": 443 })).toEqual({
      "url.full": "https://generativelanguage.googleapis.com/upload/v1beta/files?upload_id=<redacted>&upload_protocol=resumable",
      "url.path": "/upload/v1beta/files",
      "server.port": 443
    })
  })

  it("redacts the URLs inside free text: a log line or error message that became a span event or status", () => {
    const line = `upload to ${upload} failed: 503; retrying (see https://h/x?pageSize=1)`
    expect(scrubText(line)).toBe(
      "upload to https://generativelanguage.googleapis.com/upload/v1beta/files?upload_id=<redacted>&upload_protocol=resumable failed: 503; retrying (see https://h/x?pageSize=1)"
    )
    expect(scrubText("no URL here?")).toBe("no URL here?")
    expect(scrubAttributes({ "effect.log": line, level: "WARN" }, scrubText)).toEqual({ "effect.log": scrubText(line), level: "WARN" })
    expect(scrubAttributes({ "effect.log": "plain", level: "WARN" }, scrubText)).toBeUndefined()
  })
})
