import type { Pipeline } from "@sluice/core"
import type { BatchProvider } from "@sluice/providers"
import { Duration, Either } from "effect"
import { describe, expect, it } from "vitest"
import { decide, defaultOnlineBelow, parseDuration } from "../src/Hybrid.js"
import type { ParentShard, Situation } from "../src/Hybrid.js"
import * as Modes from "../src/Modes.js"
import * as Settings from "../src/Settings.js"

const auto: Situation = { hybrid: true, deadlinePassed: false, onlineBelow: defaultOnlineBelow }
const first = { requests: 5000, attempt: 1 }
const retry = (requests: number) => ({ requests, attempt: 2 })
const parent = (patch: Partial<ParentShard> = {}): ParentShard => ({ status: "completed", online: false, recalled: false, ...patch })

describe("Hybrid.decide", () => {
  it("sends nothing online in a stage that is not hybrid (batch, online or a provider without a real-time endpoint)", () => {
    const notHybrid = { ...auto, hybrid: false, deadlinePassed: true }
    expect(decide(notHybrid, first, undefined)).toBeNull()
    expect(decide(notHybrid, retry(3), parent({ status: "expired" }))).toBeNull()
  })

  it("batches a first attempt before the deadline, however small", () => {
    expect(decide(auto, first, undefined)).toBeNull()
    expect(decide(auto, { requests: 2, attempt: 1 }, undefined)).toBeNull()
  })

  it("sends everything online once the deadline has passed", () => {
    const late = { ...auto, deadlinePassed: true }
    expect(decide(late, first, undefined)).toBe("deadline")
    expect(decide(late, retry(10_000), parent())).toBe("deadline")
  })

  it("sends the rows of an expired or recalled batch online, however many", () => {
    expect(decide(auto, retry(10_000), parent({ status: "expired" }))).toBe("expired")
    expect(decide(auto, retry(10_000), parent({ status: "cancelled", recalled: true }))).toBe("recalled")
  })

  it("sends a retry of fewer rows than the threshold online, and batches one at or above it", () => {
    expect(decide(auto, retry(defaultOnlineBelow - 1), parent())).toBe("remainder")
    expect(decide(auto, retry(defaultOnlineBelow), parent())).toBeNull()
    expect(decide({ ...auto, onlineBelow: 0 }, retry(1), parent())).toBeNull()
    // A `sluice retry` round names no shard of the run as its parent.
    expect(decide(auto, retry(3), undefined)).toBe("remainder")
  })

  it("keeps the rows an online shard could not answer online", () => {
    expect(decide(auto, retry(10_000), parent({ online: true }))).toBe("remainder")
  })

  it("sends nothing for a shard with no request to send (answered from the cache)", () => {
    expect(decide({ ...auto, deadlinePassed: true }, { requests: 0, attempt: 1 }, undefined)).toBeNull()
  })
})

describe("Hybrid.parseDuration", () => {
  const ms = (text: string) => Either.map(parseDuration(text), Duration.toMillis)

  it("reads the durations people write", () => {
    expect(ms("90s")).toEqual(Either.right(90_000))
    expect(ms("45m")).toEqual(Either.right(2_700_000))
    expect(ms("2h")).toEqual(Either.right(7_200_000))
    expect(ms("1h30m")).toEqual(Either.right(5_400_000))
    expect(ms("1d")).toEqual(Either.right(86_400_000))
    expect(ms("500ms")).toEqual(Either.right(500))
    expect(ms("1.5h")).toEqual(Either.right(5_400_000))
    expect(ms("30")).toEqual(Either.right(30_000))
  })

  it("refuses what is not a duration, or none", () => {
    for (const bad of ["", "soon", "2 hours", "-5m", "2h and 3m", "0s", "h"]) {
      expect(Either.isLeft(parseDuration(bad)), bad).toBe(true)
    }
  })
})

describe("Modes.hybrid", () => {
  const stage = (mode: Pipeline.Mode) => ({ name: "label", mode }) as unknown as Pipeline.BatchStage<any, any>
  const provider = (batch: boolean, online: boolean) =>
    ({ name: "p", capabilities: { batch }, ...(online ? { online: {} } : {}) }) as unknown as BatchProvider

  it("is hybrid only when asked auto, on a provider with a batch API and a real-time endpoint", () => {
    expect(Modes.hybrid(stage("auto"), provider(true, true), undefined)).toBe(true)
    expect(Modes.hybrid(stage("batch"), provider(true, true), "auto")).toBe(true)
    expect(Modes.hybrid(stage("auto"), provider(true, true), "batch")).toBe(false)
    expect(Modes.hybrid(stage("auto"), provider(true, true), "online")).toBe(false)
    expect(Modes.hybrid(stage("batch"), provider(true, true), undefined)).toBe(false)
    // Online only already: nothing to hand over.
    expect(Modes.hybrid(stage("auto"), provider(false, true), undefined)).toBe(false)
  })

  it("says so (undefined) when auto meets a provider that cannot answer in real time: the deadline cannot help", () => {
    expect(Modes.hybrid(stage("auto"), provider(true, false), undefined)).toBeUndefined()
  })
})

describe("the library's deadline", () => {
  it("takes a Duration or the CLI's text, and names what it cannot read", () => {
    expect(Settings.problems({ deadline: "1h30m" })).toEqual([])
    expect(Settings.problems({ deadline: Duration.hours(2) })).toEqual([])
    expect(Settings.problems({ deadline: "tomorrow" })).toEqual([`deadline must be a duration like 90s, 45m, 2h, 1h30m or 1d, got "tomorrow"`])
    expect(Settings.problems({ deadline: Duration.zero })).toEqual(["deadline must be a duration above 0, got 0"])
  })
})
