'use strict';
// An OTLP/HTTP JSON trace receiver for the export tests (POST /v1/traces on 127.0.0.1). Every
// body is checked against the protobuf JSON mapping of opentelemetry.proto.collector.trace.v1.
// ExportTraceServiceRequest, strictly: only the schema's fields (lowerCamelCase), ids as
// lowercase hex of the right length and not all zero, 64-bit integers as decimal strings,
// each AnyValue with exactly one member, enums in range. A body that fails is answered 400
// and kept in `invalid`.
//   const col = await startCollector();  col.url; col.spans; col.mode = {status: 503}

const http = require('node:http');
const { ms, waitFor } = require('./util');

function check(cond, what) { if (!cond) throw new Error(what); }
function only(obj, keys, where) {
  check(obj && typeof obj === 'object' && !Array.isArray(obj), `${where}: not an object`);
  for (const k of Object.keys(obj)) check(keys.includes(k), `${where}: unknown field "${k}"`);
}
const HEX = (n) => new RegExp(`^[0-9a-f]{${n}}$`);
const U64 = /^(0|[1-9][0-9]*)$/;
const I64 = /^-?(0|[1-9][0-9]*)$/;

function anyValue(v, where) {
  only(v, ['stringValue', 'boolValue', 'intValue', 'doubleValue', 'arrayValue', 'kvlistValue', 'bytesValue'], where);
  const ks = Object.keys(v);
  check(ks.length === 1, `${where}: AnyValue must hold exactly one value, has ${ks.length}`);
  const [k] = ks;
  if (k === 'stringValue') check(typeof v[k] === 'string', `${where}: stringValue`);
  if (k === 'boolValue') check(typeof v[k] === 'boolean', `${where}: boolValue`);
  if (k === 'intValue') check((typeof v[k] === 'string' && I64.test(v[k])) || Number.isInteger(v[k]), `${where}: intValue`);
  if (k === 'doubleValue') check(typeof v[k] === 'number' && Number.isFinite(v[k]), `${where}: doubleValue`);
}

function keyValues(list, where) {
  check(Array.isArray(list), `${where}: attributes not an array`);
  const seen = new Set();
  list.forEach((kv, i) => {
    only(kv, ['key', 'value'], `${where}[${i}]`);
    check(typeof kv.key === 'string' && kv.key.length > 0, `${where}[${i}].key`);
    check(!seen.has(kv.key), `${where}: duplicate attribute ${kv.key}`);
    seen.add(kv.key);
    anyValue(kv.value, `${where}[${i}].value`);
  });
}

function validate(req) {
  only(req, ['resourceSpans'], 'request');
  check(Array.isArray(req.resourceSpans), 'resourceSpans');
  for (const [i, rs] of req.resourceSpans.entries()) {
    only(rs, ['resource', 'scopeSpans', 'schemaUrl'], `resourceSpans[${i}]`);
    if (rs.resource) { only(rs.resource, ['attributes', 'droppedAttributesCount'], 'resource'); keyValues(rs.resource.attributes || [], 'resource.attributes'); }
    check(Array.isArray(rs.scopeSpans), 'scopeSpans');
    for (const [j, ss] of rs.scopeSpans.entries()) {
      only(ss, ['scope', 'spans', 'schemaUrl'], `scopeSpans[${j}]`);
      if (ss.scope) only(ss.scope, ['name', 'version', 'attributes', 'droppedAttributesCount'], 'scope');
      check(Array.isArray(ss.spans), 'spans');
      for (const [k, s] of ss.spans.entries()) {
        const w = `span[${k}]`;
        only(s, ['traceId', 'spanId', 'traceState', 'parentSpanId', 'flags', 'name', 'kind', 'startTimeUnixNano',
          'endTimeUnixNano', 'attributes', 'droppedAttributesCount', 'events', 'droppedEventsCount', 'links',
          'droppedLinksCount', 'status'], w);
        check(HEX(32).test(s.traceId) && !/^0+$/.test(s.traceId), `${w}.traceId ${s.traceId}`);
        check(HEX(16).test(s.spanId) && !/^0+$/.test(s.spanId), `${w}.spanId ${s.spanId}`);
        if (s.parentSpanId !== undefined) check(HEX(16).test(s.parentSpanId), `${w}.parentSpanId`);
        check(typeof s.name === 'string' && s.name.length > 0, `${w}.name`);
        check(Number.isInteger(s.kind) && s.kind >= 0 && s.kind <= 5, `${w}.kind`);
        check(typeof s.startTimeUnixNano === 'string' && U64.test(s.startTimeUnixNano), `${w}.startTimeUnixNano`);
        check(typeof s.endTimeUnixNano === 'string' && U64.test(s.endTimeUnixNano), `${w}.endTimeUnixNano`);
        check(BigInt(s.endTimeUnixNano) >= BigInt(s.startTimeUnixNano), `${w}: ends before it starts`);
        keyValues(s.attributes || [], `${w}.attributes`);
        if (s.status) {
          only(s.status, ['code', 'message'], `${w}.status`);
          check(Number.isInteger(s.status.code) && s.status.code >= 0 && s.status.code <= 2, `${w}.status.code`);
        }
      }
    }
  }
}

// A span's attributes as a plain object (intValue as Number).
function attrs(span) {
  const o = {};
  for (const { key, value } of span.attributes) {
    const [k, v] = Object.entries(value)[0];
    o[key] = k === 'intValue' ? Number(v) : v;
  }
  return o;
}

async function startCollector() {
  const col = {
    port: 0, url: '', bodies: [], spans: [], invalid: [], mode: null, server: null, posts: 0,
    async start() {
      const server = http.createServer((req, res) => {
        const chunks = [];
        req.on('data', (d) => chunks.push(d));
        req.on('end', () => {
          col.posts += 1;
          if (col.mode && col.mode.status) { res.writeHead(col.mode.status); res.end(); return; }
          const body = Buffer.concat(chunks).toString('utf8');
          try {
            check(req.url === '/v1/traces', `path ${req.url}`);
            check(/^application\/json/.test(req.headers['content-type'] || ''), 'content-type');
            const j = JSON.parse(body);
            validate(j);
            col.bodies.push(j);
            for (const rs of j.resourceSpans) for (const ss of rs.scopeSpans) col.spans.push(...ss.spans);
            res.writeHead(200, { 'content-type': 'application/json' }); res.end('{}');
          } catch (e) {
            col.invalid.push({ body, error: e.message });
            res.writeHead(400); res.end(e.message);
          }
        });
      });
      await new Promise((resolve, reject) => { server.once('error', reject); server.listen(col.port, '127.0.0.1', resolve); });
      col.server = server;
      col.port = server.address().port;
      col.url = `http://127.0.0.1:${col.port}`;
    },
    async stop() {
      if (!col.server) return;
      const s = col.server; col.server = null;
      s.closeAllConnections();
      await new Promise((resolve) => s.close(resolve));
    },
    // The span whose tollgate.request_id is id (waits, bounded).
    async span(id, timeout = ms(10000)) {
      return waitFor(() => col.spans.find((s) => attrs(s)['tollgate.request_id'] === id),
        { timeout, interval: 50, what: `the span of ${id} at the collector` });
    },
  };
  await col.start();
  return col;
}

module.exports = { startCollector, attrs, validate };
