/**
 * What @effect/platform-node's HTTP client (internal/httpClientUndici.js) takes from its
 * `Undici.js` — `Agent` and `getGlobalDispatcher` — in the bundled status program only
 * (scripts/bundle-status.mjs puts this file in its place). The client makes its Agent when the
 * program starts; loading undici (~1 MB, a dozen node:* modules) took ~15% of a status that
 * never asks the provider (`--no-refresh`, a finished run). Here the Agent is undici's own,
 * made at its first request; a program that sends none never loads undici.
 */

let undici

// esbuild bundles the require; the module runs at the first call.
const load = () => (undici ??= require("undici"))

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
