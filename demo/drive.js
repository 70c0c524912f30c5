#!/usr/bin/env node
'use strict';
// demo/drive.js: the traffic of `make demo`. Thirty-two SaaS customers on five plans call
// OpenAI, Anthropic and Gemini through tollgate with the official SDKs for every day of a
// month. Each simulated day runs a fresh tollgate with TOLLGATE_CLOCK_OFFSET set so its
// clock reads noon of that day (today: no offset), which gives the daily series its shape.
// The mock upstream reports the token counts named in the prompt (mock:tokens=IN,OUT), so
// a month of realistic spend takes a few thousand requests and well under a minute.
//
//   node demo/drive.js --tenants                 the [tenant] sections for the config
//   node demo/drive.js --bin B --conf C --port P --admin-port A --period YYYY-MM --days N
//
// Deterministic: a seeded PRNG picks sizes, models, users and features, so two runs print
// the same report (up to the downgrade day, which depends on settlement order).

const { spawn } = require('node:child_process');
const http = require('node:http');
const path = require('node:path');

const TESTS = path.resolve(__dirname, '..', 'tests');
const sdk = (name) => require(require.resolve(name, { paths: [TESTS] }));

// ---- the customers -----------------------------------------------------------------------
// target: what the tenant's traffic would cost over the whole period (USD), at list price,
// before budgets step in. perDay: requests on an average weekday. mix: [provider, model,
// weight]. A free tenant past $0.50 is blocked; a starter tenant past $9 is downgraded
// (gpt-4o -> gpt-4o-mini, ...) until its hard limit of $45. repeat: the share of its
// requests that ask a question it asked before (the same document summarised for every
// viewer); such a tenant has the response cache on ([tenant] cache = on), so a repeat is
// answered from Redis at no cost.
const OA = 'openai';
const AN = 'anthropic';
const GE = 'gemini';
const TENANTS = [
  // free ($0, $0.50 budget, block)
  { id: 'lumen-notes', plan: 'free', target: 0.95, perDay: 6, mix: [[OA, 'gpt-4o-mini', 1]], features: ['summarize', 'autocomplete'], users: 3 },
  { id: 'pixelpost', plan: 'free', target: 0.22, perDay: 3, mix: [[OA, 'gpt-4o-mini', 1]], features: ['captions'], users: 1 },
  { id: 'tinyledger', plan: 'free', target: 0.31, perDay: 3, mix: [[OA, 'gpt-4o-mini', 1]], features: ['categorize'], users: 2 },
  { id: 'sprout-labs', plan: 'free', target: 0.12, perDay: 2, mix: [[GE, 'gemini-2.5-flash', 1]], features: ['chat'], users: 2 },
  { id: 'ferncode', plan: 'free', target: 0.40, perDay: 4, mix: [[OA, 'gpt-4o-mini', 1]], features: ['explain-code'], users: 1 },
  { id: 'dotmatrix', plan: 'free', target: 0.08, perDay: 2, mix: [[OA, 'gpt-4o-mini', 1]], features: ['chat'], users: 1 },
  { id: 'orbit-hobby', plan: 'free', target: 0.65, perDay: 5, mix: [[OA, 'gpt-4o-mini', 1]], features: ['chat', 'translate'], users: 2 },
  // starter ($9, $9 budget, downgrade, hard limit $45)
  { id: 'brightdesk', plan: 'starter', target: 41, perDay: 14, mix: [[OA, 'gpt-4o', 1]], features: ['ticket-summary', 'auto-reply', 'bulk-triage'], users: 6 },
  { id: 'hollow-oak', plan: 'starter', target: 11.6, perDay: 8, mix: [[OA, 'gpt-4o', 1]], features: ['draft-email', 'rewrite'], users: 4 },
  { id: 'cobalt-crm', plan: 'starter', target: 5.2, perDay: 8, mix: [[OA, 'gpt-4o', 1], [OA, 'gpt-4o-mini', 3]], features: ['lead-score', 'draft-email'], users: 5 },
  { id: 'mintleaf', plan: 'starter', target: 2.4, perDay: 5, mix: [[OA, 'gpt-4o-mini', 1]], features: ['recipes'], users: 3 },
  { id: 'paperkite', plan: 'starter', target: 6.1, perDay: 6, mix: [[AN, 'claude-haiku-4-5', 1]], features: ['proofread'], users: 3 },
  { id: 'riverstone', plan: 'starter', target: 3.3, perDay: 5, mix: [[OA, 'gpt-4o', 1], [OA, 'gpt-4o-mini', 2]], features: ['search', 'chat'], users: 4 },
  { id: 'quietly', plan: 'starter', target: 1.1, perDay: 3, mix: [[GE, 'gemini-2.5-flash', 1]], features: ['journal-prompts'], users: 2 },
  { id: 'nimbus-forms', plan: 'starter', target: 4.0, perDay: 6, mix: [[OA, 'gpt-4o-mini', 2], [OA, 'gpt-4o', 1]], features: ['form-fill', 'validate'], users: 3 },
  { id: 'tallyhq', plan: 'starter', target: 7.4, perDay: 7, mix: [[OA, 'gpt-4o', 1]], features: ['invoice-extract'], users: 2 },
  // pro ($49, $100 budget, block)
  { id: 'acme-analytics', plan: 'pro', target: 38, perDay: 18, mix: [[OA, 'gpt-4o', 2], [OA, 'gpt-4o-mini', 3]], features: ['sql-assist', 'dashboards', 'explain'], users: 12 },
  { id: 'globex', plan: 'pro', target: 21, perDay: 12, mix: [[OA, 'gpt-4o', 1], [OA, 'gpt-4o-mini', 1]], features: ['chat', 'summarize'], users: 8 },
  { id: 'initech', plan: 'pro', target: 12.5, perDay: 9, mix: [[OA, 'gpt-4o-mini', 1]], features: ['tps-reports', 'chat'], users: 9 },
  { id: 'vandelay', plan: 'pro', target: 27, perDay: 10, mix: [[AN, 'claude-sonnet-4-6', 1], [AN, 'claude-haiku-4-5', 2]], features: ['import-docs', 'export-docs'], users: 5 },
  { id: 'hooli-docs', plan: 'pro', target: 63, perDay: 16, mix: [[AN, 'claude-sonnet-4-6', 3], [OA, 'gpt-4o', 1]], features: ['doc-qa', 'summarize', 'compare'], users: 10, repeat: 0.45 },
  { id: 'wavelength', plan: 'pro', target: 17, perDay: 9, mix: [[GE, 'gemini-2.5-pro', 1], [GE, 'gemini-2.5-flash', 3]], features: ['transcribe-notes', 'chat'], users: 6 },
  { id: 'stackyard', plan: 'pro', target: 33, perDay: 14, mix: [[OA, 'gpt-4o', 1], [OA, 'gpt-4o-mini', 1]], features: ['code-review', 'explain-code'], users: 7 },
  { id: 'soylent-foods', plan: 'pro', target: 44, perDay: 12, mix: [[GE, 'gemini-2.5-pro', 1], [OA, 'gpt-4o', 1]], features: ['menu-planner', 'support-chat'], users: 9 },
  { id: 'northwind', plan: 'pro', target: 8.5, perDay: 6, mix: [[OA, 'gpt-4o-mini', 1]], features: ['orders-chat'], users: 4 },
  // growth ($19 with 5M tokens included, then $4 per 1M tokens of overage; $60 budget)
  // quillstack's overage on gpt-4o-mini is mostly margin; deepdraft's on claude-sonnet
  // costs more than the $4 per 1M it is billed, so its overage still leaves it under water.
  { id: 'quillstack', plan: 'growth', target: 4.2, perDay: 12, mix: [[OA, 'gpt-4o-mini', 1]], features: ['draft', 'rewrite'], users: 6 },
  { id: 'deepdraft', plan: 'growth', target: 44, perDay: 10, mix: [[AN, 'claude-sonnet-4-6', 1]], features: ['long-form'], users: 4 },
  // business ($199, $500 budget, block)
  { id: 'umbrella-health', plan: 'business', target: 142, perDay: 30, mix: [[OA, 'gpt-4o', 2], [AN, 'claude-sonnet-4-6', 1]], features: ['clinical-notes', 'coding-assist', 'chat'], users: 25 },
  { id: 'wayne-logistics', plan: 'business', target: 96, perDay: 24, mix: [[OA, 'gpt-4o', 1], [OA, 'gpt-4o-mini', 2]], features: ['route-notes', 'email-triage'], users: 18 },
  { id: 'stark-research', plan: 'business', target: 150, perDay: 34, mix: [[OA, 'gpt-4o', 2], [GE, 'gemini-2.5-pro', 1], [AN, 'claude-sonnet-4-6', 1]], features: ['lit-review', 'summarize', 'chat'], users: 20, launchDay: true },
  { id: 'cyberdyne', plan: 'business', target: 71, perDay: 20, mix: [[OA, 'gpt-4o-mini', 2], [OA, 'gpt-4o', 1]], features: ['agent-steps', 'chat'], users: 10 },
  { id: 'tyrell-bio', plan: 'business', target: 118, perDay: 22, mix: [[AN, 'claude-sonnet-4-6', 1], [GE, 'gemini-2.5-flash', 1]], features: ['protocol-draft', 'lit-review'], users: 14 },
];

// USD per 1M tokens (conf/pricing.conf), to size requests; tollgate prices them itself.
const PRICE = {
  'gpt-4o': [2.5, 10], 'gpt-4o-mini': [0.15, 0.6],
  'claude-sonnet-4-6': [3, 15], 'claude-haiku-4-5': [1, 5],
  'gemini-2.5-pro': [1.25, 10], 'gemini-2.5-flash': [0.3, 2.5],
};
const DOWNGRADE = { 'gpt-4o': 'gpt-4o-mini', 'claude-sonnet-4-6': 'claude-haiku-4-5', 'gemini-2.5-pro': 'gemini-2.5-flash' };
const MAX_IN = 120000; // stay inside the models' context windows
const OUT_RATIO = 0.1; // output tokens per input token, on average

// ---- small helpers -----------------------------------------------------------------------
function prng(seed) { // mulberry32
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rnd = prng(20261101);
const pick = (arr) => arr[Math.floor(rnd() * arr.length)];
const pickWeighted = (mix) => {
  let r = rnd() * mix.reduce((s, m) => s + m[2], 0);
  for (const m of mix) { r -= m[2]; if (r <= 0) return m; }
  return mix[mix.length - 1];
};
const sleep = (n) => new Promise((r) => setTimeout(r, n));

function args() {
  const o = {};
  const a = process.argv.slice(2);
  for (let i = 0; i < a.length; i++) {
    if (!a[i].startsWith('--')) continue;
    const k = a[i].slice(2);
    o[k] = a[i + 1] && !a[i + 1].startsWith('--') ? a[++i] : true;
  }
  return o;
}

function get(port, p) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: p, agent: false, timeout: 1000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
  });
}

// ---- one day's tollgate ------------------------------------------------------------------
async function startTollgate(o, offset) {
  const child = spawn(o.bin, ['-c', o.conf], {
    env: { ...process.env, TOLLGATE_CLOCK_OFFSET: String(offset) },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  const exited = new Promise((r) => child.on('exit', (code, sig) => r({ code, sig })));
  let gone = null;
  exited.then((e) => { gone = e; });
  const end = Date.now() + 15000;
  while (Date.now() < end) {
    if (gone) throw new Error(`tollgate exited at start (${JSON.stringify(gone)}):\n${stderr.slice(-2000)}`);
    if (await get(o['admin-port'], '/healthz') === 200) {
      return {
        async stop() {
          child.kill('SIGTERM');
          const t = setTimeout(() => child.kill('SIGKILL'), 15000);
          const e = await exited;
          clearTimeout(t);
          if (e.code !== 0) throw new Error(`tollgate exited ${JSON.stringify(e)}:\n${stderr.slice(-2000)}`);
        },
      };
    }
    await sleep(50);
  }
  child.kill('SIGKILL');
  throw new Error(`tollgate did not answer /healthz within 15 s:\n${stderr.slice(-2000)}`);
}

// ---- the requests --------------------------------------------------------------------------
function clients(port) {
  const { OpenAI } = sdk('openai');
  const { Anthropic } = sdk('@anthropic-ai/sdk');
  const { GoogleGenAI } = sdk('@google/genai');
  const base = `http://127.0.0.1:${port}`;
  return {
    openai: new OpenAI({ baseURL: `${base}/v1`, apiKey: 'sk-demo', maxRetries: 0, timeout: 20000 }),
    anthropic: new Anthropic({ baseURL: base, apiKey: 'sk-ant-demo', maxRetries: 0, timeout: 20000 }),
    gemini: new GoogleGenAI({ apiKey: 'g-demo', httpOptions: { baseUrl: base, timeout: 20000 } }),
  };
}

const PROMPTS = {
  default: 'Help me with this.', summarize: 'Summarize the attached document in five bullets.',
  'ticket-summary': 'Summarize this support thread for the next agent.', 'auto-reply': 'Draft a reply to this customer.',
  'bulk-triage': 'Classify each of these tickets by urgency and product area.', chat: 'Answer the user.',
};

// Sends one request; resolves {ok, downgraded, blocked, error, hit}.
const answered = (h) => ({ ok: true, downgraded: !!h.get('x-tollgate-downgraded'), hit: h.get('x-tollgate-cache') === 'hit' });

async function send(c, t, req) {
  const headers = { 'X-Tenant-Id': t.id, 'X-User-Id': req.user, 'X-Feature': req.feature };
  const text = `${PROMPTS[req.feature] || PROMPTS.default} mock:tokens=${req.in},${req.out}` +
    (req.fail ? ' mock:status=500' : '');
  try {
    if (req.provider === OA) {
      const body = { model: req.model, messages: [{ role: 'user', content: text }] };
      if (req.stream) {
        body.stream = true;
        body.stream_options = { include_usage: true };
        const { data: stream, response } = await c.openai.chat.completions.create(body, { headers }).withResponse();
        for await (const _ of stream) { /* drain */ }
        return answered(response.headers);
      }
      const { response } = await c.openai.chat.completions.create(body, { headers }).withResponse();
      return answered(response.headers);
    }
    if (req.provider === AN) {
      const { response } = await c.anthropic.messages.create({
        model: req.model, max_tokens: 2048, messages: [{ role: 'user', content: text }],
      }, { headers }).withResponse();
      return answered(response.headers);
    }
    const r = await c.gemini.models.generateContent({
      model: req.model, contents: text, config: { httpOptions: { headers } },
    });
    const h = r.sdkHttpResponse && r.sdkHttpResponse.headers;
    return { ok: true, downgraded: !!(h && (h['x-tollgate-downgraded'] || h['X-Tollgate-Downgraded'])) };
  } catch (e) {
    const status = e.status || e.code || (/"code":\s*(\d+)/.exec(e.message || '') || [])[1];
    if (Number(status) === 429) return { ok: false, blocked: true };
    return { ok: false, error: Number(status) || String(e.message).slice(0, 120) };
  }
}

// Sizes one request so that n of them cost about `cost`, charged at `model`'s price.
function size(model, cost) {
  const [pin, pout] = PRICE[model];
  const jitter = 0.55 + rnd() * 0.9;
  let tin = Math.round((cost * jitter * 1e6) / (pin + OUT_RATIO * pout));
  tin = Math.max(300, Math.min(MAX_IN, tin));
  const tout = Math.max(20, Math.round(tin * OUT_RATIO * (0.6 + rnd() * 0.8)));
  return { in: tin, out: tout };
}

// The day's requests of one tenant: the day's share of its target spread over n requests,
// each sized by its model's price (a gpt-4o call carries more of the spend than a mini one).
// Once a tenant has been downgraded, its requests are sized at the cheaper model's price
// (the customer keeps working; what the work costs is what tollgate now bills), which is
// how a $9 customer ends the month at about $40.
const unitPrice = (m) => PRICE[m][0] + OUT_RATIO * PRICE[m][1]; // USD per 1M input tokens
function plan(t, state, dayWeight, days) {
  const share = (t.target * dayWeight) / days; // this day's spend
  const charged = (m) => (state.downgraded && DOWNGRADE[m] ? DOWNGRADE[m] : m);
  const wsum = t.mix.reduce((s, x) => s + x[2], 0);
  const avg = t.mix.reduce((s, x) => s + x[2] * unitPrice(charged(x[1])), 0) / wsum;
  let n = Math.max(1, Math.round(t.perDay * dayWeight * (0.75 + rnd() * 0.5)));
  n = Math.max(n, Math.ceil((share * 1e6) / (avg * MAX_IN * 0.65))); // no call above MAX_IN
  const reqs = [];
  for (let i = 0; i < n; i++) {
    if (t.repeat && state.recent.length && rnd() < t.repeat) { // a question asked before
      reqs.push({ ...pick(state.recent), user: `u_${1 + Math.floor(rnd() * t.users)}` });
      continue;
    }
    const [provider, model] = pickWeighted(t.mix);
    const cm = charged(model);
    const { in: tin, out } = size(cm, ((share / n) * unitPrice(cm)) / avg);
    reqs.push({
      provider, model, in: tin, out,
      feature: pick(t.features), user: `u_${1 + Math.floor(rnd() * t.users)}`,
      stream: provider === OA && rnd() < 0.15, fail: rnd() < 0.004,
    });
    if (t.repeat && !reqs[reqs.length - 1].fail) {
      state.recent.push(reqs[reqs.length - 1]);
      if (state.recent.length > 40) state.recent.shift();
    }
  }
  return reqs;
}

function dayWeights(period, days) {
  const [y, m] = period.split('-').map(Number);
  const w = [];
  for (let d = 1; d <= days; d++) {
    const dow = new Date(Date.UTC(y, m - 1, d)).getUTCDay();
    const weekend = dow === 0 || dow === 6 ? 0.45 : 1;
    const growth = 0.8 + (0.4 * d) / days;
    w.push(weekend * growth);
  }
  const mean = w.reduce((s, x) => s + x, 0) / days;
  return w.map((x) => x / mean);
}

async function pool(items, n, fn) {
  let i = 0;
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, async () => {
    while (i < items.length) { const k = i++; await fn(items[k]); }
  }));
}

async function main() {
  const o = args();
  if (o.tenants) {
    for (const t of TENANTS) process.stdout.write(`[tenant ${t.id}]\nplan = ${t.plan}\n${t.repeat ? 'cache = on\n' : ''}`);
    return;
  }
  for (const k of ['bin', 'conf', 'port', 'admin-port', 'period', 'days']) {
    if (!o[k]) throw new Error(`missing --${k}`);
  }
  const days = Number(o.days);
  const [y, m] = o.period.split('-').map(Number);
  const weights = dayWeights(o.period, days);
  const launch = Math.max(1, days - 5); // stark-research's launch: a spike in the series
  const state = Object.fromEntries(TENANTS.map((t) => [t.id, { downgraded: false, since: null, blockedSince: null, recent: [], sent: 0, hits: 0 }]));
  const totals = { requests: 0, blocked: 0, downgraded: 0, errors: 0 };
  const today = new Date();

  for (let d = 1; d <= days; d++) {
    const isToday = today.getUTCFullYear() === y && today.getUTCMonth() + 1 === m && today.getUTCDate() === d;
    const offset = isToday ? 0 : Math.round((Date.UTC(y, m - 1, d, 12) - Date.now()) / 1000);
    const tg = await startTollgate(o, offset);
    const cl = clients(o.port);
    const work = [];
    for (const t of TENANTS) {
      const w = weights[d - 1] * (t.launchDay && d === launch ? 3 : 1);
      for (const r of plan(t, state[t.id], w, days)) work.push([t, r]);
    }
    for (let i = work.length - 1; i > 0; i--) { // interleave the tenants
      const j = Math.floor(rnd() * (i + 1));
      [work[i], work[j]] = [work[j], work[i]];
    }
    const day = { requests: 0, blocked: 0, downgraded: 0, errors: 0 };
    const date = `${o.period}-${String(d).padStart(2, '0')}`;
    await pool(work, 12, async ([t, r]) => {
      const res = await send(cl, t, r);
      day.requests++;
      const s = state[t.id];
      if (res.downgraded) {
        day.downgraded++;
        if (!s.downgraded) { s.downgraded = true; s.since = date; }
      }
      if (res.blocked) { day.blocked++; if (!s.blockedSince) s.blockedSince = date; }
      s.sent++;
      if (res.hit) s.hits++;
      if (res.error) day.errors++;
    });
    await tg.stop();
    for (const k of Object.keys(totals)) totals[k] += day[k];
    const dow = new Date(Date.UTC(y, m - 1, d)).toUTCString().slice(0, 3);
    console.log(`  ${date} ${dow}  ${String(day.requests).padStart(4)} requests` +
      (day.downgraded ? `, ${day.downgraded} downgraded` : '') +
      (day.blocked ? `, ${day.blocked} blocked` : '') +
      (day.errors ? `, ${day.errors} upstream errors` : ''));
  }
  console.log(`demo: ${totals.requests} requests over ${days} days ` +
    `(${totals.downgraded} downgraded, ${totals.blocked} blocked, ${totals.errors} upstream errors)`);
  for (const t of TENANTS) {
    const s = state[t.id];
    if (s.since) console.log(`demo: ${t.id} (${t.plan}) crossed its budget on ${s.since}: gpt-4o -> gpt-4o-mini since (X-Tollgate-Downgraded)`);
    if (s.blockedSince) console.log(`demo: ${t.id} (${t.plan}) was blocked from ${s.blockedSince} (429 budget_exceeded)`);
    if (t.repeat) {
      console.log(`demo: ${t.id} (${t.plan}, cache = on) got ${s.hits} of its ${s.sent} answers from the response cache ` +
        `(hit ratio ${s.sent ? ((100 * s.hits) / s.sent).toFixed(1) : 0}%, X-Tollgate-Cache: hit)`);
    }
  }
}

main().catch((e) => { console.error(`demo: ${e.stack || e}`); process.exit(1); });
