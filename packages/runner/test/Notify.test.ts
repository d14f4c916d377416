import { Duration, Effect } from "effect"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { describe, expect, it } from "vitest"
import * as Notify from "../src/Notify.js"
import type { RunSummary } from "../src/Runner.js"

const summary = (over: Partial<RunSummary>): RunSummary =>
  ({ finished: false, pending: 0, rows: 10, succeeded: 0, failed: {}, ...over }) as RunSummary

describe("Notify.eventOf", () => {
  it("announces a finished run, a run stopped only by a budget, and nothing for a run still in progress or finished before", () => {
    expect(Notify.eventOf(summary({ finished: true }))).toBe("run.finished")
    expect(Notify.eventOf(summary({ finished: true, alreadyFinished: true }))).toBeUndefined()
    expect(Notify.eventOf(summary({ pending: 4 }))).toBeUndefined()
    const budget = { limit: 1, projected: 1, heldShards: 1, heldRows: 4 }
    expect(Notify.eventOf(summary({ pending: 4, budget }))).toBe("budget.reached")
    // Batches still in flight besides the held shard: the run goes on; the end is announced later.
    expect(Notify.eventOf(summary({ pending: 9, budget }))).toBeUndefined()
    expect(Notify.eventOf(summary({ pending: 4, onlineBudget: budget }))).toBe("budget.reached")
  })
})

describe("Notify.runCommand", () => {
  it("kills a command that outlives its timeout, with what it started, and says so", async () => {
    const r = await Effect.runPromise(Notify.runCommand("echo started; sleep 60 & wait", "", process.env, Duration.millis(300)))
    expect(r.timedOut).toBe(true)
    expect(r.code).toBeNull()
  })

  it("takes provider keys, the webhook secret, auth headers, the notify URL and secret-like names out of the command's environment", () => {
    const saved = { ...process.env }
    try {
      process.env["OPENAI_API_KEY"] = "sk-x"
      process.env["SLUICE_WEBHOOK_SECRET"] = "whsec_x"
      process.env["SLUICE_GATEWAY_API_KEY"] = "gw"
      process.env["SLUICE_GATEWAY_HEADERS"] = "authorization=Bearer gw"
      process.env["OTEL_EXPORTER_OTLP_HEADERS"] = "x-honeycomb-team=t"
      process.env["OTEL_EXPORTER_OTLP_TRACES_HEADERS"] = "x-token=t"
      process.env["SLUICE_NOTIFY_URL"] = "https://hooks.example/T0/secret"
      process.env["GITHUB_TOKEN"] = "ghp_x"
      process.env["HOME_OF_TEST"] = "kept"
      const env = Notify.commandEnv("run.failed", { error: { tag: "X", message: "m", exitCode: 4, runDir: "/r" } })
      expect(env["OPENAI_API_KEY"]).toBeUndefined()
      expect(env["SLUICE_WEBHOOK_SECRET"]).toBeUndefined()
      expect(env["SLUICE_GATEWAY_API_KEY"]).toBeUndefined()
      for (const name of ["SLUICE_GATEWAY_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "SLUICE_NOTIFY_URL", "GITHUB_TOKEN"]) {
        expect(env[name], name).toBeUndefined()
      }
      expect(env["HOME_OF_TEST"]).toBe("kept")
      expect(env["SLUICE_EVENT"]).toBe("run.failed")
      expect(env["SLUICE_ERROR"]).toBe("m")
    } finally {
      process.env = saved
    }
  })
})

describe("Notify.post", () => {
  it("gives up after the attempts it was given when nothing listens, without failing", async () => {
    // A port that was just free: bound, then closed; the connections are refused.
    const server = createServer()
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    const port = (server.address() as AddressInfo).port
    await new Promise<void>((resolve) => server.close(() => resolve()))
    const d = await Effect.runPromise(Notify.post(`http://127.0.0.1:${port}/x`, "{}", { attempts: 3, firstDelay: Duration.millis(10) }))
    expect(d.attempts).toBe(3)
    expect(d.status).toBeNull()
    expect(d.error).toBeDefined()
  })
})
