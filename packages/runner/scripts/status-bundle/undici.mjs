/**
 * What @effect/platform-node's HTTP client (internal/httpClientUndici.js) takes from its
 * `Undici.js` — `Agent` and `getGlobalDispatcher` — in the bundled status program only
 * (scripts/bundle-status.mjs puts this file in its place). The client makes its Agent when the
 * program starts; loading undici took ~15% of a status that never asks the provider
 * (`--no-refresh`, a finished run). Here the Agent is undici's own, made at its first request,
 * from undici's dispatcher and request API alone: its index also loads fetch, WebSocket, cookies
 * (which load Node's own copy of undici), mocks and caches — two thirds of its load time.
 */

let undici

// esbuild bundles these requires; the modules run at the first call.
const load = () => {
  if (undici === undefined) {
    const Agent = require("undici/lib/dispatcher/agent")
    // As undici's index.js does: the request API (`request`, `stream` …) on every dispatcher.
    Object.assign(require("undici/lib/dispatcher/dispatcher").prototype, require("undici/lib/api"))
    undici = { Agent, getGlobalDispatcher: require("undici/lib/global").getGlobalDispatcher }
  }
  return undici
}

export class Agent {
  #agent

  request(options, handler) {
    this.#agent ??= new (load().Agent)()
    return handler === undefined ? this.#agent.request(options) : this.#agent.request(options, handler)
  }

  destroy() {
    return this.#agent === undefined ? Promise.resolve() : this.#agent.destroy()
  }
}

export const getGlobalDispatcher = () => load().getGlobalDispatcher()
