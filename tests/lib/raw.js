'use strict';
// Raw-socket HTTP/1.1 client (VTest style): send exact bytes, collect the answer until the
// server closes or a deadline passes; parse a byte stream into the responses it holds.

const net = require('node:net');
const { ms, sleep } = require('./util');

// Sends `data` (Buffer | string | array of pieces; opts.gapMs between pieces) and collects
// everything received until close or opts.timeout ms. Resolves
// {buf, text, closed, closedAfterMs, timedOut, error, writeError}.
// opts.trickle: send data one byte every opts.gapMs ms, stopping once the peer closes.
// opts.closeAfterMs: the client itself closes after that long (e.g. abort tests).
function rawRequest(port, data, opts = {}) {
  const timeout = opts.timeout || ms(5000);
  return new Promise((resolve) => {
    const started = Date.now();
    const sock = net.connect({ host: '127.0.0.1', port });
    const chunks = [];
    let closed = false;
    let closedAfterMs = null;
    let error = null;
    let writeError = null;
    let done = false;
    const finish = (timedOut) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const buf = Buffer.concat(chunks);
      sock.destroy();
      resolve({ buf, text: buf.toString('latin1'), closed, closedAfterMs, timedOut, error, writeError });
    };
    const timer = setTimeout(() => finish(true), timeout);
    sock.on('data', (d) => chunks.push(d));
    sock.on('error', (e) => { error = e.code || e.message; });
    sock.on('close', () => {
      closed = true;
      closedAfterMs = Date.now() - started;
      finish(false);
    });
    sock.on('connect', async () => {
      try {
        if (opts.trickle) {
          const b = Buffer.from(data);
          for (let i = 0; i < b.length && !closed && !done; i++) {
            sock.write(b.subarray(i, i + 1));
            await sleep(opts.gapMs || 200);
          }
        } else if (Array.isArray(data)) {
          for (const p of data) {
            if (closed || done) break;
            sock.write(p);
            if (opts.gapMs) await sleep(opts.gapMs);
          }
        } else {
          sock.write(data);
        }
        if (opts.closeAfterMs) setTimeout(() => finish(false), opts.closeAfterMs);
      } catch (e) {
        writeError = e.message;
      }
    });
  });
}

// Parses as many complete HTTP/1.1 responses as `buf` holds.
// Returns [{status, reason, headers (lower-case keys; repeated joined by ', '), rawHeaders,
//   body (Buffer), complete, end (offset after it)}]; one without length runs to the end of buf.
function parseResponses(buf) {
  const out = [];
  let off = 0;
  while (off < buf.length) {
    const headEnd = buf.indexOf('\r\n\r\n', off, 'latin1');
    if (headEnd < 0) break;
    const head = buf.subarray(off, headEnd).toString('latin1');
    const lines = head.split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3}) ?(.*)$/.exec(lines[0]);
    if (!m) throw new Error(`not an HTTP response at byte ${off}: ${JSON.stringify(lines[0].slice(0, 80))}`);
    const headers = {};
    const rawHeaders = [];
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      const k = l.slice(0, i).trim().toLowerCase();
      const v = l.slice(i + 1).trim();
      rawHeaders.push([k, v]);
      headers[k] = headers[k] !== undefined ? `${headers[k]}, ${v}` : v;
    }
    const status = +m[1];
    let p = headEnd + 4;
    let body;
    let complete = true;
    if (status === 204 || status === 304 || (status >= 100 && status < 200)) {
      body = Buffer.alloc(0);
    } else if (/chunked/i.test(headers['transfer-encoding'] || '')) {
      const parts = [];
      complete = false;
      for (;;) {
        const le = buf.indexOf('\r\n', p, 'latin1');
        if (le < 0) break;
        const size = parseInt(buf.subarray(p, le).toString('latin1').split(';')[0], 16);
        if (Number.isNaN(size)) break;
        if (size === 0) {
          const te = buf.indexOf('\r\n\r\n', le, 'latin1');
          if (te === le) { p = le + 4; complete = true; } else if (te >= 0) { p = te + 4; complete = true; }
          else p = buf.length;
          break;
        }
        if (le + 2 + size + 2 > buf.length) { parts.push(buf.subarray(le + 2)); p = buf.length; break; }
        parts.push(buf.subarray(le + 2, le + 2 + size));
        p = le + 2 + size + 2;
      }
      body = Buffer.concat(parts);
    } else if (headers['content-length'] !== undefined) {
      const n = +headers['content-length'];
      body = buf.subarray(p, Math.min(buf.length, p + n));
      complete = p + n <= buf.length;
      p = Math.min(buf.length, p + n);
    } else {
      body = buf.subarray(p);
      p = buf.length;
    }
    out.push({ status, reason: m[2], headers, rawHeaders, body, complete, end: p });
    off = p;
  }
  return out;
}

// One keep-alive connection on which requests are sent one at a time (or several in one
// write) and responses read in order.
class Conn {
  constructor(port) {
    this.port = port;
    this.buf = Buffer.alloc(0);
    this.closed = false;
    this.waiters = [];
  }

  open() {
    return new Promise((resolve, reject) => {
      this.sock = net.connect({ host: '127.0.0.1', port: this.port }, () => resolve(this));
      this.sock.on('data', (d) => { this.buf = Buffer.concat([this.buf, d]); this.wake(); });
      this.sock.on('close', () => { this.closed = true; this.wake(); });
      this.sock.on('error', (e) => { this.error = e; reject(e); });
    });
  }

  wake() { const w = this.waiters; this.waiters = []; for (const f of w) f(); }

  send(data) { this.sock.write(data); }

  // Resolves the next n complete responses (consumed from the buffer), or throws on close or
  // timeout with what was received.
  async responses(n = 1, timeout = ms(5000)) {
    const end = Date.now() + timeout;
    for (;;) {
      let parsed = [];
      try { parsed = parseResponses(this.buf); } catch (e) { throw new Error(`${e.message}; got ${this.buf.toString('latin1').slice(0, 300)}`); }
      const done = parsed.filter((r) => r.complete);
      if (done.length >= n) {
        this.buf = this.buf.subarray(done[n - 1].end);
        return done.slice(0, n);
      }
      if (this.closed) throw new Error(`connection closed after ${done.length}/${n} responses; got ${this.buf.toString('latin1').slice(0, 300)}`);
      if (Date.now() > end) throw new Error(`timeout after ${done.length}/${n} responses`);
      await new Promise((r) => { this.waiters.push(r); setTimeout(r, 50); });
    }
  }

  close() { if (this.sock) this.sock.destroy(); }
}

// A request in exact bytes. headers: array of [name, value] or object; body: string|Buffer.
function buildRequest(method, target, headers, body) {
  const list = Array.isArray(headers) ? headers : Object.entries(headers || {});
  let head = `${method} ${target} HTTP/1.1\r\n`;
  for (const [k, v] of list) head += `${k}: ${v}\r\n`;
  head += '\r\n';
  return body === undefined ? Buffer.from(head, 'latin1') : Buffer.concat([Buffer.from(head, 'latin1'), Buffer.from(body)]);
}

// A complete, valid chat-completions request with Content-Length.
function chatRequest({ tenant, text, model = 'gpt-4o', stream = false, extraHeaders = [] }) {
  const body = JSON.stringify({ model, stream, messages: [{ role: 'user', content: text }] });
  return buildRequest('POST', '/v1/chat/completions', [
    ['Host', '127.0.0.1'], ['Content-Type', 'application/json'], ['Authorization', 'Bearer sk-test'],
    ...(tenant ? [['X-Tenant-Id', tenant]] : []), ['Content-Length', Buffer.byteLength(body)], ...extraHeaders,
  ], body);
}

module.exports = { rawRequest, parseResponses, Conn, buildRequest, chatRequest };
