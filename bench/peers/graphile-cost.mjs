// graphile-worker's side of bench/per-task-cost.sh: installs its schema and says
// "migrated" on stdout; on a line on stdin, enqueues N no-op jobs (1,000 per addJobs
// call, its bulk API) and says "enqueued"; on the next line, drains them with the
// tuned setting of ../shared/peers/graphile-worker (32
// concurrent jobs, a local queue of 500, batched completions), says "drained", and
// stops on a last line (so its CPU time can be read while it runs).
// The caller reads the server's WAL position between the phases.
//
//   node graphile-cost.mjs N        (DATABASE_URL: an empty database)
//
// Run from the directory graphile-worker is installed in, so that it resolves.
import { run, makeWorkerUtils, runMigrations, Logger } from "graphile-worker";
import pg from "pg";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";

const url = process.env.DATABASE_URL;
const n = Number(process.argv[2] ?? 20000);
const logger = new Logger(() => (level, message) => {
  if (level === "error" || level === "warning") console.error(`[${level}] ${message}`);
});

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
await runMigrations({ connectionString: url, logger });
console.log("migrated");
await lines.next();
const utils = await makeWorkerUtils({ connectionString: url, logger });
for (let i = 0; i < n; i += 1000) {
  const specs = [];
  for (let j = i; j < Math.min(n, i + 1000); j++) specs.push({ identifier: "noop", payload: { seq: j } });
  await utils.addJobs(specs);
}
await utils.release();
console.log("enqueued");
await lines.next();

let handled = 0;
const runner = await run({
  connectionString: url,
  logger,
  noHandleSignals: true,
  concurrency: 32,
  maxPoolSize: 34,
  preset: { worker: { localQueue: { size: 500 }, completeJobBatchDelay: 0 } },
  taskList: { noop: async () => void handled++ },
});
const check = new pg.Client({ connectionString: url });
await check.connect();
for (;;) {
  await sleep(10);
  if (handled < n) continue;
  const left = await check.query("select count(*)::int as n from graphile_worker.jobs");
  if (left.rows[0].n === 0) break;
}
await check.end();
console.log("drained");
await lines.next();
await runner.stop();
process.exit(0);
