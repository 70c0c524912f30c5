#!/usr/bin/env node
'use strict';
// first_event.js BODYFILE N NAME=PORT[|Name: value...]...: "first stream event" latency of
// `make bench` (the headers after the port are sent to that target only: the portkey target's).
// Sends N streamed chat completions to each target, one at a time, round-robin over the
// targets (so drift on a noisy machine hits all alike), over one keep-alive connection per
// target, and times each from writing the request to receiving the first SSE "data:" line.
// Prints one JSON line: {"NAME":{"n":N,"errors":E,"p50_us":..,"p90_us":..,"min_us":..},...}
const fs = require('node:fs');
const http = require('node:http');

const [bodyFile, nArg, ...targetArgs] = process.argv.slice(2);
const body = fs.readFileSync(bodyFile);
const N = +nArg || 200;
const targets = targetArgs.map((a) => {
  const [name, rest] = [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)];
  const [port, ...hl] = rest.split('|');
  const extra = Object.fromEntries(hl.map((h) => [h.slice(0, h.indexOf(':')).trim(), h.slice(h.indexOf(':') + 1).trim()]));
  return { name, port: +port, extra, agent: new http.Agent({ keepAlive: true, maxSockets: 1 }), t: [], errors: 0 };
});

function once(tg) {
  return new Promise((resolve) => {
    let t0 = 0n;
    let first = null;
    let seen = '';
    const req = http.request({
      host: '127.0.0.1', port: tg.port, method: 'POST', path: '/v1/chat/completions', agent: tg.agent,
      headers: { 'content-type': 'application/json', 'content-length': body.length,
        authorization: 'Bearer sk-bench', 'x-tenant-id': 'bench', ...tg.extra },
    }, (res) => {
      res.on('data', (c) => {
        if (first !== null) return;
        seen += c.toString('latin1');
        if (/(^|\n)data:/.test(seen)) first = process.hrtime.bigint();
        else if (seen.length > 65536) seen = seen.slice(-16);
      });
      res.on('end', () => {
        if (res.statusCode !== 200 || first === null) { tg.errors++; resolve(); return; }
        tg.t.push(Number(first - t0) / 1000);
        resolve();
      });
      res.on('error', () => { tg.errors++; resolve(); });
    });
    req.setTimeout(10000, () => req.destroy(new Error('timeout')));
    req.on('error', () => { tg.errors++; resolve(); });
    t0 = process.hrtime.bigint();
    req.end(body);
  });
}

const pct = (a, p) => (a.length ? a[Math.min(a.length - 1, Math.floor((a.length * p) / 100))] : null);

(async () => {
  for (let i = 0; i < 10; i++) for (const tg of targets) await once(tg); // warm-up, connect
  for (const tg of targets) { tg.t = []; tg.errors = 0; }
  for (let i = 0; i < N; i++) for (const tg of targets) await once(tg);
  const out = {};
  for (const tg of targets) {
    const s = tg.t.slice().sort((a, b) => a - b);
    const r = (x) => (x === null ? null : Math.round(x));
    out[tg.name] = { n: s.length, errors: tg.errors, p50_us: r(pct(s, 50)), p90_us: r(pct(s, 90)), min_us: r(s[0] ?? null) };
    tg.agent.destroy();
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
})();
