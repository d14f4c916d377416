import { describe, expect, it } from "vitest"
import { ShardAnswers, TextArena } from "../src/internal/ShardAnswers.js"

describe("TextArena", () => {
  it("gives back every text as stored: empty, multi-byte, across its buffers and longer than one", () => {
    const arena = new TextArena()
    const texts = [
      "",
      "plain",
      "é中😀\u0000",
      "x".repeat(5 * 1024 * 1024), // longer than a buffer (4 MiB)
      ...Array.from({ length: 20_000 }, (_, i) => `{"n":${i},"t":"${"ü".repeat(i % 400)}"}`)
    ]
    const numbers = texts.map((t) => arena.add(t))
    expect(numbers).toEqual(texts.map((_, i) => i))
    expect(texts.every((t, i) => arena.get(i) === t)).toBe(true)
  })

  it("keeps a text UTF-8 cannot hold (lone surrogates) exactly, between others", () => {
    const arena = new TextArena()
    const texts = ["before", "lone \ud800 high", "\udc00 lone low", "pair \ud83d\ude00", "after", ...Array.from({ length: 5_000 }, (_, i) => (i % 7 === 0 ? `odd ${i} \ud801` : `even ${i}`))]
    texts.forEach((t) => arena.add(t))
    for (const [i, t] of texts.entries()) expect(arena.get(i)).toBe(t)
  })
})

describe("ShardAnswers", () => {
  const key = (i: number) => i.toString(16).padStart(64, "0")

  it("numbers the sidecar's rows by id, across growth; an id not sent is -1; a repeated id keeps its first row", () => {
    const answers = new ShardAnswers(16)
    const ids = Array.from({ length: 5_000 }, (_, i) => `label-${i}-ü`)
    ids.forEach((id, i) => answers.addRow(id, i % 3 === 0 ? key(i) : undefined))
    answers.addRow(ids[7]!, undefined)
    expect(ids.every((id, i) => answers.row(id) === i)).toBe(true)
    expect(answers.row("label-none")).toBe(-1)
    expect(answers.row(ids[7]!)).toBe(7)
    expect(answers.cacheKey(3)).toBe(key(3))
    expect(answers.cacheKey(4)).toBeUndefined()
    expect(answers.cacheKey(4_997)).toBeUndefined()
    expect(answers.cacheKey(4_998)).toBe(key(4_998))
  })

  it("keeps what each row got: nothing, an answer with its finish reason, or a failure", () => {
    const answers = new ShardAnswers(4)
    for (let i = 0; i < 6; i++) answers.addRow(`r${i}`, undefined)
    answers.answer(0, '{"a":1}', "stop")
    answers.answer(1, "cut off", "length")
    answers.answer(2, "", null)
    answers.fail(3, { failure: "retryable", code: "server_error", message: "try again" })
    // A failure, then an answer for the same row (a duplicated line): the answer.
    answers.fail(4, { failure: "expired", code: "expired", message: "expired" })
    answers.answer(4, "late", "stop")
    expect(answers.get(0)).toEqual({ _tag: "Answer", text: '{"a":1}', finishReason: "stop" })
    expect(answers.get(1)).toEqual({ _tag: "Answer", text: "cut off", finishReason: "length" })
    expect(answers.get(2)).toEqual({ _tag: "Answer", text: "", finishReason: null })
    expect(answers.get(3)).toEqual({ _tag: "Failure", failure: "retryable", code: "server_error", message: "try again" })
    expect(answers.get(4)).toEqual({ _tag: "Answer", text: "late", finishReason: "stop" })
    expect(answers.get(5)).toEqual({ _tag: "None" })
    expect([0, 1, 2, 3, 4, 5].map((r) => answers.answered(r))).toEqual([true, true, true, false, true, false])
  })
})
