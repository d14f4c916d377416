import { Either } from "effect"
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

  it("parses --max-enqueued-tokens: a number for every model, or model=tokens with a bare number for the rest", () => {
    const parse = (text: string) => Either.getOrThrowWith(EnqueuedTokens.parseLimits(text), (why) => new Error(why))
    expect(parse("90000")).toBe(90_000)
    expect(parse("2_000_000")).toBe(2_000_000)
    expect(parse("gpt-4o-mini=2000000, gpt-4o=90000")).toEqual({ "gpt-4o-mini": 2_000_000, "gpt-4o": 90_000 })
    const mixed = parse("gpt-4o-mini=2000000,gpt-4o=90000,500000")
    expect(mixed).toEqual({ "gpt-4o-mini": 2_000_000, "gpt-4o": 90_000, "*": 500_000 })
    expect(EnqueuedTokens.limitFor(mixed, "gpt-4o")).toBe(90_000)
    expect(EnqueuedTokens.limitFor(mixed, "o3-mini")).toBe(500_000)
    expect(EnqueuedTokens.limitFor({ "gpt-4o": 90_000 }, "o3-mini")).toBeUndefined()
    expect(EnqueuedTokens.limitFor(7, "anything")).toBe(7)
    // Said back the way it is given; equal by what it says.
    expect(EnqueuedTokens.formatLimits(mixed)).toBe("gpt-4o=90000,gpt-4o-mini=2000000,500000")
    expect(EnqueuedTokens.sameLimits(mixed, parse("500000,gpt-4o=90000,gpt-4o-mini=2000000"))).toBe(true)
    expect(EnqueuedTokens.sameLimits(mixed, parse("gpt-4o=90000,gpt-4o-mini=2000000"))).toBe(false)
  })

  it("refuses a malformed --max-enqueued-tokens, saying what is wrong with which item", () => {
    const why = (text: string) => Either.match(EnqueuedTokens.parseLimits(text), { onLeft: (w) => w, onRight: () => "accepted" })
    expect(why("0")).toBe(`--max-enqueued-tokens "0": the number of tokens must be an integer from 1 to 1000000000000`)
    expect(why("gpt-4o=lots")).toBe(`--max-enqueued-tokens "gpt-4o=lots": the number of tokens must be a whole number, got "lots"`)
    // Among several items, the one at fault is named.
    expect(why("gpt-4o=90000,gpt-4o-mini=lots")).toBe(`--max-enqueued-tokens "gpt-4o=90000,gpt-4o-mini=lots": "gpt-4o-mini=lots": the number of tokens must be a whole number, got "lots"`)
    expect(why("gpt-4o=1.5")).toContain("must be a whole number")
    expect(why("=5")).toContain(`"=5" names no model`)
    expect(why("gpt-4o=5,,7")).toContain("an empty item")
    expect(why("5,7")).toContain("two limits for every model")
    expect(why("gpt-4o=5,gpt-4o=7")).toContain("two limits for gpt-4o")
    expect(why("1000000000001")).toContain("from 1 to 1000000000000")
  })

  it("holds the library's limits to the same bounds", () => {
    expect(EnqueuedTokens.limitsProblems(90_000)).toEqual([])
    expect(EnqueuedTokens.limitsProblems(0)).toEqual(["maxEnqueuedTokens must be an integer from 1 to 1000000000000, got 0"])
    expect(EnqueuedTokens.limitsProblems({ "gpt-4o": 90_000, "*": 2.5 })).toEqual([`maxEnqueuedTokens["*"] must be an integer from 1 to 1000000000000, got 2.5`])
  })

  it("parses --max-batches the same way, naming that flag and batches in what it refuses", () => {
    expect(EnqueuedTokens.parseLimits("gpt-4o=2,4", "--max-batches", "batches")).toEqual(Either.right({ "gpt-4o": 2, "*": 4 }))
    expect(EnqueuedTokens.parseLimits("gpt-4o=two", "--max-batches", "batches")).toEqual(Either.left(`--max-batches "gpt-4o=two": the number of batches must be a whole number, got "two"`))
    expect(EnqueuedTokens.limitsProblems(0, "maxBatches")).toEqual(["maxBatches must be an integer from 1 to 1000000000000, got 0"])
  })

  it("reads the model back from a ledger key", () => {
    expect(EnqueuedTokens.modelOfKey("openai https://api.openai.com/v1 gpt-4o-mini")).toBe("gpt-4o-mini")
  })
})
