/**
 * pg 8 warns once per process, through `util.deprecate`, when a client is handed a query while
 * another is running. @effect/sql-pg's cluster storage does that by design, so every worker
 * printed a DeprecationWarning that nobody running sluice can act on. Node prints warnings from
 * its own `warning` listener: this puts a filter in front of the listeners there are, so that
 * every other warning still prints as before.
 */
const pgQueryQueue = "Calling client.query() when the client is already executing a query"

let installed = false

export const quietPgQueryQueueWarning = (): void => {
  if (installed) return
  installed = true
  const listeners = process.listeners("warning")
  process.removeAllListeners("warning")
  process.on("warning", (warning) => {
    if (warning.name === "DeprecationWarning" && warning.message.startsWith(pgQueryQueue)) return
    for (const listener of listeners) listener(warning)
  })
}
