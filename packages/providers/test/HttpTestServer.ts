/**
 * Real HTTP servers on 127.0.0.1 for the origin and bounds tests: each records what it
 * received (method, path with query, headers) and answers as the test says. Both HTTP
 * clients a library user may run the providers over: undici (the shipped layers) and
 * Effect's fetch-based client.
 */
import { FetchHttpClient, HttpClient } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { ConfigProvider, Context, Effect, Exit, Layer } from "effect"
import { createServer } from "node:http"
import type { IncomingMessage, ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { Providers } from "../src/BatchProvider.js"
import * as Registry from "../src/Registry.js"

export interface Received {
  readonly method: string
  /** Path and query as received. */
  readonly url: string
  readonly headers: Readonly<Record<string, string | Array<string> | undefined>>
  readonly body: string
}

export interface TestServer {
  /** `http://127.0.0.1:<port>`: an origin of its own. */
  readonly url: string
  readonly received: Array<Received>
}

export type Handler = (request: Received, res: ServerResponse, req: IncomingMessage) => void

/** A server on 127.0.0.1 (port 0) that records every request, then lets `handler` answer. */
export const testServer = (handler: Handler) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const received: Array<Received> = []
      const server = createServer((req, res) => {
        const chunks: Array<Buffer> = []
        req.on("data", (chunk: Buffer) => chunks.push(chunk))
        req.on("end", () => {
          const request = {
            method: req.method ?? "GET",
            url: req.url ?? "/",
            headers: { ...req.headers },
            body: Buffer.concat(chunks).toString("utf8")
          }
          received.push(request)
          handler(request, res, req)
        })
      })
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
      const { port } = server.address() as AddressInfo
      return { server, url: `http://127.0.0.1:${port}`, received }
    }),
    ({ server }) =>
      Effect.promise(() =>
        new Promise<void>((resolve) => {
          server.close(() => resolve())
          server.closeAllConnections()
        })
      )
  ).pipe(Effect.map(({ received, url }): TestServer => ({ url, received })))

/** Answers with a JSON body. */
export const json = (res: ServerResponse, status: number, body: unknown): void => {
  res.writeHead(status, { "content-type": "application/json" })
  res.end(JSON.stringify(body))
}

/** A header as one string (node gives arrays for repeated headers). */
export const header = (request: Received, name: string): string | undefined => {
  const value = request.headers[name]
  return Array.isArray(value) ? value.join(", ") : value
}

/** The two clients, each built in the test's scope (undici's Agent is closed with it). */
export const clients: ReadonlyArray<readonly [string, Layer.Layer<HttpClient.HttpClient>]> = [
  ["undici", NodeHttpClient.layerUndici],
  ["fetch", FetchHttpClient.layer]
]

export const clientOf = (layer: Layer.Layer<HttpClient.HttpClient>) =>
  Effect.map(Layer.build(layer), (context) => Context.get(context, HttpClient.HttpClient))

/**
 * `Providers.get(name)` from the registry under exactly the given environment (no retries
 * unless it says otherwise), over undici: the provider, or the failure's message.
 */
export const providerFromEnv = (name: string, env: Record<string, string>) =>
  Effect.gen(function*() {
    const client = yield* clientOf(NodeHttpClient.layerUndici)
    const exit = yield* Effect.flatMap(Providers, (providers) => providers.get(name)).pipe(
      Effect.provide(Registry.layerFromEnv()),
      Effect.provideService(HttpClient.HttpClient, client),
      Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries({ SLUICE_HTTP_RETRIES: "0", ...env })))),
      Effect.exit
    )
    const message = Exit.isFailure(exit) && exit.cause._tag === "Fail" ? exit.cause.error.message : undefined
    return { exit, message, provider: Exit.isSuccess(exit) ? exit.value : undefined }
  })
