/**
 * The preview's rendering: each row's header and status, every stage's output or failure
 * (on one line, once), what the sink would get when it differs from the last stage's output,
 * and the projection's cost lines, a model without a price named.
 */
import { describe, expect, it } from "vitest"
import { compact, oneLine, render, rowStatus } from "../src/Preview.js"
import type { Preview, PreviewRow, Projection } from "../src/Preview.js"

const projection = (over: Partial<Projection> = {}): Projection => ({
  rows: 1000,
  stages: [
    { stage: "label", model: "gpt-4o-mini", requests: 1000, inputTokens: 52_000, outputTokens: 18_000, basis: "estimate", measuredAnswers: 3, batch: 0.0093, online: 0.0186 },
    { stage: "summarize", model: "gpt-4o-mini", requests: 1000, inputTokens: 40_000, outputTokens: 9_000, basis: "scaled", measuredAnswers: 3, batch: 0.0057, online: 0.0114 }
  ],
  batch: 0.015,
  online: 0.03,
  unpriced: [],
  prices: "2026-11-01",
  refusal: null,
  ...over
})

const preview = (rows: ReadonlyArray<PreviewRow>, over: Partial<Preview> = {}): Preview => ({
  pipeline: "reviews",
  asked: 20,
  rows,
  succeeded: 1,
  failed: { parse: 1, invalid: 1 },
  requests: 5,
  fromCache: 0,
  usage: { input: 400, output: 90, cached: 0 },
  cost: 0.00012,
  projection: projection(),
  sink: "jsonl:out/reviews.jsonl",
  runDir: null,
  ...over
})

const ok: PreviewRow = {
  location: "data/rows.jsonl:1",
  input: { id: "r1", text: "great" },
  steps: [
    { stage: "label", key: "r1", customId: "label-r1-aa", attempt: 1, cached: false, output: { sentiment: "positive" } },
    { stage: "summarize", key: "r1", customId: "summarize-r1-bb", attempt: 1, cached: true, output: { summary: "liked it" } }
  ],
  // A map after the last stage: the sink gets other than the stage's output.
  outputs: [{ key: "r1", output: { summary: "LIKED IT" } }],
  failures: []
}

const parseError = "response does not match the schema: { readonly sentiment: \"positive\" }\n└─ [\"sentiment\"]\n   └─ is missing"

const repairedThenFailed: PreviewRow = {
  location: "data/rows.jsonl:2",
  input: { id: "r2", text: "meh" },
  steps: [
    { stage: "label", key: "r2", customId: "label-r2-cc", attempt: 1, cached: false, failure: { class: "parse", code: "parse_error", message: parseError }, answer: "{\"mood\":\"meh\"}" },
    { stage: "label", key: "r2", customId: "label-r2-dd", attempt: 2, cached: false, failure: { class: "parse", code: "truncated", message: "response is not valid JSON" }, answer: "{\"senti" }
  ],
  outputs: [],
  failures: [{ stage: "label", customId: "label-r2-dd", class: "parse", code: "truncated", message: "response is not valid JSON" }]
}

const invalidSource: PreviewRow = {
  location: "data/rows.jsonl:3",
  steps: [],
  outputs: [],
  failures: [{ stage: null, customId: null, class: "invalid", code: "invalid_row", message: "line 3 is not JSON" }]
}

describe("Preview.render", () => {
  const text = render(preview([ok, repairedThenFailed, invalidSource]), { width: 200 })
  const lines = text.split("\n")

  it("heads each row with its location, key and how it ended", () => {
    expect(lines).toContain("row 1 · data/rows.jsonl:1 · key r1 · ok")
    expect(lines).toContain("row 2 · data/rows.jsonl:2 · key r2 · failed (parse)")
    expect(lines).toContain("row 3 · data/rows.jsonl:3 · failed (invalid)")
  })

  it("shows the input, each stage's output, and the sink's record where a transform changed it", () => {
    expect(lines).toContain(`  input      {"id":"r1","text":"great"}`)
    expect(lines).toContain(`  label      {"sentiment":"positive"}`)
    expect(lines).toContain(`  summarize  (from the response cache) {"summary":"liked it"}`)
    expect(lines).toContain(`  output     {"summary":"LIKED IT"}`)
  })

  it("shows each failed attempt on one line with its answer, and a failure a step shows only once", () => {
    expect(lines).toContain(`  label      ✗ parse (parse_error): response does not match the schema: { readonly sentiment: "positive" } ["sentiment"] is missing`)
    expect(lines).toContain(`             answer: "{\\"mood\\":\\"meh\\"}"`)
    expect(lines).toContain(`  label      (attempt 2) ✗ parse (truncated): response is not valid JSON`)
    expect(lines.filter((l) => l.includes("response is not valid JSON"))).toHaveLength(1)
    // A row that never reached a stage: its failure is the only line about it.
    expect(lines).toContain(`  failed     invalid (invalid_row): line 3 is not JSON`)
  })

  it("ends with the preview's own counts and cost, the untouched sink, and the full run in both modes", () => {
    expect(text).toContain("preview of reviews: 3 rows (all the source has; 20 asked), 1 succeeded, 2 failed (parse 1, invalid 1); 5 requests sent online")
    expect(text).toContain("preview cost: $0.00012 at real-time prices (400 tokens in, 90 out)")
    expect(text).toContain("nothing written to jsonl:out/reviews.jsonl; the preview's run directory is removed")
    expect(text).toContain("the full run (1,000 rows), projected: ~$0.015 in batch mode, ~$0.03 in online mode (prices of 2026-11-01)")
    expect(text).toContain("  label (gpt-4o-mini): 1,000 requests, 52,000 tokens in, ~18,000 out (output measured on 3 answers); batch ~$0.0093, online ~$0.019")
    expect(text).toContain("  summarize (gpt-4o-mini): ~1,000 requests, ~40,000 tokens in, ~9,000 out (the preview's 3 answers scaled up)")
  })

  it("names a model without a price, and a stage it could not measure", () => {
    const unpriced = render(
      preview([ok], {
        projection: projection({
          batch: null,
          online: null,
          unpriced: ["my-finetune"],
          stages: [
            { stage: "label", model: "my-finetune", requests: 1000, inputTokens: 52_000, outputTokens: 100_000, basis: "estimate", measuredAnswers: 0, batch: null, online: null },
            { stage: "summarize", model: "gpt-4o-mini", requests: 0, inputTokens: 0, outputTokens: 0, basis: "unknown", measuredAnswers: 0, batch: null, online: null }
          ]
        })
      })
    )
    expect(unpriced).toContain("the full run (1,000 rows), projected: cost unknown: no price for my-finetune in the price table (give one with --prices)")
    expect(unpriced).toContain("  label (my-finetune): 1,000 requests, 52,000 tokens in, ~100,000 out (output assumed (set --output-tokens)); no price for my-finetune")
    expect(unpriced).toContain("  summarize (gpt-4o-mini): not projected: the preview has no paid answer of it to measure")
  })

  it("says that nothing was paid against the emulator", () => {
    expect(render(preview([ok]), { emulated: true })).toContain("preview cost had it been real (the emulator charged nothing): $0.00012 at real-time prices")
  })

  it("says where a kept run directory is", () => {
    expect(render(preview([ok], { runDir: "/tmp/sluice-preview-x/run" }))).toContain("the preview's run directory is kept: /tmp/sluice-preview-x/run")
  })
})

describe("Preview helpers", () => {
  it("cuts long values and joins lines", () => {
    expect(compact({ a: "x".repeat(50) }, 20)).toBe(`{"a":"xxxxxxxxxxxxx…`)
    expect(compact({ a: "x".repeat(50) }, 20)).toHaveLength(20)
    expect(oneLine("a\n├─ b\n│  └─ c", 80)).toBe("a b c")
  })

  it("a row without outputs or failures has no answer (the preview stopped early)", () => {
    expect(rowStatus({ location: "x:1", steps: [], outputs: [], failures: [] })).toBe("no answer")
  })
})

describe("Preview.render width", () => {
  it("cuts a long failure at the width, on one line", () => {
    const narrow = render(preview([repairedThenFailed]), { width: 80 }).split("\n")
    const line = narrow.find((l) => l.startsWith("  label") && l.includes("✗ parse (parse_error)"))!
    expect(line).toHaveLength(80)
    expect(line.endsWith("…")).toBe(true)
  })
})
