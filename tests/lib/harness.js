'use strict';
// The harness in one require: a redis-server, the mock upstream and tollgate per test file
// (or per test where the config differs), SDK clients pointed at tollgate, and assertions
// shared by the test files.
//
//   const h = require('../lib/harness');
//   const env = h.useStack();            // registers before/after hooks in the current suite
//   test('...', async () => { const c = env.openai('tenant-1'); ... });
//   h.cleanRunTest(env);                 // last test of the file: tollgate exits 0, no reports

const assert = require('node:assert/strict');
const { after, before, test } = require('node:test');
const util = require('./util');
const { startRedis } = require('./redis');
const { startMock, newRequests } = require('./mock');
const { startTollgate, renderConfig, BINARY } = require('./tollgate');
const raw = require('./raw');

// List prices (USD per 1M tokens) of conf/pricing.conf the tests rely on (product contract).
const PRICES = {
  'gpt-4o': { input: 2.5, cached: 1.25, output: 10 },
  'gpt-4o-mini': { input: 0.15, cached: 0.075, output: 0.6 },
  'claude-haiku-4-5': { input: 1.0, cached: 0.1, cacheWrite: 1.25, output: 5.0 },
  'gemini-2.5-flash': { input: 0.3, cached: 0.03, output: 2.5 },
  'text-embedding-3-small': { input: 0.02, cached: 0.02, output: 0 },
};

// Expected cost in nano-USD for input/cached/output tokens (cached is part of input; the
// normalised record counts, so the same formula serves OpenAI, Anthropic reads and Gemini).
function expectedNano(model, { input, cached = 0, output }) {
  const p = PRICES[model];
  if (!p) throw new Error(`no test price for ${model}`);
  return util.nanoCost([[input - cached, p.input], [cached, p.cached], [output, p.output]]);
}

// Record cost in nano-USD (cost_usd is printed from an integer; round away float noise).
const recordNano = (rec) => Math.round(rec.cost_usd * 1e9);

// Starts redis + mock (+ tollgate unless opts.tollgate === false) in before(), stops all in
// after(). Returns an env object filled in before() runs.
function useStack(opts = {}) {
  const env = {
    redis: null, mock: null, tg: null,
    // (Re)start tollgate with these overrides; the previous one is stopped and checked.
    async restart(overrides = {}) {
      if (env.tg) await env.tg.stopAndCheck();
      env.tg = await startTollgate({ redis: env.redis, mock: env.mock, overrides });
      return env.tg;
    },
    // A separate tollgate for one test (different config); stop with stopAndCheck().
    start(overrides = {}) {
      return startTollgate({ redis: env.redis, mock: env.mock, overrides });
    },
    // Runs fn(tg) against a separate tollgate with these overrides, then stops it and
    // checks the run was clean (a failure inside fn wins over the stop's).
    async withTollgate(overrides, fn) {
      const tg = await env.start(overrides);
      let failed = false;
      try {
        return await fn(tg);
      } catch (e) {
        failed = true;
        throw e;
      } finally {
        if (failed) await tg.stop();
        else await tg.stopAndCheck();
      }
    },
    openai: (tenant, extra = {}) => openaiClient(env.tg, tenant, extra),
    anthropic: (tenant, extra = {}) => anthropicClient(env.tg, tenant, extra),
    gemini: (tenant, extra = {}) => geminiClient(env.tg, tenant, extra),
  };
  before(async () => {
    env.redis = await startRedis();
    env.mock = await startMock();
    if (opts.tollgate !== false) env.tg = await startTollgate({ redis: env.redis, mock: env.mock, overrides: opts.overrides || {} });
  }, { timeout: util.ms(60000) });
  after(async () => {
    // Stopping is checked by cleanRunTest; here only make sure nothing is left running.
    if (env.tg) await env.tg.stop();
    if (env.mock) await env.mock.stop();
    if (env.redis) await env.redis.stop();
  }, { timeout: util.ms(60000) });
  return env;
}

// The file's last test: tollgate shuts down on SIGTERM with exit 0 and its stderr holds no
// sanitizer or valgrind report.
function cleanRunTest(env, name = 'tollgate exits 0 on SIGTERM without sanitizer or valgrind reports') {
  test(name, { timeout: util.ms(60000) }, async () => {
    assert.ok(env.tg, 'tollgate was not started');
    await env.tg.stopAndCheck();
  });
}

function openaiClient(tg, tenant, extra = {}) {
  const { OpenAI } = require('openai');
  const headers = { ...(tenant ? { 'X-Tenant-Id': tenant } : {}), ...(extra.headers || {}) };
  return new OpenAI({
    baseURL: `${tg.base}/v1`, apiKey: extra.apiKey || 'sk-test-key', maxRetries: 0,
    timeout: util.ms(20000), defaultHeaders: headers,
  });
}

function anthropicClient(tg, tenant, extra = {}) {
  const { Anthropic } = require('@anthropic-ai/sdk');
  const headers = { ...(tenant ? { 'X-Tenant-Id': tenant } : {}), ...(extra.headers || {}) };
  return new Anthropic({
    baseURL: tg.base, apiKey: extra.apiKey || 'sk-ant-test-key', maxRetries: 0,
    timeout: util.ms(20000), defaultHeaders: headers,
  });
}

function geminiClient(tg, tenant, extra = {}) {
  const { GoogleGenAI } = require('@google/genai');
  const headers = { ...(tenant ? { 'X-Tenant-Id': tenant } : {}), ...(extra.headers || {}) };
  return new GoogleGenAI({
    apiKey: extra.apiKey || 'g-test-key',
    httpOptions: { baseUrl: tg.base, headers, timeout: util.ms(20000) },
  });
}

// fetch() to tollgate with a JSON body; resolves {status, headers, text, json}.
async function post(tg, path, body, headers = {}, signal) {
  const res = await fetch(`${tg.base}${path}`, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer sk-test', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body), signal,
  });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, headers: res.headers, text, json };
}

// Splits an SSE text into events: [{event, data}] (data lines joined by '\n').
function parseSSE(text) {
  const out = [];
  for (const block of text.split(/\r\n\r\n|\n\n|\r\r/)) {
    if (!block.trim()) continue;
    const ev = { event: null, data: [] };
    for (const line of block.split(/\r\n|\n|\r/)) {
      if (line.startsWith(':')) continue;
      const i = line.indexOf(':');
      const k = i < 0 ? line : line.slice(0, i);
      let v = i < 0 ? '' : line.slice(i + 1);
      if (v.startsWith(' ')) v = v.slice(1);
      if (k === 'event') ev.event = v;
      else if (k === 'data') ev.data.push(v);
    }
    out.push({ event: ev.event, data: ev.data.join('\n') });
  }
  return out;
}

// Asserts a record carries the usual fields of the contract.
function assertRecordShape(rec) {
  for (const k of ['ts', 'id', 'tenant', 'provider', 'endpoint', 'model', 'stream', 'status', 'outcome',
    'input_tokens', 'cached_tokens', 'output_tokens', 'reasoning_tokens', 'cost_usd', 'priced', 'estimated']) {
    assert.ok(k in rec, `record lacks "${k}": ${JSON.stringify(rec)}`);
  }
  assert.match(rec.ts, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/, 'ts is ISO-8601 UTC');
  assert.ok(['ok', 'blocked', 'rate_limited', 'upstream_error', 'client_aborted', 'bad_request', 'drain_cut'].includes(rec.outcome),
    `unknown outcome ${rec.outcome}`);
}

// Asserts the record has exactly these token counts.
function assertTokens(rec, { input, cached = 0, output, reasoning = 0 }) {
  assert.deepEqual(
    { input_tokens: rec.input_tokens, cached_tokens: rec.cached_tokens, output_tokens: rec.output_tokens, reasoning_tokens: rec.reasoning_tokens },
    { input_tokens: input, cached_tokens: cached, output_tokens: output, reasoning_tokens: reasoning },
    `record tokens: ${JSON.stringify(rec)}`);
}

module.exports = {
  ...util, ...raw, startRedis, startMock, newRequests, startTollgate, renderConfig, BINARY,
  PRICES, expectedNano, recordNano, useStack, cleanRunTest, openaiClient, anthropicClient, geminiClient,
  post, parseSSE, assertRecordShape, assertTokens,
};
