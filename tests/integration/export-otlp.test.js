'use strict';
// [export] otlp_endpoint: one span per request, OTLP/HTTP JSON, checked by a receiver that
// validates the protobuf JSON mapping strictly (tests/lib/otlp-receiver.js). The span follows
// the GenAI conventions, carries tollgate's tenant/user/feature/plan/cost/decision, is the
// child of the app's traceparent, and the upstream gets a traceparent naming that span. A
// collector that is away is retried; one that refuses drops the spans, counted.

const assert = require('node:assert/strict');
const { describe, test, before, after } = require('node:test');
const h = require('../lib/harness');
const { metric } = require('../lib/redis-ctl');
const { startCollector, attrs } = require('../lib/otlp-receiver');

async function chat(tg, tenant, content, { model = 'gpt-4o-mini', headers = {} } = {}) {
  try {
    const { response } = await h.openaiClient(tg, tenant, { headers }).chat.completions
      .create({ model, messages: [{ role: 'user', content }] }).withResponse();
    return { status: response.status, id: response.headers.get('x-tollgate-request-id') };
  } catch (e) {
    return { status: e.status, id: e.headers && e.headers.get('x-tollgate-request-id') };
  }
}

describe('OTLP spans', () => {
  let col;
  const env = h.useStack({ tollgate: false });
  before(async () => { col = await startCollector(); });
  after(async () => { if (col) await col.stop(); });

  const overrides = () => ({
    export: { otlp_endpoint: col.url },
    'plan tiny': { price: '1', budget_monthly: '0.000001', on_exceed: 'block' },
    'tenant otlp-poor': { plan: 'tiny' },
    'plan capped': { price: '10', budget_monthly: '100' },
    'tenant otlp-rich': { plan: 'capped' },
  });

  test('a child of the app traceparent, GenAI attributes, traceparent forwarded upstream', { timeout: h.ms(30000) }, async () => {
    await env.withTollgate(overrides(), async (tg) => {
      const trace = '4bf92f3577b34da6a3ce929d0e0e4736';
      const parent = '00f067aa0ba902b7';
      const since = env.mock.count();
      const tenant = 'otlp-rich';
      const r = await chat(tg, tenant, 'mock:tokens=120,30', { headers: { traceparent: `00-${trace}-${parent}-01`, 'X-User-Id': 'u_7', 'X-Feature': 'search' } });
      assert.equal(r.status, 200);
      const span = await col.span(r.id);
      const rec = await tg.record(r.id);
      assert.equal(span.traceId, trace);
      assert.equal(span.parentSpanId, parent, 'child of the app span');
      assert.notEqual(span.spanId, parent);
      assert.equal(span.kind, 3, 'SPAN_KIND_CLIENT');
      assert.equal(span.name, 'chat gpt-4o-mini');
      const a = attrs(span);
      assert.equal(a['gen_ai.operation.name'], 'chat');
      assert.equal(a['gen_ai.provider.name'], 'openai');
      assert.equal(a['gen_ai.request.model'], 'gpt-4o-mini');
      assert.equal(a['gen_ai.response.model'], rec.model);
      assert.equal(a['gen_ai.usage.input_tokens'], rec.input_tokens);
      assert.equal(a['gen_ai.usage.output_tokens'], rec.output_tokens);
      assert.equal(a['gen_ai.usage.cache_read.input_tokens'], rec.cached_tokens);
      assert.equal(a['tollgate.tenant'], tenant);
      assert.equal(a['tollgate.user'], 'u_7');
      assert.equal(a['tollgate.feature'], 'search');
      assert.equal(a['tollgate.plan'], rec.plan);
      assert.equal(Math.round(a['tollgate.cost_usd'] * 1e9), h.recordNano(rec));
      assert.equal(a['tollgate.budget_decision'], 'admit');
      assert.equal(a['http.response.status_code'], 200);
      const start = BigInt(span.startTimeUnixNano);
      assert.equal(Number(start / 1000000n), Date.parse(rec.ts), 'starts at the record ts');
      const up = (await h.newRequests(env.mock, since)).find((q) => q.body && q.body.includes('mock:tokens=120,30'));
      assert.equal(up.headers.traceparent, `00-${trace}-${span.spanId}-01`, 'the upstream call is a child of the span');
      assert.deepEqual(col.invalid, []);
      const res = col.bodies.find((b) => b.resourceSpans[0].scopeSpans[0].spans.includes(span)).resourceSpans[0].resource;
      assert.deepEqual(res.attributes, [{ key: 'service.name', value: { stringValue: 'tollgate' } }]);
    });
  });

  test('usage reported through POST /admin/api/usage gets a span of its own, with its tokens and cost', { timeout: h.ms(30000) }, async () => {
    await env.withTollgate(overrides(), async (tg) => {
      const id = h.uniq('job');
      const res = await fetch(`http://127.0.0.1:${tg.adminPort}/admin/api/usage`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: 'Bearer test-admin-token' },
        body: JSON.stringify({ id, tenant: 'otlp-rich', feature: 'nightly', model: 'gpt-4o-mini',
          input_tokens: 1000, output_tokens: 200 }),
      });
      assert.equal(res.status, 200, await res.text());
      const span = await col.span(id);
      const rec = await tg.record(id);
      assert.match(span.traceId, /^[0-9a-f]{32}$/);
      assert.ok(!span.parentSpanId, 'a root span: the job was not traced through tollgate');
      const a = attrs(span);
      assert.equal(a['tollgate.tenant'], 'otlp-rich');
      assert.equal(a['tollgate.feature'], 'nightly');
      assert.equal(a['gen_ai.request.model'], 'gpt-4o-mini');
      assert.equal(a['gen_ai.usage.input_tokens'], 1000);
      assert.equal(a['gen_ai.usage.output_tokens'], 200);
      assert.equal(a['tollgate.cost_usd'], rec.cost_usd);
      assert.ok(rec.cost_usd > 0);
    });
  });

  test('no or a malformed traceparent: a new trace; a blocked request is an error span', { timeout: h.ms(30000) }, async () => {
    await env.withTollgate(overrides(), async (tg) => {
      const since = env.mock.count();
      const a = await chat(tg, h.uniq('otlp-root'), 'root mock:tokens=5,5');
      const b = await chat(tg, h.uniq('otlp-bad'), 'bad mock:tokens=5,5', { headers: { traceparent: '00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01' } });
      const sa = await col.span(a.id);
      assert.equal(attrs(sa)['tollgate.budget_decision'], 'none', 'no cap, no admission');
      const sb = await col.span(b.id);
      for (const s of [sa, sb]) assert.equal(s.parentSpanId, undefined, 'a root span');
      assert.notEqual(sb.traceId, '4bf92f3577b34da6a3ce929d0e0e4736');
      const ups = await h.newRequests(env.mock, since);
      assert.equal(ups.find((q) => q.body && q.body.includes('root mock')).headers.traceparent, `00-${sa.traceId}-${sa.spanId}-01`);

      const first = await chat(tg, 'otlp-poor', 'mock:tokens=2000,2000', { model: 'gpt-4o' });
      await env.redis.waitRequests('otlp-poor', 1);
      const blocked = await chat(tg, 'otlp-poor', 'mock:tokens=5,5', { model: 'gpt-4o' });
      assert.equal(blocked.status, 429);
      const s = await col.span(blocked.id);
      assert.equal(attrs(s)['tollgate.budget_decision'], 'block');
      assert.equal(attrs(s)['error.type'], 'blocked');
      assert.deepEqual(s.status, { code: 2, message: 'blocked' });
      assert.ok(first.id);
      assert.ok(await metric(tg, 'tollgate_otlp_spans_exported_total') >= 4);
    });
  });

  test('collector away: retried until it is back; a collector that refuses: spans dropped and counted', { timeout: h.ms(40000) }, async () => {
    await env.withTollgate(overrides(), async (tg) => {
      await col.stop();
      const r = await chat(tg, h.uniq('otlp-down'), 'down mock:tokens=5,5');
      await h.waitFor(async () => (await metric(tg, 'tollgate_otlp_post_failures_total')) > 0, { what: 'failed POST counted' });
      assert.match(tg.stderr, /otlp: POST of 1 spans failed \(127\.0\.0\.1:\d+: connect: Connection refused\)/);
      await col.start();
      await col.span(r.id, h.ms(20000));
      col.mode = { status: 400 };
      await chat(tg, h.uniq('otlp-refused'), 'refused mock:tokens=5,5');
      await h.waitFor(async () => (await metric(tg, 'tollgate_otlp_spans_dropped_total')) >= 1, { what: 'dropped span counted' });
      assert.match(tg.stderr, /the collector refused 1 spans with 400: dropped/);
      col.mode = null;
    });
  });
});
