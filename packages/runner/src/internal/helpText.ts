/**
 * The help's layout, in plain TypeScript: no Effect, no @effect/cli. help.ts reads the command
 * definitions into a `ProgramHelp`; this module lays it out. The build stores the same
 * `ProgramHelp` in dist/help.json (scripts/write-help.mjs), so that QuickAnswer.ts answers
 * `sluice --help` before any Effect module loads — with this very code, at any terminal width.
 */

/** Whether to style output for `stream`: FORCE_COLOR, then NO_COLOR (https://no-color.org), then a terminal. */
export const colorEnabled = (stream: { readonly isTTY?: boolean }, env: NodeJS.ProcessEnv = process.env): boolean => {
  const force = env["FORCE_COLOR"]
  if (force !== undefined && force !== "") return force !== "0" && force !== "false"
  if (env["NO_COLOR"] !== undefined && env["NO_COLOR"] !== "") return false
  if (env["TERM"] === "dumb") return false
  return stream.isTTY === true
}

/** True when the arguments (after the program) ask for help: `-h` or `--help` before any `--`. */
export const requested = (args: ReadonlyArray<string>): boolean => {
  for (const arg of args) {
    if (arg === "--") return false
    if (arg === "--help" || arg === "-h") return true
  }
  return false
}

export interface Entry {
  readonly term: string
  readonly text: string
}

/** What the help shows of one command. */
export interface CommandHelp {
  readonly name: string
  /** Each usage line as @effect/cli enumerates it, without the program: `run [--json] … <pipeline.ts>`. */
  readonly usage: ReadonlyArray<string>
  readonly description: string
  readonly arguments: ReadonlyArray<Entry>
  readonly options: ReadonlyArray<Entry>
}

export interface ProgramHelp {
  readonly name: string
  readonly version: string
  readonly description: string
  readonly commands: ReadonlyArray<CommandHelp>
}

export interface RenderOptions {
  readonly color: boolean
  /** Wrap at this many columns. */
  readonly width: number
}

/** How the help is rendered on `stdout`: styled as colorEnabled says, wrapped to the terminal (100 columns off one, 120 at most). */
export const optionsFor = (stdout: { readonly isTTY?: boolean; readonly columns?: number }, env: NodeJS.ProcessEnv = process.env): RenderOptions => ({
  color: colorEnabled(stdout, env),
  width: Math.min(stdout.columns ?? 100, 120)
})

/** Words of `text` in lines of at most `width` columns (a longer word gets a line of its own). */
const wrap = (text: string, width: number): Array<string> => {
  const lines: Array<string> = []
  let line = ""
  for (const word of text.split(/\s+/).filter((w) => w !== "")) {
    if (line !== "" && line.length + 1 + word.length > width) {
      lines.push(line)
      line = word
    } else {
      line = line === "" ? word : `${line} ${word}`
    }
  }
  if (line !== "") lines.push(line)
  return lines
}

/** `term` in a column, `text` wrapped beside it; a long term puts the text on the next line. */
const table = (entries: ReadonlyArray<Entry>, width: number): Array<string> => {
  const column = Math.min(30, Math.max(...entries.map((e) => e.term.length)) + 4)
  const out: Array<string> = []
  for (const { term, text } of entries) {
    const lines = wrap(text, Math.max(20, width - column))
    const first = `  ${term}`
    if (first.length + 2 <= column && lines.length > 0) {
      out.push(first.padEnd(column) + lines[0])
      for (const l of lines.slice(1)) out.push(" ".repeat(column) + l)
    } else {
      out.push(first)
      for (const l of lines) out.push(" ".repeat(column) + l)
    }
  }
  return out
}

/** The usage lines of a command, prefixed with the program: `sluice run [--run-dir directory] … <pipeline.ts>`. */
const usage = (program: string, command: CommandHelp, width: number): Array<string> =>
  command.usage.flatMap((text) => {
    // Wrap between bracketed groups, never inside one.
    const parts = text.match(/\[[^\]]*\]|<[^>]*>|\S+/g) ?? []
    const lead = `${program} ${parts[0] ?? ""}`
    const indent = " ".repeat(Math.min(lead.length + 1, 24))
    const lines: Array<string> = []
    let line = lead
    for (const part of parts.slice(1)) {
      if (line.length + 1 + part.length > width && line.trim() !== "") {
        lines.push(line)
        line = indent + part
      } else {
        line = `${line} ${part}`
      }
    }
    lines.push(line)
    return lines
  })

const styled = (options: RenderOptions) => (header: string): string => (options.color ? `\x1b[1m${header}\x1b[0m` : header)

/** Help for the program (no command named) or for the command `args` name first. */
export const render = (program: ProgramHelp, args: ReadonlyArray<string>, options: RenderOptions): string => {
  const bold = styled(options)
  const names = new Map(program.commands.map((c) => [c.name, c]))
  const command = args.map((a) => names.get(a)).find((c) => c !== undefined)
  const width = Math.max(60, options.width)
  if (command !== undefined) {
    const help: Array<string> = [bold("Usage:"), ...usage(program.name, command, width).map((l) => `  ${l}`), ""]
    if (command.description !== "") help.push(...wrap(command.description, width), "")
    if (command.arguments.length > 0) help.push(bold("Arguments:"), ...table(command.arguments, width), "")
    const builtIn: Entry = { term: "-h, --help", text: "show this help" }
    help.push(bold("Options:"), ...table([...command.options, builtIn], width))
    return help.join("\n")
  }
  const commands = program.commands.map((c) => {
    const positional = c.arguments.map((a) => a.term).join(" ")
    return { term: `${program.name} ${c.name}${positional === "" ? "" : ` ${positional}`}`, text: c.description }
  })
  return [
    `${program.name} ${program.version}: ${program.description}`,
    "",
    bold("Usage:"),
    `  ${program.name} <command> [options]`,
    "",
    bold("Commands:"),
    ...table(commands, width),
    "",
    bold("Options:"),
    ...table(
      [
        { term: "-h, --help", text: "show help: of the program, or of a command (`sluice run --help`)" },
        { term: "--version", text: "print the version" },
        { term: "--log-level LEVEL", text: "all, trace, debug, info, warning, error, fatal or none (default info)" }
      ],
      width
    ),
    "",
    `Run \`${program.name} <command> --help\` for a command's arguments and options.`
  ].join("\n")
}
