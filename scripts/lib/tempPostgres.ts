/**
 * A throwaway PostgreSQL server for tests and examples: `initdb` in a new temporary
 * directory, started with `pg_ctl` on a free loopback port (trust authentication, fsync
 * off), stopped and removed by `stop()`. initdb refuses to run as root, so as root the
 * server runs as the `postgres` user through `runuser`.
 *
 * `skipReason` says why no server can be started here (no server binaries, or root without
 * runuser / a postgres user); callers skip or fail with it.
 */
import { execFileSync } from "node:child_process"
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"

/** The directory holding initdb and pg_ctl: Debian's layout, else whatever PATH finds. */
const findServerBin = (): string | undefined => {
  const root = "/usr/lib/postgresql"
  if (existsSync(root)) {
    for (const version of readdirSync(root).sort((a, b) => Number(b) - Number(a))) {
      const bin = join(root, version, "bin")
      if (existsSync(join(bin, "initdb")) && existsSync(join(bin, "pg_ctl"))) return bin
    }
  }
  try {
    const initdb = execFileSync("sh", ["-c", "command -v initdb"], { encoding: "utf8" }).trim()
    if (initdb !== "" && existsSync(join(initdb, "..", "pg_ctl"))) return join(initdb, "..")
  } catch {
    // not on PATH
  }
  return undefined
}

const isRoot = process.getuid?.() === 0

/** The uid of the `postgres` user, when runuser and that user exist. */
const postgresUid = (): number | undefined => {
  try {
    const out = execFileSync("sh", ["-c", "command -v runuser >/dev/null && id -u postgres"], { encoding: "utf8" })
    const uid = Number(out.trim())
    return Number.isSafeInteger(uid) ? uid : undefined
  } catch {
    return undefined
  }
}

/** Where initdb and pg_ctl are, or undefined when PostgreSQL's server is not installed. */
export const serverBin: string | undefined = findServerBin()

const serverUid: number | undefined = isRoot ? postgresUid() : undefined

/** Why `start` cannot work on this machine, or undefined when it can. */
export const skipReason: string | undefined = serverBin === undefined
  ? "PostgreSQL server binaries (initdb, pg_ctl) not found; install postgresql (e.g. apt-get install postgresql)"
  : isRoot && serverUid === undefined
  ? "running as root without runuser or a postgres user, so no PostgreSQL server can be started"
  : undefined

/** A TCP port nobody listens on at the moment, on 127.0.0.1. */
export const freePort = (): Promise<number> =>
  new Promise<number>((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => (typeof address === "object" && address !== null ? resolve(address.port) : reject(new Error("no port"))))
    })
  })

export interface TempPostgres {
  /** `postgres://postgres@127.0.0.1:<port>/postgres` (trust authentication, no password). */
  readonly url: string
  readonly host: "127.0.0.1"
  readonly port: number
  /** The temporary directory: the data directory, the unix socket and `server.log`. */
  readonly dir: string
  /** Stops the server and removes its directory; later calls do nothing. */
  readonly stop: () => void
}

/** Runs one of the server's programs, as the `postgres` user when we are root. */
const asServerUser = (command: string, args: ReadonlyArray<string>) => {
  const program = join(serverBin!, command)
  return isRoot
    ? execFileSync("runuser", ["-u", "postgres", "--", program, ...args], { stdio: "pipe" })
    : execFileSync(program, [...args], { stdio: "pipe" })
}

/** The message of a failed execFileSync, with the program's stderr. */
const describe = (e: unknown): string => {
  const stderr = (e as { stderr?: Buffer | string } | null)?.stderr
  const text = stderr === undefined ? "" : String(stderr).trim()
  const message = e instanceof Error ? e.message.split("\n")[0]! : String(e)
  return text === "" ? message : `${message}\n${text}`
}

/** Initialises and starts a server in a new temporary directory. Throws `skipReason` if it cannot. */
export const start = async (options: { readonly prefix?: string } = {}): Promise<TempPostgres> => {
  if (skipReason !== undefined) throw new Error(skipReason)
  const dir = mkdtempSync(join(tmpdir(), options.prefix ?? "sluice-pg-"))
  const data = join(dir, "data")
  let initialised = false
  let stopped = false
  const stop = () => {
    if (stopped) return
    stopped = true
    try {
      if (initialised) asServerUser("pg_ctl", ["-D", data, "-m", "fast", "-w", "stop"])
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }
  try {
    if (serverUid !== undefined) chownSync(dir, serverUid, -1)
    const port = await freePort()
    asServerUser("initdb", ["-D", data, "-A", "trust", "-U", "postgres", "--no-sync"])
    initialised = true
    asServerUser("pg_ctl", [
      "-D",
      data,
      "-l",
      join(dir, "server.log"),
      "-o",
      `-p ${port} -k ${dir} -h 127.0.0.1 -c fsync=off`,
      "-w",
      "start"
    ])
    return { url: `postgres://postgres@127.0.0.1:${port}/postgres`, host: "127.0.0.1", port, dir, stop }
  } catch (e) {
    const log = join(dir, "server.log")
    const tail = existsSync(log) ? `\nserver.log:\n${readFileSync(log, "utf8").split("\n").slice(-15).join("\n")}` : ""
    const message = `cannot start a temporary PostgreSQL server in ${dir}: ${describe(e)}${tail}`
    try {
      stop()
    } catch {
      // pg_ctl stop fails when the server never came up; the directory is removed either way.
    }
    throw new Error(message)
  }
}
