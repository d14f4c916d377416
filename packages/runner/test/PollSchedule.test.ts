/**
 * The adaptive poll schedule as a pure function: given times and counts in, waits out. The
 * simulations run a batch's progress on a made-up clock and poll it by the schedule, so what
 * they assert (how soon an end is seen, how many polls it took) follows from the schedule alone.
 */
import { describe, expect, it } from "vitest"
import * as PollSchedule from "../src/PollSchedule.js"
import type { PollMemory, PollPolicy } from "../src/PollSchedule.js"

const policy: PollPolicy = { firstMs: 2_000, factor: 1.5, maxMs: 30_000, minMs: 10 }

const sample = (atMs: number, done: number, total = 1000) => ({ atMs, done, total })

/** Polls after waits of `waits` (no counts seen): the memory the schedule then holds. */
const after = (samples: ReadonlyArray<{ atMs: number; done: number; total: number }>, lastWaitMs: number | null): PollMemory =>
  PollSchedule.waited(samples.reduce(PollSchedule.observe, PollSchedule.empty), lastWaitMs ?? 0)

describe("the first poll", () => {
  it("of a batch just created waits what is left of the first interval since the intent", () => {
    expect(PollSchedule.firstWaitMs(policy, 1_000_000, 1_000_300, false)).toBe(1_700)
    expect(PollSchedule.firstWaitMs(policy, 1_000_000, 1_005_000, false)).toBe(0)
  })

  it("of a batch seen before (a resume), or without an intent, is at once", () => {
    expect(PollSchedule.firstWaitMs(policy, 1_000_000, 1_000_300, true)).toBe(0)
    expect(PollSchedule.firstWaitMs(policy, null, 1_000_300, false)).toBe(0)
  })

  it("is no later than the cap and no sooner than the floor", () => {
    expect(PollSchedule.firstWaitMs({ ...policy, maxMs: 500 }, 1_000_000, 1_000_000, false)).toBe(500)
    expect(PollSchedule.firstWaitMs({ ...policy, minMs: 5_000 }, 1_000_000, 1_000_000, false)).toBe(5_000)
  })
})

describe("the waits between polls", () => {
  it("grow by the factor from the first interval up to the cap while the counts say nothing", () => {
    let memory = PollSchedule.empty
    const waits: Array<number> = []
    for (let i = 0; i < 10; i++) {
      memory = PollSchedule.observe(memory, sample(i, 0))
      const wait = PollSchedule.nextWaitMs(policy, memory)
      waits.push(wait)
      memory = PollSchedule.waited(memory, wait)
    }
    expect(waits).toEqual([2_000, 3_000, 4_500, 6_750, 10_125, 15_187.5, 22_781.25, 30_000, 30_000, 30_000])
  })

  it("never go under the provider's floor, which wins over a lower cap", () => {
    expect(PollSchedule.nextWaitMs({ ...policy, minMs: 5_000 }, PollSchedule.empty)).toBe(5_000)
    expect(PollSchedule.nextWaitMs({ ...policy, minMs: 5_000, maxMs: 1_000 }, after([], 10_000))).toBe(5_000)
  })

  it("end at the predicted end when the counts' rate puts it before the next backed-off poll", () => {
    // 0 done while validating, then 100 at 2 s and 400 at 5 s: 0.1 per ms from the first progress, 600 left: 6 s.
    const memory = after([sample(0, 0), sample(2_000, 100), sample(5_000, 400)], 3_000)
    expect(PollSchedule.remainingMs(memory)).toBe(6_000)
    expect(PollSchedule.nextWaitMs(policy, memory)).toBe(4_500) // the backed-off wait comes first
    // At 9.5 s, 850 done: 150 left at the same rate is 1.5 s, sooner than 6.75 s.
    const later = after([sample(0, 0), sample(2_000, 100), sample(5_000, 400), sample(9_500, 850)], 4_500)
    expect(PollSchedule.remainingMs(later)).toBe(1_500)
    expect(PollSchedule.nextWaitMs(policy, later)).toBe(1_500)
    // Still under the floor, never.
    expect(PollSchedule.nextWaitMs({ ...policy, minMs: 2_000 }, later)).toBe(2_000)
  })

  it("predict nothing before progress, after every request is done (finalizing), or when the counts go back", () => {
    expect(PollSchedule.remainingMs(after([sample(0, 0), sample(2_000, 0)], 2_000))).toBeNull()
    expect(PollSchedule.remainingMs(after([sample(0, 100), sample(2_000, 1000)], 2_000))).toBeNull()
    // One poll with progress is no rate.
    expect(PollSchedule.remainingMs(after([sample(0, 0), sample(2_000, 500)], 2_000))).toBeNull()
    // Counts that went back restart the rate from there.
    const recounted = after([sample(0, 100), sample(1_000, 600), sample(2_000, 200), sample(3_000, 300)], 2_000)
    expect(PollSchedule.remainingMs(recounted)).toBe(7_000)
  })
})

describe("the schedule per provider", () => {
  it("starts at 2 s against a provider, a quarter of a second against the local emulator, and keeps the cap given", () => {
    const remote = { origin: "https://api.openai.com/v1", identity: { family: "openai" } } as unknown as Parameters<typeof PollSchedule.policyFor>[0]
    const local = { origin: "http://127.0.0.1:4010/v1", identity: { family: "openai" } } as unknown as Parameters<typeof PollSchedule.policyFor>[0]
    expect(PollSchedule.policyFor(remote)).toEqual({ firstMs: 2_000, factor: 1.5, maxMs: 30_000, minMs: 1_000 })
    expect(PollSchedule.policyFor(local, 60_000)).toEqual({ firstMs: 250, factor: 1.5, maxMs: 60_000, minMs: 10 })
  })
})

describe("the floor per provider", () => {
  it("is the family's against a real address, and none for the local emulator or an in-process fake", () => {
    const at = (origin: string | undefined, family: string) =>
      ({ ...(origin === undefined ? {} : { origin }), identity: { family } }) as unknown as Parameters<typeof PollSchedule.minMsFor>[0]
    expect(PollSchedule.minMsFor(at("https://api.openai.com/v1", "openai"))).toBe(1_000)
    expect(PollSchedule.minMsFor(at("https://api.anthropic.com", "anthropic"))).toBe(5_000)
    expect(PollSchedule.minMsFor(at("https://generativelanguage.googleapis.com", "gemini"))).toBe(2_000)
    expect(PollSchedule.minMsFor(at("https://gateway.example", "someone-else"))).toBe(PollSchedule.otherMinMs)
    expect(PollSchedule.minMsFor(at("http://127.0.0.1:4010/v1", "anthropic"))).toBe(PollSchedule.localMinMs)
    expect(PollSchedule.minMsFor(at(undefined, "openai"))).toBe(PollSchedule.localMinMs)
  })
})

/**
 * A batch on a made-up clock: validating until `startMs`, then `total` requests at `perMs`,
 * then finalizing for `finalizeMs`. Polled by the schedule from its intent at 0; returns when the
 * poll that saw it ended came, and how many polls were made.
 */
const simulate = (batch: { startMs: number; total: number; perMs: number; finalizeMs: number }, p: PollPolicy = policy) => {
  const doneAt = (t: number) => Math.min(batch.total, Math.max(0, Math.floor((t - batch.startMs) * batch.perMs)))
  const endsAt = batch.startMs + batch.total / batch.perMs + batch.finalizeMs
  let now = PollSchedule.firstWaitMs(p, 0, 0, false)
  let memory = PollSchedule.empty
  for (let polls = 1; ; polls++) {
    if (now >= endsAt) return { seenAt: now, endsAt, polls }
    memory = PollSchedule.observe(memory, { atMs: now, done: doneAt(now), total: batch.total })
    const wait = PollSchedule.nextWaitMs(p, memory)
    memory = PollSchedule.waited(memory, wait)
    now += wait
  }
}

describe("a batch polled by the schedule", () => {
  it("that ends soon after submission is seen within the first short intervals, not a fixed 30 s later", () => {
    // Ends at 3.2 s: polls at 2 s and 4 s.
    const quick = simulate({ startMs: 500, total: 100, perMs: 0.05, finalizeMs: 700 })
    expect(quick.endsAt).toBe(3_200)
    expect(quick.seenAt).toBe(4_000)
    expect(quick.polls).toBe(2)
  })

  it("that runs for a while is seen soon after its predicted end, with the waits capped", () => {
    // 100,000 requests at 100 per s: done at 1,005 s, ended at 1,010 s.
    const long = simulate({ startMs: 5_000, total: 100_000, perMs: 0.1, finalizeMs: 5_000 })
    expect(long.endsAt).toBe(1_010_000)
    // Seen within the 30 s cap of its end, and well before a full cap in practice: the rate predicted it.
    expect(long.seenAt - long.endsAt).toBeLessThan(10_000)
    // Polls: the ramp to the cap, about one per 30 s after, and a few near the end.
    expect(long.polls).toBeLessThan(1_010 / 30 + 15)
    expect(long.polls).toBeGreaterThan(1_010 / 30)
  })

  it("with a fixed cap of 60 s polls about half as often", () => {
    const capped = simulate({ startMs: 5_000, total: 100_000, perMs: 0.1, finalizeMs: 5_000 }, { ...policy, maxMs: 60_000 })
    expect(capped.polls).toBeLessThan(1_010 / 60 + 15)
  })
})
