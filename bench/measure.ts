/**
 * Measuring child processes from the outside: wall time, peak RSS and CPU time of a child
 * (exact, from GNU time when /usr/bin/time exists; else sampled from /proc), RSS samples over
 * time, and the journal of a sluice run tailed as it grows — each event stamped with the time
 * the parent saw its line appear (events carry no timestamps of their own).
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { closeSync, createWriteStream, existsSync, openSync, readFileSync, readSync, statSync } from "node:fs"

export const TIME_BIN = "/usr/bin/time"
export const hasGnuTime = (() => {
  if (!existsSync(TIME_BIN)) return false
  try {
    execFileSync(TIME_BIN, ["-f", "%M", "true"], { stdio: "ignore" })
    return true
  } catch {
    return false
  }
})()

export const CLK_TCK = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100
  } catch {
    return 100
  }
})()

export interface ProcStatus {
  readonly rssKB: number
  readonly hwmKB: number
}

export const procStatus = (pid: number): ProcStatus | undefined => {
  try {
    const text = readFileSync(`/proc/${pid}/status`, "utf8")
    const rss = /VmRSS:\s+(\d+)/.exec(text)
    const hwm = /VmHWM:\s+(\d+)/.exec(text)
    if (rss === null || hwm === null) return undefined
    return { rssKB: Number(rss[1]), hwmKB: Number(hwm[1]) }
  } catch {
    return undefined
  }
}

/** utime + stime of a process, in seconds. */
export const procCpuSeconds = (pid: number): number | undefined => {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8")
    // Fields after the command name (which may hold spaces) start at ") ".
    const fields = text.slice(text.lastIndexOf(")") + 2).split(" ")
    // fields[0] is field 3 (state): utime is field 14, stime field 15.
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK
  } catch {
    return undefined
  }
}

/** Busy and total CPU seconds of the whole machine since boot (all cores), from /proc/stat. */
export const machineCpu = (): { busy: number; total: number } => {
  try {
    const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number)
    // user nice system idle iowait irq softirq steal
    const busy = f[0]! + f[1]! + f[2]! + f[5]! + f[6]! + (f[7] ?? 0)
    const total = busy + f[3]! + f[4]!
    return { busy: busy / CLK_TCK, total: total / CLK_TCK }
  } catch {
    return { busy: 0, total: 0 }
  }
}

/** Waits until the machine is quiet: under `threshold` of all cores busy for `seconds` in a row. */
export const waitQuiet = async (options: { threshold: number; seconds: number; timeoutS: number; say: (s: string) => void }) => {
  const start = performance.now()
  let quiet = 0
  let told = false
  let last = machineCpu()
  let lastBusy = 0
  while ((performance.now() - start) / 1000 < options.timeoutS) {
    await new Promise((r) => setTimeout(r, 1000))
    const now = machineCpu()
    lastBusy = now.total > last.total ? (now.busy - last.busy) / (now.total - last.total) : 0
    last = now
    quiet = lastBusy < options.threshold ? quiet + 1 : 0
    if (quiet >= options.seconds) return { waitedS: (performance.now() - start) / 1000, quiet: true, busy: lastBusy }
    if (!told && performance.now() - start > 3000) {
      options.say(`waiting for the machine to be quiet (other processes use ${(lastBusy * 100).toFixed(0)}% of the CPUs)…`)
      told = true
    }
  }
  options.say(`the machine did not get quiet within ${options.timeoutS} s; measuring anyway (busy ${(lastBusy * 100).toFixed(0)}%)`)
  return { waitedS: (performance.now() - start) / 1000, quiet: false, busy: lastBusy }
}

const childPid = (pid: number): number | undefined => {
  try {
    const text = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim()
    return text === "" ? undefined : Number(text.split(" ")[0])
  } catch {
    return undefined
  }
}

export interface JournalLine {
  /** ms since the child was spawned. */
  readonly t: number
  readonly tag: string
  readonly shard?: string
  readonly event: Record<string, unknown>
}

export interface Sample {
  readonly t: number
  readonly rssKB: number
}

export interface ChildSpec {
  readonly label: string
  readonly args: ReadonlyArray<string>
  readonly env?: Record<string, string>
  /** stderr (and stdout unless captured) go here. */
  readonly logFile: string
  /** Tail this journal; only lines after `journalFrom` bytes count. */
  readonly journal?: string
  readonly journalFrom?: number
  /** Checked every tick; returning true SIGKILLs the child (the node process itself). */
  readonly killWhen?: (journal: ReadonlyArray<JournalLine>) => boolean
  /** Another process to sample (the emulator): its CPU over the run and its peak RSS. */
  readonly observe?: number
}

export interface ChildResult {
  readonly label: string
  readonly wallMs: number
  readonly exitCode: number | null
  readonly signal: string | null
  readonly killedByUs: boolean
  /** Peak RSS of the measured node process, kB (GNU time %M, or the last VmHWM sampled). */
  readonly peakRssKB: number
  readonly peakRssSource: "gnu-time" | "proc-sampled"
  readonly cpuUserS: number | null
  readonly cpuSysS: number | null
  readonly samples: ReadonlyArray<Sample>
  readonly journal: ReadonlyArray<JournalLine>
  /** ms after spawn at which the journal file was first seen (null: never). */
  readonly journalSeenAt: number | null
  readonly stdout: string
  readonly observed: { readonly cpuS: number; readonly peakRssKB: number } | null
  /**
   * CPU time used during the run by processes other than the child, the observed process and
   * this one (other users of the machine), in cores on average: 0.5 = half a core was taken.
   */
  readonly foreignCores: number | null
}

const TICK_MS = 10
const SAMPLE_EVERY = 5 // ticks: RSS every 50 ms

/** Runs `node <args>` and measures it. */
export const runChild = (spec: ChildSpec): Promise<ChildResult> =>
  new Promise((resolve, reject) => {
    const log = createWriteStream(spec.logFile)
    const timeFile = `${spec.logFile}.time`
    const command = hasGnuTime ? TIME_BIN : process.execPath
    const args = hasGnuTime
      ? ["-f", "%M %U %S %e %x", "-o", timeFile, process.execPath, ...spec.args]
      : [...spec.args]
    const machine0 = machineCpu()
    const self0 = process.cpuUsage()
    const start = performance.now()
    const child: ChildProcess = spawn(command, args, {
      env: { ...process.env, ...spec.env },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    child.stdout!.on("data", (d: Buffer) => {
      stdout += d.toString()
      log.write(d)
    })
    child.stderr!.on("data", (d: Buffer) => log.write(d))

    let nodePid: number | undefined = hasGnuTime ? undefined : child.pid
    const samples: Array<Sample> = []
    const journal: Array<JournalLine> = []
    let journalSeenAt: number | null = null
    let journalOffset = spec.journalFrom ?? 0
    let pending = ""
    let lastHwm = 0
    let killedByUs = false
    let ticks = 0
    const observeCpu0 = spec.observe === undefined ? undefined : procCpuSeconds(spec.observe)
    let observedPeak = 0

    const readJournal = (now: number) => {
      if (spec.journal === undefined) return
      let size: number
      try {
        size = statSync(spec.journal).size
      } catch {
        return
      }
      if (journalSeenAt === null) journalSeenAt = now
      if (size <= journalOffset) return
      const fd = openSync(spec.journal, "r")
      const buf = Buffer.allocUnsafe(size - journalOffset)
      const n = readSync(fd, buf, 0, buf.length, journalOffset)
      closeSync(fd)
      journalOffset += n
      pending += buf.subarray(0, n).toString("utf8")
      let nl = pending.indexOf("\n")
      while (nl !== -1) {
        const line = pending.slice(0, nl)
        pending = pending.slice(nl + 1)
        if (line.trim() !== "") {
          try {
            const event = JSON.parse(line) as Record<string, unknown>
            journal.push({
              t: now,
              tag: String(event["_tag"]),
              ...(typeof event["shard"] === "string" ? { shard: event["shard"] } : {}),
              event
            })
          } catch {
            // a torn line (the child was killed mid-write)
          }
        }
        nl = pending.indexOf("\n")
      }
    }

    const tick = () => {
      const now = performance.now() - start
      ticks++
      if (nodePid === undefined && child.pid !== undefined) nodePid = childPid(child.pid)
      readJournal(now)
      if (ticks % SAMPLE_EVERY === 0 || ticks === 1) {
        if (nodePid !== undefined) {
          const s = procStatus(nodePid)
          if (s !== undefined) {
            samples.push({ t: now, rssKB: s.rssKB })
            lastHwm = Math.max(lastHwm, s.hwmKB)
          }
        }
        if (spec.observe !== undefined) {
          const o = procStatus(spec.observe)
          if (o !== undefined) observedPeak = Math.max(observedPeak, o.rssKB)
        }
      }
      if (!killedByUs && spec.killWhen !== undefined && nodePid !== undefined && spec.killWhen(journal)) {
        killedByUs = true
        try {
          process.kill(nodePid, "SIGKILL")
        } catch {
          // already gone
        }
      }
    }
    const timer = setInterval(tick, TICK_MS)
    child.on("error", (e) => {
      clearInterval(timer)
      reject(e)
    })
    child.on("exit", (code, signal) => {
      const wallMs = performance.now() - start
      clearInterval(timer)
      readJournal(wallMs)
      let peakRssKB = lastHwm
      let cpuUserS: number | null = null
      let cpuSysS: number | null = null
      let exitCode = code
      let sig: string | null = signal
      let peakRssSource: ChildResult["peakRssSource"] = "proc-sampled"
      if (hasGnuTime && existsSync(timeFile)) {
        const lines = readFileSync(timeFile, "utf8").trim().split("\n")
        const last = lines[lines.length - 1]!.trim().split(/\s+/)
        const m = /terminated by signal (\d+)/.exec(lines.join("\n"))
        peakRssKB = Number(last[0])
        peakRssSource = "gnu-time"
        cpuUserS = Number(last[1])
        cpuSysS = Number(last[2])
        if (m !== null) {
          sig = Number(m[1]) === 9 ? "SIGKILL" : `signal ${m[1]}`
          exitCode = null
        } else exitCode = Number(last[4])
      }
      const observed =
        spec.observe === undefined
          ? null
          : { cpuS: (procCpuSeconds(spec.observe) ?? 0) - (observeCpu0 ?? 0), peakRssKB: observedPeak }
      const machine1 = machineCpu()
      const self = process.cpuUsage(self0)
      const foreignCores =
        cpuUserS === null
          ? null
          : Math.max(
              0,
              (machine1.busy - machine0.busy - cpuUserS - (cpuSysS ?? 0) - (observed?.cpuS ?? 0) - (self.user + self.system) / 1e6) /
                (wallMs / 1000)
            )
      log.end()
      resolve({
        label: spec.label,
        wallMs,
        exitCode,
        signal: sig,
        killedByUs,
        peakRssKB,
        peakRssSource,
        cpuUserS,
        cpuSysS,
        samples,
        journal,
        journalSeenAt,
        stdout,
        observed,
        foreignCores
      })
    })
  })

/** Peak of the RSS samples within [from, to] ms. */
export const peakIn = (samples: ReadonlyArray<Sample>, from: number, to: number): number => {
  let peak = 0
  for (const s of samples) if (s.t >= from && s.t <= to && s.rssKB > peak) peak = s.rssKB
  return peak
}

/** Counts lines of a file without holding it: newline bytes, 1 MiB at a time. */
export const countLines = (path: string): number => {
  const fd = openSync(path, "r")
  const buf = Buffer.allocUnsafe(1 << 20)
  let n = 0
  for (;;) {
    const read = readSync(fd, buf, 0, buf.length, null)
    if (read === 0) break
    for (let i = 0; i < read; i++) if (buf[i] === 10) n++
  }
  closeSync(fd)
  return n
}

/** Number of distinct `"custom_id":"…"` values of a sink file, and its line count. */
export const distinctCustomIds = (path: string): { lines: number; distinct: number } => {
  const fd = openSync(path, "r")
  const buf = Buffer.allocUnsafe(1 << 22)
  const ids = new Set<string>()
  let lines = 0
  let pending = ""
  const marker = '"custom_id":"'
  const onLine = (line: string) => {
    lines++
    const at = line.indexOf(marker)
    if (at === -1) return
    const from = at + marker.length
    ids.add(line.slice(from, line.indexOf('"', from)))
  }
  for (;;) {
    const read = readSync(fd, buf, 0, buf.length, null)
    if (read === 0) break
    const text = pending + buf.subarray(0, read).toString("utf8")
    let start = 0
    let nl = text.indexOf("\n")
    while (nl !== -1) {
      onLine(text.slice(start, nl))
      start = nl + 1
      nl = text.indexOf("\n", start)
    }
    pending = text.slice(start)
  }
  if (pending.length > 0) onLine(pending)
  closeSync(fd)
  return { lines, distinct: ids.size }
}
