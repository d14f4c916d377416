import { Either, Schema } from "effect"
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { pngBytes } from "../../../test/support/png.js"
import { Pipeline, Prompt, Source } from "../src/index.js"
import type { ImagePart, Message } from "../src/index.js"

const dir = mkdtempSync(join(tmpdir(), "sluice-prompt-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const png = pngBytes(3, 2)
const pngPath = join(dir, "red.png")
writeFileSync(pngPath, png)

describe("Prompt.chat", () => {
  it("without images builds exactly the messages it always did (string content, same keys, same order)", () => {
    const prompt = Prompt.chat({
      system: "Label it.",
      examples: [{ user: "great", assistant: "positive" }],
      messages: [{ role: "user", content: "earlier" }],
      user: "fine"
    })
    // The custom_id hashes JSON.stringify(messages): these bytes must not change.
    expect(JSON.stringify(prompt)).toBe(
      '{"_tag":"ChatPrompt","messages":[{"role":"system","content":"Label it."},{"role":"user","content":"great"},' +
        '{"role":"assistant","content":"positive"},{"role":"user","content":"earlier"},{"role":"user","content":"fine"}]}'
    )
    expect(Prompt.chat({ user: "x", images: [] }).messages).toEqual([{ role: "user", content: "x" }])
    expect(Prompt.chat({ user: "x", images: undefined }).messages).toEqual([{ role: "user", content: "x" }])
  })

  it("puts images in the row's user turn, after its text; examples stay text", () => {
    const url = Prompt.imageUrl("https://example.com/a.jpg")
    const file = Prompt.imageFile(pngPath)
    const prompt = Prompt.chat({
      system: "Describe.",
      examples: [{ user: "ex", assistant: "ans" }],
      user: "What is this?",
      images: [url, file]
    })
    expect(prompt.messages).toEqual([
      { role: "system", content: "Describe." },
      { role: "user", content: "ex" },
      { role: "assistant", content: "ans" },
      {
        role: "user",
        content: [
          { type: "text", text: "What is this?" },
          { type: "image", source: { type: "url", url: "https://example.com/a.jpg" } },
          { type: "image", source: { type: "base64", mediaType: "image/png", data: png.toString("base64") } }
        ]
      }
    ])
    // No text (or empty text): the turn is the images alone.
    expect(Prompt.chat({ images: [url] }).messages).toEqual([{ role: "user", content: [url] }])
    expect(Prompt.chat({ user: "", images: [url] }).messages).toEqual([{ role: "user", content: [url] }])
  })

  it("takes earlier turns with parts, but refuses images outside user turns and things that are not image parts", () => {
    const image = Prompt.imageUrl("https://example.com/a.png")
    const ok = Prompt.chat({ messages: [{ role: "user", content: [Prompt.text("look"), image] }], user: "and?" })
    expect(ok.messages).toHaveLength(2)
    expect(() => Prompt.chat({ messages: [{ role: "assistant", content: [image] }], user: "x" })).toThrow(
      /message 0 is a assistant turn with an image: images are only allowed in user turns/
    )
    expect(() => Prompt.chat({ messages: [{ role: "system", content: [Prompt.text("s"), image] }] })).toThrow(/system turn with an image/)
    // A plain URL string where an image part belongs (a JavaScript caller, or a cast).
    expect(() => Prompt.chat({ user: "x", images: ["https://example.com/a.png" as unknown as ImagePart] })).toThrow(
      /images\[0\] is not an image part; make one with Prompt.imageUrl\(url\) or Prompt.imageFile\(path\)/
    )
    expect(() => Prompt.chat({})).toThrow(/at least one message/)
  })
})

describe("Prompt.imageUrl", () => {
  it("keeps an http(s) URL, takes a base64 data URL apart, refuses the rest", () => {
    expect(Prompt.imageUrl("https://example.com/x.webp?size=2")).toEqual({ type: "image", source: { type: "url", url: "https://example.com/x.webp?size=2" } })
    expect(Prompt.imageUrl("data:image/jpeg;base64,/9j/4AAQ")).toEqual({
      type: "image",
      source: { type: "base64", mediaType: "image/jpeg", data: "/9j/4AAQ" }
    })
    expect(() => Prompt.imageUrl("photos/cat.png")).toThrow(/Prompt.imageUrl: "photos\/cat.png" is not an absolute URL/)
    expect(() => Prompt.imageUrl("data:image/bmp;base64,Qk0=")).toThrow(/data URL of type "image\/bmp"/)
    expect(() => Prompt.imageUrl("data:image/png,%89PNG")).toThrow(/must be base64-encoded/)
  })
})

describe("Prompt.imageFile", () => {
  it("reads the file when called, as base64, with the media type of its extension", () => {
    expect(Prompt.imageFile(pngPath)).toEqual({ type: "image", source: { type: "base64", mediaType: "image/png", data: png.toString("base64") } })
    const jpeg = join(dir, "photo.JPG")
    writeFileSync(jpeg, Buffer.from([0xff, 0xd8, 0xff, 0xd9]))
    expect(Prompt.imageFile(jpeg).source).toEqual({ type: "base64", mediaType: "image/jpeg", data: "/9j/2Q==" })
    for (const [name, type] of [["a.jpeg", "image/jpeg"], ["a.gif", "image/gif"], ["a.webp", "image/webp"]] as const) {
      writeFileSync(join(dir, name), "x")
      expect(Prompt.imageFile(join(dir, name)).source).toMatchObject({ mediaType: type })
    }
  })

  it("names the path when the file is missing, empty, or of an unknown type", () => {
    const missing = join(dir, "missing.png")
    expect(() => Prompt.imageFile(missing)).toThrow(`Prompt.imageFile: cannot read ${JSON.stringify(missing)} (ENOENT)`)
    const bmp = join(dir, "scan.bmp")
    writeFileSync(bmp, "BM")
    expect(() => Prompt.imageFile(bmp)).toThrow(`Prompt.imageFile: ${JSON.stringify(bmp)} is not a known image type`)
    expect(() => Prompt.imageFile(join(dir, "noext"))).toThrow(/is not a known image type/)
    const empty = join(dir, "empty.gif")
    writeFileSync(empty, "")
    expect(() => Prompt.imageFile(empty)).toThrow(`Prompt.imageFile: ${JSON.stringify(empty)} is empty`)
    expect(() => Prompt.imageFile(dir + "/")).toThrow(/is not a known image type/)
    const folder = join(dir, "folder.png")
    mkdirSync(folder)
    expect(() => Prompt.imageFile(folder)).toThrow(`Prompt.imageFile: cannot read ${JSON.stringify(folder)} (EISDIR)`)
  })
})

describe("content helpers and the Message schema", () => {
  const parts: Message["content"] = [Prompt.text("a"), Prompt.imageUrl("https://x.test/i.png"), Prompt.text("b")]

  it("textOf, imageCount, partsOf", () => {
    expect(Prompt.textOf("plain")).toBe("plain")
    expect(Prompt.textOf(parts)).toBe("a\nb")
    expect(Prompt.textOf(parts, "\n\n")).toBe("a\n\nb")
    expect(Prompt.imageCount(parts)).toBe(1)
    expect(Prompt.imageCount("plain")).toBe(0)
    expect(Prompt.partsOf("plain")).toEqual([{ type: "text", text: "plain" }])
  })

  it("decodes string and part-list content; refuses unknown parts and media types", () => {
    const decode = Schema.decodeUnknownEither(Prompt.Message)
    expect(Either.isRight(decode({ role: "user", content: "x" }))).toBe(true)
    expect(Either.isRight(decode({ role: "user", content: parts }))).toBe(true)
    expect(Either.isRight(decode({ role: "user", content: [{ type: "image", source: { type: "base64", mediaType: "image/png", data: "AA==" } }] }))).toBe(true)
    expect(Either.isLeft(decode({ role: "user", content: [{ type: "image", source: { type: "base64", mediaType: "image/bmp", data: "AA==" } }] }))).toBe(true)
    expect(Either.isLeft(decode({ role: "user", content: [{ type: "audio", data: "" }] }))).toBe(true)
  })

  it("problemOf finds what no provider takes", () => {
    expect(Prompt.problemOf([{ role: "user", content: parts }])).toBeUndefined()
    expect(Prompt.problemOf([{ role: "assistant", content: [Prompt.text("ok")] }])).toBeUndefined()
    expect(Prompt.problemOf([{ role: "assistant", content: parts }])).toMatch(/assistant turn with an image/)
    const bad = [{ role: "user", content: [{ type: "image", source: { type: "base64", mediaType: "image/tiff", data: "" } }] }] as unknown as ReadonlyArray<Message>
    expect(Prompt.problemOf(bad)).toMatch(/message 0, part 0: an image needs a source/)
  })
})

describe("image prompts in a pipeline", () => {
  const Row = Schema.Struct({ id: Schema.String, caption: Schema.String, photo: Schema.String })
  const pipeline = Pipeline.make("photos").pipe(
    Pipeline.from(Source.array([{ id: "a", caption: "c", photo: pngPath }]), { key: (r) => r.id }),
    Pipeline.batch("describe", {
      provider: "openai",
      model: "gpt-4o-mini",
      prompt: (r: typeof Row.Type) => Prompt.chat({ user: r.caption, images: [Prompt.imageFile(r.photo)] })
    })
  )

  it("keeps the template typed by the row", () => {
    Pipeline.make("wrong-field").pipe(
      Pipeline.from(Source.array([{ id: "a", text: "t" }]), { key: (r) => r.id }),
      Pipeline.batch("describe", {
        provider: "openai",
        model: "m",
        // @ts-expect-error `photo` is not a field of the row
        prompt: (r) => Prompt.chat({ user: r.text, images: [Prompt.imageFile(r.photo)] })
      })
    )
    Pipeline.make("not-an-image").pipe(
      Pipeline.from(Source.array([{ id: "a", text: "t", url: "https://x.test/a.png" }]), { key: (r) => r.id }),
      Pipeline.batch("describe", {
        provider: "openai",
        model: "m",
        // @ts-expect-error images are image parts, not URL strings
        prompt: (r) => Prompt.chat({ user: r.text, images: [r.url] })
      })
    )
    expect(pipeline.stages).toHaveLength(1)
  })

  it("reads the file at render time: a changed image is a changed request, so a new custom_id", () => {
    const stage = pipeline.stages[0]!
    const row = { id: "a", caption: "c", photo: pngPath }
    const first = stage.render(row)
    writeFileSync(pngPath, pngBytes(3, 2, [0, 0, 255]))
    const second = stage.render(row)
    writeFileSync(pngPath, png)
    expect(stage.requestHash(second)).not.toBe(stage.requestHash(first))
    expect(stage.requestHash(stage.render(row))).toBe(stage.requestHash(first))
    // An unreadable file is a render error of that row, naming the file.
    expect(() => stage.render({ ...row, photo: join(dir, "gone.png") })).toThrow(/gone\.png/)
  })
})

describe("a prompt part that renders undefined", () => {
  // What a misspelt or missing field gives at run time (the cast stands for a file that was
  // not type-checked, or a field typed optional).
  const missing = undefined as unknown as string

  it("throws, naming the part, instead of leaving the part out", () => {
    expect(() => Prompt.chat({ system: "s", user: missing })).toThrow("Prompt.chat: user is undefined; expected a string")
    expect(() => Prompt.chat({ system: null as unknown as string, user: "u" })).toThrow("Prompt.chat: system is null; expected a string")
    expect(() => Prompt.chat({ user: 3 as unknown as string })).toThrow("Prompt.chat: user is a number; expected a string")
    // With images too: the text would otherwise be dropped silently before them.
    expect(() => Prompt.chat({ user: missing, images: [Prompt.imageUrl("https://example.com/a.png")] })).toThrow(
      "Prompt.chat: user is undefined; expected a string"
    )
    expect(() => Prompt.chat({ examples: [{ user: "u", assistant: "a" }, { user: "u2", assistant: missing }], user: "x" })).toThrow(
      "Prompt.chat: examples[1].assistant is undefined; expected a string"
    )
    expect(() => Prompt.chat({ examples: [{ user: missing, assistant: "a" }], user: "x" })).toThrow("Prompt.chat: examples[0].user is undefined")
    expect(() => Prompt.chat({ examples: null as unknown as [], user: "x" })).toThrow("Prompt.chat: examples is null; expected a list")
    expect(() => Prompt.chat({ messages: [{ role: "user", content: "a" }, { role: "assistant", content: missing }] })).toThrow(
      "Prompt.chat: messages[1].content is undefined; expected a string"
    )
    expect(() => Prompt.chat({ messages: [{ role: "user", content: [{ type: "text", text: missing }] }] })).toThrow(
      "Prompt.chat: messages[0].content[0].text is undefined; expected a string"
    )
    expect(() => Prompt.chat({ messages: [{ role: undefined as unknown as "user", content: "a" }] })).toThrow(
      'Prompt.chat: messages[0].role is undefined; expected "system", "user" or "assistant"'
    )
    expect(() => Prompt.chat({ user: "x", images: [undefined as unknown as ImagePart] })).toThrow("Prompt.chat: images[0] is not an image part")
    expect(() => Prompt.text(missing)).toThrow("Prompt.text: the text is undefined; expected a string")
    expect(() => Prompt.imageUrl(missing)).toThrow("Prompt.imageUrl: the URL is undefined; expected a string")
    expect(() => Prompt.imageFile(missing)).toThrow("Prompt.imageFile: the path is undefined; expected a string")
  })

  it("a part left out is not sent; lists may be undefined (none)", () => {
    expect(Prompt.chat({ user: "u" }).messages).toEqual([{ role: "user", content: "u" }])
    expect(Prompt.chat({ system: "s", examples: undefined, messages: undefined, images: undefined }).messages).toEqual([{ role: "system", content: "s" }])
  })

  it("fails the row at render time in a batch or embed stage, naming the part", () => {
    const Row = Schema.Struct({ id: Schema.String, text: Schema.String, note: Schema.optional(Schema.String) })
    type Row = typeof Row.Type
    const rows: ReadonlyArray<Row> = [{ id: "a", text: "t", note: "n" }, { id: "b", text: "t" }]
    const chat = Pipeline.make("p").pipe(
      Pipeline.from(Source.array(rows), { key: (r) => r.id }),
      // `note` is optional, undefined for row b (the cast is what a tsconfig without
      // exactOptionalPropertyTypes lets through unasked).
      Pipeline.batch("label", { provider: "openai", model: "m", prompt: (r) => Prompt.chat({ system: "s", user: r.note as string }) })
    )
    expect(chat.stages[0]!.render(rows[0])).toMatchObject({ messages: [{ role: "system" }, { role: "user", content: "n" }] })
    expect(() => chat.stages[0]!.render(rows[1])).toThrow("Prompt.chat: user is undefined; expected a string")
    const embed = Pipeline.make("e").pipe(
      Pipeline.from(Source.array(rows), { key: (r) => r.id }),
      Pipeline.embed("vec", { provider: "openai", model: "text-embedding-3-small", input: (r) => r.note as string })
    )
    expect(embed.stages[0]!.render(rows[0])).toMatchObject({ _tag: "embeddings", input: "n" })
    expect(() => embed.stages[0]!.render(rows[1])).toThrow('Pipeline.embed: stage "vec": input is undefined; expected a string')
    const noPrompt = Pipeline.make("n").pipe(
      Pipeline.from(Source.array(rows), { key: (r) => r.id }),
      Pipeline.batch("label", { provider: "openai", model: "m", prompt: (() => undefined) as unknown as (r: Row) => Prompt.ChatPrompt })
    )
    expect(() => noPrompt.stages[0]!.render(rows[0])).toThrow('Pipeline.batch: stage "label": the prompt returned undefined; return Prompt.chat(…)')
  })
})
