// Runs every benchmark (or the ones named on the command line) and writes bench/results/<name>.json
// plus bench/results/SUMMARY.md.
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Bench, BenchResult } from './harness.js';

const here = dirname(fileURLToPath(import.meta.url));
const resultsDir = join(here, 'results');

async function loadBenches(): Promise<Bench[]> {
  const files = (await readdir(here)).filter((f) => f.endsWith('.bench.ts')).sort();
  const benches: Bench[] = [];
  for (const f of files) {
    const mod = (await import(join(here, f))) as { bench: Bench };
    benches.push(mod.bench);
  }
  return benches;
}

function fmt(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(n < 10 ? 3 : 1);
}

async function main(): Promise<void> {
  const wanted = process.argv.slice(2);
  const benches = (await loadBenches()).filter((b) => wanted.length === 0 || wanted.includes(b.name));
  await mkdir(resultsDir, { recursive: true });
  const all: BenchResult[] = [];
  for (const b of benches) {
    console.log(`bench ${b.name} ...`);
    const out = await b.run();
    const results = Array.isArray(out) ? out : [out];
    for (const r of results) {
      all.push(r);
      await writeFile(
        join(resultsDir, `${r.name}.json`),
        JSON.stringify({ ...r, at: new Date().toISOString() }, null, 2) + '\n',
      );
      console.log(
        `  ${r.name}: ${JSON.stringify(r.metrics)}${r.ratio === undefined ? '' : ` ratio=${fmt(r.ratio)}`} (${r.target}: ${r.met ? 'met' : 'NOT met'})`,
      );
    }
  }
  const lines = [
    '# wxsub benchmark summary',
    '',
    `Run at ${new Date().toISOString()} on ${process.version}, ${(await import('node:os')).cpus().length} cores.`,
    '',
    '| benchmark | figures | ratio | target | met |',
    '|---|---|---|---|---|',
    ...all.map(
      (r) =>
        `| ${r.name} | ${Object.entries(r.metrics)
          .map(([k, v]) => `${k}=${fmt(v)}`)
          .join(
            ', ',
          )} | ${r.ratio === undefined ? '—' : fmt(r.ratio)} | ${r.target} | ${r.met ? 'yes' : 'no'} |`,
    ),
    '',
    ...all.filter((r) => r.notes).map((r) => `- **${r.name}**: ${r.notes}`),
    '',
  ];
  await writeFile(join(resultsDir, 'SUMMARY.md'), lines.join('\n'));
  console.log(`wrote ${join(resultsDir, 'SUMMARY.md')}`);
}

await main();
process.exit(0);
