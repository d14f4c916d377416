/**
 * The lines sluice says on stderr beside the progress view (warnings, notices). On a terminal
 * the view is redrawn in place by moving the cursor up over what it drew last: a line written
 * under it unannounced would be erased by the next redraw and leave a stale line of the view
 * behind. So while the view is on screen it takes these lines and prints them above itself.
 */
let diverted: ((line: string) => void) | undefined

/** Writes one line (no newline in `line`) to stderr, or to the view on screen. */
export const say = (line: string): void => {
  if (diverted === undefined) process.stderr.write(line + "\n")
  else diverted(line)
}

/** Sends the lines to `to` until the returned function is called. */
export const divert = (to: (line: string) => void): (() => void) => {
  diverted = to
  return () => {
    if (diverted === to) diverted = undefined
  }
}
