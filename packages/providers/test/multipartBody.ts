/**
 * A multipart request body as the server receives it: the provider streams uploads (see
 * src/internal/upload.ts), so tests that inspect the request read the stream and parse it with
 * the WHATWG parser (`Response.formData`), not ours — and check the declared content-length.
 */
import type { HttpBody } from "@effect/platform"
import { Chunk, Effect, Stream } from "effect"

export const formOf = (body: HttpBody.HttpBody): Effect.Effect<FormData, unknown> =>
  Effect.gen(function*() {
    if (body._tag === "FormData") return body.formData
    if (body._tag !== "Stream") return yield* Effect.fail(new Error(`expected a multipart body, got ${body._tag}`))
    const bytes = Buffer.concat(Chunk.toReadonlyArray(yield* Stream.runCollect(body.stream)))
    if (body.contentLength !== bytes.length) {
      return yield* Effect.fail(new Error(`content-length ${body.contentLength} declared, ${bytes.length} bytes sent`))
    }
    const contentType = body.contentType ?? ""
    if (!contentType.startsWith("multipart/form-data")) return yield* Effect.fail(new Error(`content-type ${contentType}`))
    return yield* Effect.promise(() => new Response(bytes, { headers: { "content-type": contentType } }).formData())
  })
