// Shared shape of a benchmark: each bench/<name>.ts exports `bench` of this type; bench/run.ts runs them.
import { readdirSync, readFileSync } from 'node:fs';

/** What one benchmark reports. `ratio` compares wxsub with a baseline measured in the same run. */
export type BenchResult = {
  name: string;
  /** Raw figures, e.g. { sdkPerSec: 5200, baselinePerSec: 6100 }. Units in the key name. */
  metrics: Record<string, number>;
  /** wxsub / baseline (higher is better), when the benchmark has a baseline. */
  ratio?: number;
  /** The target in words, e.g. "ratio >= 0.8". */
  target: string;
  /** Whether the target was met in this run. */
  met: boolean;
  /** Free-form notes (setup, sizes). */
  notes?: string;
};

/** A runnable benchmark. */
export type Bench = { name: string; run(): Promise<BenchResult | BenchResult[]> };

/** Runs `fn` `count` times with at most `concurrency` in flight; returns elapsed ms. */
export async function runConcurrent(
  count: number,
  concurrency: number,
  fn: (i: number) => Promise<unknown>,
): Promise<number> {
  let next = 0;
  const start = performance.now();
  const worker = async () => {
    while (next < count) {
      const i = next++;
      await fn(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return performance.now() - start;
}

/** The p-th percentile (0..100) of a list of numbers. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx] as number;
}

/** Linux clock ticks per second, as /proc reports CPU times (sysconf(_SC_CLK_TCK); 100 on every Linux we run on). */
const CLK_TCK = 100;

/**
 * CPU time (user + system, all threads) a process has used so far, in ms, from /proc/<pid>/stat; NaN when the
 * process is gone or /proc is not Linux's. Resolution 10 ms: use it over windows of seconds.
 */
export function processCpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may itself hold spaces: state is field 3.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
  } catch {
    return Number.NaN;
  }
}

/** CPU time (ms) of every live process whose command name is `comm` (e.g. the `postgres` backends), by pid. */
export function commandCpuByPid(comm: string): Map<number, number> {
  const byPid = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, 'utf8').trim() !== comm) continue;
    } catch {
      continue; // exited meanwhile
    }
    const ms = processCpuMs(Number(entry));
    if (!Number.isNaN(ms)) byPid.set(Number(entry), ms);
  }
  return byPid;
}

/**
 * CPU time (ms) the processes named `comm` used since `before` (a {@link commandCpuByPid} reading): the growth of
 * each one alive now, counting new ones from zero. A process that exited in between takes its share along.
 */
export function commandCpuSinceMs(comm: string, before: Map<number, number>): number {
  let total = 0;
  for (const [pid, ms] of commandCpuByPid(comm)) total += ms - (before.get(pid) ?? 0);
  return total;
}

/** Machine-wide CPU tick counters (/proc/stat): all ticks and the ones the hypervisor stole. */
export function machineTicks(): { total: number; steal: number } {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    return { total: v.slice(0, 8).reduce((a, b) => a + b, 0), steal: v[7] ?? 0 };
  } catch {
    return { total: Number.NaN, steal: Number.NaN };
  }
}

/** Share (%) of the machine's CPU time the hypervisor stole between two {@link machineTicks} readings. */
export function stealPercent(
  before: { total: number; steal: number },
  after: { total: number; steal: number },
) {
  return (100 * (after.steal - before.steal)) / Math.max(1, after.total - before.total);
}
