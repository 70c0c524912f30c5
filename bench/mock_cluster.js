#!/usr/bin/env node
'use strict';
// mock_cluster.js N ARGS...: runs N copies of tests/mock/upstream.js ARGS with node's cluster
// module, so they share one HTTPS and one HTTP port (cluster hands every worker the same port
// for --port 0). Prints the first worker's {"https":P,"http":P,"pid":N} line once all N
// listen. Used by bench/run.sh when the machine has cores to spare for the mock.
const cluster = require('node:cluster');
const path = require('node:path');

const n = Math.max(1, +process.argv[2] || 1);
cluster.setupPrimary({ exec: path.join(__dirname, '..', 'tests', 'mock', 'upstream.js'),
  args: process.argv.slice(3), silent: true });
let ready = 0;
let line = null;
for (let i = 0; i < n; i++) {
  const w = cluster.fork();
  let buf = '';
  w.process.stdout.on('data', (c) => {
    buf += c;
    if (!buf.includes('\n')) return;
    const o = JSON.parse(buf.split('\n')[0]);
    if (!line) line = JSON.stringify({ https: o.https, http: o.http, pid: process.pid });
    if (++ready === n) process.stdout.write(`${line}\n`);
  });
  w.process.stderr.pipe(process.stderr);
}
cluster.on('exit', () => { if (ready < n) process.exit(1); });
const stop = () => { for (const w of Object.values(cluster.workers)) w.process.kill('SIGTERM'); setTimeout(() => process.exit(0), 200); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
