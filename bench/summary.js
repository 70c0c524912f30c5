#!/usr/bin/env node
'use strict';
// summary.js DIR: the table and the targets of `make bench`, from what bench/run.sh left in DIR:
//   results.jsonl     one line per wrk run: {size,stream,conns,target,utime,stime,redis_ticks,
//                     redis_cpu_us,redis_cmd_us,rss_kb,wrk:{...}} (redis_*_us: INFO cpu, commandstats)
//   first_event.json  {direct|nginx|tollgate[|portkey]: {n,errors,p50_us,p90_us,min_us}}
//   meta.json         {ncpu,other,threads,mock_workers,duration,warmup,clk_tck,settled,records,unsent,journaled,...}
// Writes DIR/verdict (PASS | MISS) and DIR/cpu_miss: per body size, the row where tollgate's
// CPU/req ratio is worst over its limit ("SIZE STREAM CONNS" lines), for run.sh's perf profile.
const fs = require('node:fs');
const path = require('node:path');

const dir = process.argv[2];
const meta = JSON.parse(fs.readFileSync(path.join(dir, 'meta.json'), 'utf8'));
const runs = fs.readFileSync(path.join(dir, 'results.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
const fe = JSON.parse(fs.readFileSync(path.join(dir, 'first_event.json'), 'utf8'));

// portkey: the Portkey gateway, when the run had it (BENCH_PORTKEY)
const TARGETS = ['direct', 'nginx', 'tollgate', 'portkey'].filter((t) => runs.some((r) => r.target === t));
// issue 10: CPU/req at most 2x nginx's for 1 KB bodies, 2.5x for 100 KB
const LIMIT = { cpu: { '1k': 2.0, '100k': 2.5 }, rps: 0.7, firstEventUs: 200, rssKb: 64 * 1024, redisUs: 15 };
const cpuLimit = (size) => LIMIT.cpu[size] ?? 2.0;
const usPerTick = 1e6 / meta.clk_tck;

const median = (a) => {
  const s = a.filter((x) => Number.isFinite(x)).sort((x, y) => x - y);
  if (!s.length) return NaN;
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const f = (x, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');
const pad = (s, n) => String(s).padStart(n);
const padr = (s, n) => String(s).padEnd(n);
const mark = (ok) => (ok ? 'PASS' : 'MISS');

// one entry per run, with what the table shows
function measure(r) {
  const w = r.wrk;
  const secs = w.duration_us / 1e6;
  const errors = w.err_connect + w.err_read + w.err_write + w.err_status + w.err_timeout;
  const ok = Math.max(0, w.requests - w.err_status);
  const proxied = r.target !== 'direct';
  const cpuUs = (r.utime + r.stime) * usPerTick;
  return {
    rps: w.requests / secs,
    p50: w.p50_us / 1000,
    p99: w.p99_us / 1000,
    errors,
    cpuPerReq: proxied && ok ? cpuUs / ok : NaN,
    sysShare: proxied && r.utime + r.stime ? r.stime / (r.utime + r.stime) : NaN,
    core: proxied ? (cpuUs / 1e6 / secs) * 100 : NaN,
    // redis-server CPU (INFO cpu, user + sys) per request; older result files: /proc ticks
    redisPerReq: r.target === 'tollgate' && ok
      ? (r.redis_cpu_us !== undefined ? r.redis_cpu_us : r.redis_ticks * usPerTick) / ok : NaN,
    redisCmdPerReq: r.target === 'tollgate' && ok && r.redis_cmd_us !== undefined ? r.redis_cmd_us / ok : NaN,
    rssMb: proxied ? r.rss_kb / 1024 : NaN,
  };
}

const rows = [];
for (const r of runs) {
  const key = `${r.size}|${r.stream}|${r.conns}`;
  let row = rows.find((x) => x.key === key);
  if (!row) { row = { key, size: r.size, stream: r.stream, conns: r.conns, t: {} }; rows.push(row); }
  row.t[r.target] = measure(r);
}

const out = [];
out.push(`tollgate bench: ${meta.ncpu} cores; nginx (1 worker), tollgate (workers = 1)${TARGETS.includes('portkey') ? ' and the Portkey gateway (1 node process)' : ''} pinned to core 0; `
  + `wrk (${meta.threads} thread${meta.threads > 1 ? 's' : ''}), mock (${meta.mock_workers} node process${meta.mock_workers > 1 ? 'es' : ''}) `
  + `and redis-server on core(s) ${meta.other}; each cell: one ${meta.warmup} s warm-up + one ${meta.duration} s wrk run.`);
out.push('cpu: proxy process utime+stime over the run / 2xx responses (sys%: share in the kernel); core%: of core 0;');
out.push('rss: VmRSS after the run (nginx: the worker); redis: redis-server CPU us per request (INFO cpu; tollgate only, not in its cpu).');
out.push(`tollgate: metering on, records to a file, Redis ${meta.caps ? 'admission (caps that never bind) and settlement' : 'settlement only (no caps)'} per request.`);
out.push('');
const hdr = `${padr('body  mode  conns', 18)}${padr('target', 9)}${pad('req/s', 8)}${pad('p50 ms', 8)}${pad('p99 ms', 8)}`
  + `${pad('errors', 7)}${pad('cpu us/req', 11)}${pad('sys%', 5)}${pad('core%', 6)}${pad('redis', 6)}${pad('rss MB', 7)}`
  + `  ${pad('/nginx cpu', 12)}  ${pad('/nginx req/s', 14)}`;
out.push(hdr);
out.push('-'.repeat(hdr.length));

const cpuRatios = [];
const rpsRatios = [];
const pkRatios = []; // tollgate CPU/req over portkey's, per row
let errorsSeen = 0;
const unsaturated = [];
for (const row of rows) {
  const label = `${padr(row.size, 6)}${padr(row.stream ? 'sse' : 'json', 6)}${padr(row.conns, 6)}`;
  const ng = row.t.nginx;
  const tg = row.t.tollgate;
  const cpuRatio = tg && ng ? tg.cpuPerReq / ng.cpuPerReq : NaN;
  const rpsRatio = tg && ng ? tg.rps / ng.rps : NaN;
  if (Number.isFinite(cpuRatio)) cpuRatios.push({ row, v: cpuRatio });
  if (Number.isFinite(rpsRatio) && row.conns === 16) rpsRatios.push({ row, v: rpsRatio });
  if (tg && row.t.portkey) pkRatios.push({ row, v: tg.cpuPerReq / row.t.portkey.cpuPerReq });
  if (ng && ng.core < 90) unsaturated.push(`${row.size} ${row.stream ? 'sse' : 'json'} ${row.conns}`);
  TARGETS.forEach((name, i) => {
    const m = row.t[name];
    if (!m) return;
    if (name !== 'direct') errorsSeen += m.errors;
    let line = `${padr(i === 0 ? label : '', 18)}${padr(name, 9)}${pad(f(m.rps), 8)}${pad(f(m.p50, 2), 8)}${pad(f(m.p99, 2), 8)}`
      + `${pad(m.errors, 7)}${pad(f(m.cpuPerReq), 11)}${pad(f(m.sysShare * 100), 5)}${pad(f(m.core), 6)}`
      + `${pad(name === 'tollgate' ? f(m.redisPerReq) : '', 6)}${pad(f(m.rssMb, 1), 7)}`;
    if (name === 'tollgate') {
      line += `  ${pad(`${f(cpuRatio, 2)} ${mark(cpuRatio <= cpuLimit(row.size))}`, 12)}`;
      line += `  ${pad(`${f(rpsRatio, 2)}${row.conns === 16 ? ` ${mark(rpsRatio >= LIMIT.rps)}` : '     '}`, 14)}`;
    } else if (name !== 'direct' && name !== 'nginx' && ng) { // a peer: its ratios, no target
      line += `  ${pad(`${f(m.cpuPerReq / ng.cpuPerReq, 2)}     `, 12)}  ${pad(`${f(m.rps / ng.rps, 2)}     `, 14)}`;
    }
    out.push(line.trimEnd());
  });
}

// first stream event
out.push('');
out.push(`first stream event (1 KB SSE request, sequential, keep-alive; request written -> first "data:" line; `
  + `${meta.first_event_n} per target, round-robin):`);
for (const name of TARGETS) {
  const e = fe[name] || {};
  out.push(`  ${padr(name, 9)} p50 ${pad(f(e.p50_us / 1000, 3), 7)} ms   p90 ${pad(f(e.p90_us / 1000, 3), 7)} ms   `
    + `min ${pad(f(e.min_us / 1000, 3), 7)} ms   (${e.n} ok, ${e.errors} errors)`);
}

// the targets
const worst = (list, cmp) => list.reduce((a, b) => (a && cmp(a.v, b.v) ? a : b), null);
const rowName = (r) => `${r.size} ${r.stream ? 'sse' : 'json'} ${r.conns} conns`;
const cpuWorst = worst(cpuRatios, (a, b) => a >= b);
const rpsWorst = worst(rpsRatios, (a, b) => a <= b);
const cpuOk = cpuRatios.length > 0 && cpuRatios.every((x) => x.v <= cpuLimit(x.row.size));
const rpsOk = rpsRatios.length > 0 && rpsRatios.every((x) => x.v >= LIMIT.rps);
const feDelta = (fe.tollgate?.p50_us ?? NaN) - (fe.nginx?.p50_us ?? NaN);
const feOk = feDelta <= LIMIT.firstEventUs && (fe.tollgate?.errors ?? 1) === 0;
const rssMax = Math.max(...rows.map((r) => r.t.tollgate?.rssMb ?? NaN));
const rssOk = rssMax <= LIMIT.rssKb / 1024;
const redis1k = rows.filter((r) => r.size === '1k' && r.t.tollgate).map((r) => ({ row: r, v: r.t.tollgate.redisPerReq }));
const redisWorst = worst(redis1k.filter((x) => Number.isFinite(x.v)), (a, b) => a >= b);
const redisCmd = median(rows.filter((r) => r.size === '1k' && r.t.tollgate).map((r) => r.t.tollgate.redisCmdPerReq));
const redisOk = redis1k.length > 0 && redis1k.every((x) => x.v <= LIMIT.redisUs);

out.push('');
out.push('targets (this run):');
const t = (text, detail, ok) => out.push(`  ${padr(text, 50)} ${padr(detail, 58)} ${mark(ok)}`);
t(`tollgate CPU/req <= ${LIMIT.cpu['1k']}x nginx (1k), ${LIMIT.cpu['100k']}x (100k)`,
  `worst ${f(cpuWorst?.v, 2)} (${cpuWorst ? rowName(cpuWorst.row) : '-'}), median ${f(median(cpuRatios.map((x) => x.v)), 2)}`, cpuOk);
t(`tollgate req/s >= ${LIMIT.rps}x nginx at 16 connections`,
  `worst ${f(rpsWorst?.v, 2)} (${rpsWorst ? rowName(rpsWorst.row) : '-'}), median ${f(median(rpsRatios.map((x) => x.v)), 2)}`, rpsOk);
t(`tollgate first event <= nginx + ${LIMIT.firstEventUs / 1000} ms (p50)`,
  `tollgate ${f(fe.tollgate?.p50_us / 1000, 3)} ms, nginx ${f(fe.nginx?.p50_us / 1000, 3)} ms (${feDelta >= 0 ? '+' : ''}${f(feDelta / 1000, 3)} ms)`, feOk);
t(`tollgate RSS after load <= ${LIMIT.rssKb / 1024} MB`, `max ${f(rssMax, 1)} MB over all runs`, rssOk);
t(`redis-server CPU per 1 KB request <= ${LIMIT.redisUs} us`,
  `worst ${f(redisWorst?.v, 1)} us (${redisWorst ? rowName(redisWorst.row) : '-'}); in commands ${f(redisCmd, 1)} us (median)`, redisOk);

// every request forwarded is settled: Redis's request count equals the records less those cut by wrk
// before they were forwarded, and none waits in the journal
const meterOk = Number(meta.settled) === meta.records - meta.unsent && !meta.journaled;
t('tollgate: every forwarded request settled',
  `${meta.settled} settled, ${meta.records - meta.unsent} forwarded, ${meta.journaled} journaled`, meterOk);

if (pkRatios.length) {
  out.push('');
  out.push(`tollgate against the Portkey gateway (no target): tollgate's CPU/req is ${f(median(pkRatios.map((x) => x.v)), 3)}x portkey's `
    + `(median of ${pkRatios.length} rows; ${pkRatios.map((x) => `${rowName(x.row)} ${f(x.v, 3)}`).join(', ')})`);
}

const verdict = cpuOk && rpsOk && feOk && rssOk && redisOk && meterOk ? 'PASS' : 'MISS';
out.push('');
out.push(`metering check: Redis settled ${meta.settled} requests for tenant "bench"; ${meta.records} records written, `
  + `${meta.records_ok} of them "ok" (the others: requests cut by wrk at the end of a run, settled all the same)`
  + `${meta.journaled ? `; ${meta.journaled} settlements still in the journal (Redis missed them under load)` : ''}.`);
if (errorsSeen) out.push(`warning: the proxies answered ${errorsSeen} requests with errors (see the errors column); their numbers are suspect.`);
if (unsaturated.length) {
  out.push(`note: nginx used < 90% of core 0 in ${unsaturated.length} row(s) (${unsaturated.join(', ')}): there req/s is bounded by`);
  out.push('      wrk + the mock on the other core(s), not by the proxy; CPU/req is the comparison that counts.');
}
out.push(`overall: ${verdict}`);
process.stdout.write(`${out.join('\n')}\n`);

fs.writeFileSync(path.join(dir, 'verdict'), verdict);
// the worst row over the CPU limit, per body size
const misses = [...new Set(rows.map((r) => r.size))].map((size) => worst(cpuRatios.filter((x) => x.row.size === size && x.v > cpuLimit(size)), (a, b) => a >= b)).filter(Boolean);
fs.writeFileSync(path.join(dir, 'cpu_miss'), misses.map((x) => `${x.row.size} ${x.row.stream} ${x.row.conns}\n`).join(''));
