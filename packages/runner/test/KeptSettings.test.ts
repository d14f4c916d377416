import { Schema } from "effect"
import { describe, expect, it } from "vitest"
import * as KeptSettings from "../src/KeptSettings.js"
import { Manifest } from "../src/RunDir.js"

describe("KeptSettings.merge", () => {
  it("records what a first call gives, as changes from nothing", () => {
    const m = KeptSettings.merge(undefined, { mode: "auto", onlineBudget: 25 })
    expect(m.settings).toEqual({ mode: "auto", onlineBudget: 25 })
    expect(m.changes).toEqual([
      { name: "mode", from: undefined, to: "auto" },
      { name: "onlineBudget", from: undefined, to: 25 }
    ])
    expect(m.fromRecord).toEqual([])
  })

  it("takes from the record what a resume does not give, and changes nothing", () => {
    const m = KeptSettings.merge({ mode: "auto", onlineBudget: 25, onlineBelow: 0 }, {})
    expect(m.settings).toEqual({ mode: "auto", onlineBudget: 25, onlineBelow: 0 })
    expect(m.changes).toEqual([])
    expect(m.fromRecord).toEqual(["mode", "onlineBudget", "onlineBelow"])
  })

  it("applies a value given again over the record, and only a different one counts as a change", () => {
    const m = KeptSettings.merge({ mode: "auto", onlineBudget: 25 }, { mode: "batch", onlineBudget: 25, onlineBelow: undefined })
    expect(m.settings).toEqual({ mode: "batch", onlineBudget: 25 })
    expect(m.changes).toEqual([{ name: "mode", from: "auto", to: "batch" }])
    expect(m.fromRecord).toEqual([])
  })

  it("keeps 0 (--online-below 0: never) as a value, not as absent", () => {
    expect(KeptSettings.merge({ onlineBelow: 0 }, {}).settings).toEqual({ onlineBelow: 0 })
    expect(KeptSettings.merge({ onlineBelow: 100 }, { onlineBelow: 0 }).changes).toEqual([{ name: "onlineBelow", from: 100, to: 0 }])
  })

  it("runs with nothing kept when neither the record nor the call has a setting (older runs resume as before)", () => {
    const m = KeptSettings.merge(undefined, {})
    expect(m).toEqual({ settings: {}, changes: [], fromRecord: [] })
    expect(KeptSettings.isEmpty(m.settings)).toBe(true)
    expect(KeptSettings.describe(m.settings)).toBe("")
  })

  it("says the recorded settings as flags", () => {
    expect(KeptSettings.describe({ mode: "auto", onlineBudget: 25, onlineBelow: 0 })).toBe("--mode auto --online-budget 25 --online-below 0")
    expect(KeptSettings.describe({ budget: 50, keepProviderFiles: true })).toBe("--budget 50 --keep-provider-files")
  })

  it("keeps --budget as it keeps --online-budget: recorded when given, taken from the record when not, replaced by another value", () => {
    const first = KeptSettings.merge(undefined, { budget: 50 })
    expect(first.settings).toEqual({ budget: 50 })
    expect(first.changes).toEqual([{ name: "budget", from: undefined, to: 50 }])
    const cron = KeptSettings.merge(first.settings, {})
    expect(cron.settings).toEqual({ budget: 50 })
    expect(cron.fromRecord).toEqual(["budget"])
    const raised = KeptSettings.merge(cron.settings, { budget: 80 })
    expect(raised.settings).toEqual({ budget: 80 })
    expect(raised.changes).toEqual([{ name: "budget", from: 50, to: 80 }])
    expect(KeptSettings.said("budget", 80)).toBe("--budget 80")
  })

  it("keeps --keep-provider-files once given; a call without the switch (false, as the CLI reads it) neither records nor drops it", () => {
    const first = KeptSettings.merge(undefined, { keepProviderFiles: true })
    expect(first.settings).toEqual({ keepProviderFiles: true })
    expect(first.changes).toEqual([{ name: "keepProviderFiles", from: undefined, to: true }])
    const resumed = KeptSettings.merge(first.settings, { keepProviderFiles: false })
    expect(resumed.settings).toEqual({ keepProviderFiles: true })
    expect(resumed.changes).toEqual([])
    expect(resumed.fromRecord).toEqual(["keepProviderFiles"])
    expect(KeptSettings.said("keepProviderFiles", true)).toBe("--keep-provider-files")
    // Never given: nothing recorded, not even `false`.
    const never = KeptSettings.merge(undefined, { keepProviderFiles: false })
    expect(never).toEqual({ settings: {}, changes: [], fromRecord: [] })
    expect(KeptSettings.merge({ keepProviderFiles: false }, {}).settings).toEqual({})
  })
})

describe("the manifest's settings", () => {
  const base = {
    version: 1,
    runId: "r-1",
    pipeline: "p",
    fingerprint: "f",
    pipelineFile: null,
    stages: [],
    providers: {},
    sink: null,
    createdAt: "2026-12-06T00:00:00.000Z"
  }
  const decode = Schema.decodeUnknownSync(Manifest)

  it("keeps --max-enqueued-tokens, by model too: a limit said the same way again is no change", () => {
    const first = KeptSettings.merge(undefined, { maxEnqueuedTokens: { "gpt-4o": 90_000, "*": 500_000 } })
    expect(first.changes).toEqual([{ name: "maxEnqueuedTokens", from: undefined, to: { "gpt-4o": 90_000, "*": 500_000 } }])
    const again = KeptSettings.merge(first.settings, { maxEnqueuedTokens: { "*": 500_000, "gpt-4o": 90_000 } })
    expect(again.changes).toEqual([])
    const kept = KeptSettings.merge(first.settings, {})
    expect(kept.settings.maxEnqueuedTokens).toEqual({ "gpt-4o": 90_000, "*": 500_000 })
    expect(kept.fromRecord).toEqual(["maxEnqueuedTokens"])
    const lowered = KeptSettings.merge(first.settings, { maxEnqueuedTokens: 50_000 })
    expect(lowered.changes).toEqual([{ name: "maxEnqueuedTokens", from: { "gpt-4o": 90_000, "*": 500_000 }, to: 50_000 }])
    expect(KeptSettings.said("maxEnqueuedTokens", { "gpt-4o": 90_000, "*": 500_000 })).toBe("--max-enqueued-tokens gpt-4o=90000,500000")
    // What the manifest holds decodes back.
    const decoded = Schema.decodeUnknownSync(KeptSettings.Kept)(JSON.parse(JSON.stringify(first.settings)))
    expect(decoded).toEqual({ maxEnqueuedTokens: { "gpt-4o": 90_000, "*": 500_000 } })
  })

  it("keeps --max-batches beside --max-enqueued-tokens, each under its own flag", () => {
    const first = KeptSettings.merge({ maxEnqueuedTokens: 90_000 }, { maxBatches: { "gpt-4o": 1, "*": 4 } })
    expect(first.changes).toEqual([{ name: "maxBatches", from: undefined, to: { "gpt-4o": 1, "*": 4 } }])
    const resumed = KeptSettings.merge(first.settings, {})
    expect(resumed.settings).toEqual({ maxEnqueuedTokens: 90_000, maxBatches: { "gpt-4o": 1, "*": 4 } })
    expect(resumed.fromRecord).toEqual(["maxEnqueuedTokens", "maxBatches"])
    expect(KeptSettings.describe(resumed.settings)).toBe("--max-enqueued-tokens 90000 --max-batches gpt-4o=1,4")
    expect(Schema.decodeUnknownSync(Manifest)({ ...base, settings: JSON.parse(JSON.stringify(first.settings)) }).settings).toEqual(first.settings)
  })

  it("decodes a manifest from before settings were recorded", () => {
    expect(decode(base).settings).toBeUndefined()
  })

  it("decodes settings recorded before --budget and --keep-provider-files were kept: neither is there", () => {
    const settings = decode({ ...base, settings: { mode: "auto", onlineBudget: 25 } }).settings
    expect(settings).toEqual({ mode: "auto", onlineBudget: 25 })
    expect(KeptSettings.merge(settings, {}).settings).toEqual({ mode: "auto", onlineBudget: 25 })
  })

  it("decodes a recorded budget and switch, and refuses them malformed", () => {
    expect(decode({ ...base, settings: { budget: 50, keepProviderFiles: true } }).settings).toEqual({ budget: 50, keepProviderFiles: true })
    expect(() => decode({ ...base, settings: { budget: "50" } })).toThrow()
    expect(() => decode({ ...base, settings: { keepProviderFiles: "yes" } })).toThrow()
  })

  it("decodes recorded settings and refuses a mode that does not exist", () => {
    expect(decode({ ...base, settings: { mode: "auto", onlineBelow: 0 } }).settings).toEqual({ mode: "auto", onlineBelow: 0 })
    expect(() => decode({ ...base, settings: { mode: "fast" } })).toThrow()
  })
})
