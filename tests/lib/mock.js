'use strict';
// Starts tests/mock/upstream.js (HTTPS with the test CA, plus plain HTTP) and reads its
// request log: what the upstream actually received.

const fs = require('node:fs');
const path = require('node:path');
const { Proc } = require('./procs');
const { makeCerts } = require('./certs');
const { ROOT, ms, tmpDir, sleep } = require('./util');

const MOCK = path.join(ROOT, 'tests', 'mock', 'upstream.js');

class Mock {
  constructor(proc, ports, logFile, certs) {
    this.proc = proc;
    this.httpsPort = ports.https;
    this.httpPort = ports.http;
    this.logFile = logFile;
    this.certs = certs;
    this.url = `https://127.0.0.1:${ports.https}`;
  }

  // Every logged request, oldest first. Each: {n, t, method, path, query, headers, body, json}
  // or {n, t, clientError}.
  requests() {
    let text = '';
    try { text = fs.readFileSync(this.logFile, 'utf8'); } catch { return []; }
    return text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
  }

  // Requests whose raw body (or path+query) contains `needle`.
  requestsWith(needle) {
    return this.requests().filter((r) => (r.body && r.body.includes(needle)) ||
      (r.path && `${r.path}${r.query}`.includes(needle)));
  }

  count() { return this.requests().length; }

  async stop() { return this.proc.stop('SIGTERM', ms(5000)); }
}

async function startMock() {
  const certs = makeCerts();
  const dir = tmpDir('tollgate-mock-');
  const logFile = path.join(dir, 'upstream.jsonl');
  fs.writeFileSync(logFile, '');
  const proc = new Proc('mock upstream', process.execPath, [MOCK, '--cert', certs.cert, '--key', certs.key,
    '--port', '0', '--http-port', '0', '--log', logFile]);
  const m = await proc.waitStdout(/^(\{.*\})\n/m, ms(10000));
  return new Mock(proc, JSON.parse(m[1]), logFile, certs);
}

// Mock log entries appearing after `since` (a count from mock.count()), after a short
// settle delay so a request tollgate forwards late is still seen.
async function newRequests(mock, since, settle = ms(300)) {
  await sleep(settle);
  return mock.requests().slice(since);
}

module.exports = { startMock, newRequests, MOCK };
