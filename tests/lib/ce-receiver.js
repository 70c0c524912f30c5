'use strict';
// A CloudEvents receiver for the export tests, on 127.0.0.1, that parses and validates every
// POST with the official `cloudevents` SDK (HTTP.toEvent: structured and batch modes, spec
// 1.0 validation) and can misbehave on demand:
//   const rx = await startReceiver();
//   rx.mode = {status: 500} | {destroy: true} | {delayMs: 6000} | {maxEvents: 3} | null
//   await rx.stop(); await rx.start();   // down and up again on the same port
//   rx.events (every accepted event, in order), rx.posts (every POST seen)
//   startReceiver({ tls: makeCerts() })  // https with the test CA's server certificate

const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const { HTTP } = require('cloudevents');
const { ms, waitFor } = require('./util');

async function startReceiver({ path = '/api/v1/events', tls = null } = {}) {
  const rx = {
    port: 0, url: '', path, events: [], posts: [], invalid: [], mode: null, server: null,
    sockets: new Set(),
    async start() {
      const handler = (req, res) => {
        const chunks = [];
        const entry = { t: Date.now(), url: req.url, headers: req.headers, events: 0, status: 0 };
        rx.posts.push(entry);
        const mode = rx.mode || {};
        if (mode.destroy) { req.socket.destroy(); entry.status = -1; return; }
        req.on('data', (d) => chunks.push(d));
        req.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8');
          const answer = () => {
            if (mode.status) { entry.status = mode.status; res.writeHead(mode.status); res.end('no'); return; }
            let evs;
            try {
              evs = HTTP.toEvent({ headers: req.headers, body });
              if (!Array.isArray(evs)) evs = [evs];
              for (const e of evs) e.validate();
            } catch (e) {
              rx.invalid.push({ body, error: String(e && e.message ? e.message : e) });
              entry.status = 400; res.writeHead(400); res.end('invalid'); return;
            }
            if (mode.maxEvents && evs.length > mode.maxEvents) {
              entry.status = 413; res.writeHead(413); res.end('too large'); return;
            }
            entry.events = evs.length;
            entry.status = 202;
            rx.events.push(...evs);
            res.writeHead(202); res.end();
          };
          if (mode.delayMs) setTimeout(answer, mode.delayMs); else answer();
        });
      };
      const server = tls
        ? https.createServer({ key: fs.readFileSync(tls.key), cert: fs.readFileSync(tls.cert) }, handler)
        : http.createServer(handler);
      rx.tlsErrors = 0;
      server.on('tlsClientError', () => { rx.tlsErrors += 1; });
      server.on('connection', (s) => { rx.sockets.add(s); s.on('close', () => rx.sockets.delete(s)); });
      await new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(rx.port, '127.0.0.1', resolve);
      });
      rx.server = server;
      rx.port = server.address().port;
      rx.url = `${tls ? 'https' : 'http'}://127.0.0.1:${rx.port}${path}`;
    },
    async stop() {
      if (!rx.server) return;
      const s = rx.server;
      rx.server = null;
      for (const sock of rx.sockets) sock.destroy();
      await new Promise((resolve) => s.close(resolve));
    },
    ids() { return rx.events.map((e) => e.id); },
    // Waits until every id in `ids` has arrived; returns the events by id.
    async waitIds(ids, timeout = ms(20000)) {
      await waitFor(() => ids.every((id) => rx.events.some((e) => e.id === id)),
        { timeout, interval: 50, what: `${ids.length} CloudEvents at the receiver` });
      const byId = new Map();
      for (const e of rx.events) if (ids.includes(e.id)) byId.set(e.id, e);
      return byId;
    },
  };
  await rx.start();
  return rx;
}

module.exports = { startReceiver };
