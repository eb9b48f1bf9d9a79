// Shared shape of a benchmark: each bench/<name>.ts exports `bench` of this type; bench/run.ts runs them.

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
