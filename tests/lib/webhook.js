'use strict';
// A local webhook sink for the soft-limit alert tests: a node http server on 127.0.0.1:0
// that logs every request as it arrives (before answering) and answers after `delayMs`.
//   const sink = await startWebhookSink({ delayMs: 2000 });
//   ... [alerts] webhook = sink.url ...
//   await sink.waitFor((p) => p.json && p.json.tenant === t, 1);
//   await sink.close();

const http = require('node:http');
const { ms, waitFor } = require('./util');

async function startWebhookSink({ delayMs = 0, status = 200, path = '/hook' } = {}) {
  const posts = [];      // {t, method, url, headers, body, json, answeredAt}
  const timers = new Set();
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (d) => chunks.push(d));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      let json = null;
      try { json = JSON.parse(body); } catch { /* not JSON: the test sees json === null */ }
      const entry = { t: Date.now(), method: req.method, url: req.url, headers: req.headers, body, json, answeredAt: null };
      posts.push(entry);
      const answer = () => {
        timers.delete(timer);
        entry.answeredAt = Date.now();
        res.writeHead(sink.status, { 'content-type': 'text/plain', 'content-length': '2' });
        res.end('ok');
      };
      const timer = setTimeout(answer, sink.delayMs);
      timers.add(timer);
    });
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  const sink = {
    port,
    url: `http://127.0.0.1:${port}${path}`,
    delayMs,
    status,
    posts,
    // Posts matching pred (function of the entry).
    matching(pred = () => true) { return posts.filter(pred); },
    // Waits (bounded) until at least n posts match pred; returns them.
    async waitFor(pred, n = 1, timeout = ms(5000)) {
      return waitFor(() => {
        const got = posts.filter(pred);
        return got.length >= n ? got : null;
      }, { timeout, what: `${n} webhook POST(s) at the sink` });
    },
    // Waits until every post received so far has been answered.
    async settled(timeout = ms(10000)) {
      return waitFor(() => posts.every((p) => p.answeredAt !== null), { timeout, what: 'the sink answered every POST' });
    },
    async close() {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(() => resolve()));
    },
  };
  return sink;
}

module.exports = { startWebhookSink };
