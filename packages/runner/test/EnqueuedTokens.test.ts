import { describe, expect, it } from "vitest"
import * as EnqueuedTokens from "../src/EnqueuedTokens.js"

describe("EnqueuedTokens", () => {
  it("recognises a token-limit failure as journaled, and reads the limit OpenAI states", () => {
    const errors = [
      "token_limit_exceeded: Enqueued token limit reached for gpt-4o-mini in organization org-x. Limit: 2,000,000 enqueued tokens. Please try again later."
    ]
    expect(EnqueuedTokens.isTokenLimit(errors)).toBe(true)
    expect(EnqueuedTokens.isTokenLimit(["invalid_json_line: line 3 (line 3)"])).toBe(false)
    expect(EnqueuedTokens.statedLimit(errors)).toBe(2_000_000)
    expect(EnqueuedTokens.statedLimit(["token_limit_exceeded: Enqueued token limit reached."])).toBeUndefined()
  })

  it("learns under both the stated limit and what was in flight, with a margin", () => {
    expect(EnqueuedTokens.learn({ stated: 1000, inFlight: 1500 })).toBe(900)
    // Others enqueue at the provider too: what was in flight is the tighter bound.
    expect(EnqueuedTokens.learn({ stated: 1000, inFlight: 500 })).toBe(450)
    expect(EnqueuedTokens.learn({ stated: undefined, inFlight: 200 })).toBe(180)
    expect(EnqueuedTokens.learn({ stated: undefined, inFlight: undefined })).toBeUndefined()
  })

  it("fits a shard beside what is in flight; one over the limit goes alone", () => {
    expect(EnqueuedTokens.fits(10, 15, 25)).toBe(true)
    expect(EnqueuedTokens.fits(11, 15, 25)).toBe(false)
    expect(EnqueuedTokens.fits(0, 40, 25)).toBe(true)
    expect(EnqueuedTokens.fits(1, 40, 25)).toBe(false)
    expect(EnqueuedTokens.fits(1_000_000, 40, undefined)).toBe(true)
  })

  it("estimates a shard by its counted tokens, else by a quarter of its bytes", () => {
    expect(EnqueuedTokens.estimate({ inputTokens: 120, bytes: 4000 })).toBe(120)
    expect(EnqueuedTokens.estimate({ inputTokens: undefined, bytes: 4001 })).toBe(1001)
  })
})
