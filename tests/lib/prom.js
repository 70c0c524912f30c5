'use strict';
// A strict parser of the Prometheus text exposition format 0.0.4, for the /metrics tests.
// Strict where a lenient scraper would hide a bug: every line must parse, label values may
// only use the escapes \\ \" \n, a label name may not repeat, a (name, labels) series may
// not repeat, a family's samples must be one contiguous group after its TYPE line, HELP and
// TYPE appear at most once per family, and the text ends with a newline. Histograms are
// grouped by their full label set minus "le" (never merged across label sets) and checked:
// ascending bounds, cumulative counts, a +Inf bucket equal to _count, a _sum per series.
//
//   const prom = require('../lib/prom');
//   const m = prom.parse(text);              // throws Error('line N: ...') on anything off
//   m.family('tollgate_requests_total')      // {name, type, help, samples:[{name, labels, value, raw}]}
//   m.value('tollgate_cost_usd_total', {provider: 'openai', model: 'gpt-4o'})   // number | undefined
//   m.histogram('tollgate_request_duration_seconds')  // [{labels, buckets:[{le, count}], sum, count}]
//   prom.decimalNano('0.00035')              // 350000 (exact for fixed-point text)

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

function parseValue(s, where) {
  if (s === '+Inf' || s === 'Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  if (s === 'NaN') return NaN;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(s)) throw new Error(`${where}: bad value "${s}"`);
  return Number(s);
}

// HELP text: only \\ and \n are escapes; any other backslash is an error here (strict).
function unescapeHelp(s, where) {
  return s.replace(/\\(.?)/g, (_, c) => {
    if (c === '\\') return '\\';
    if (c === 'n') return '\n';
    throw new Error(`${where}: bad escape "\\${c}" in HELP`);
  });
}

// Parses {a="x",b="y"} at s[i] === '{'; returns [labels, index after '}'].
function parseLabels(s, i, where) {
  const labels = {};
  i++; // '{'
  for (;;) {
    if (s[i] === '}') return [labels, i + 1];
    const m = LABEL.exec(s.slice(i));
    if (!m) throw new Error(`${where}: bad label name at column ${i + 1}`);
    const name = m[0];
    i += name.length;
    if (s[i] !== '=' || s[i + 1] !== '"') throw new Error(`${where}: expected =" after label ${name}`);
    i += 2;
    let v = '';
    for (;;) {
      if (i >= s.length) throw new Error(`${where}: unterminated value of label ${name}`);
      const c = s[i];
      if (c === '"') { i++; break; }
      if (c === '\\') {
        const e = s[i + 1];
        if (e === '\\') v += '\\';
        else if (e === '"') v += '"';
        else if (e === 'n') v += '\n';
        else throw new Error(`${where}: bad escape "\\${e === undefined ? '' : e}" in label ${name}`);
        i += 2;
        continue;
      }
      v += c;
      i++;
    }
    if (Object.prototype.hasOwnProperty.call(labels, name)) throw new Error(`${where}: label ${name} repeated`);
    labels[name] = v;
    if (s[i] === ',') { i++; continue; }
    if (s[i] === '}') return [labels, i + 1];
    throw new Error(`${where}: expected , or } after label ${name}`);
  }
}

// The canonical text of a label set (sorted), for identity.
function labelKey(labels, omit = null) {
  return JSON.stringify(Object.keys(labels).filter((k) => k !== omit).sort().map((k) => [k, labels[k]]));
}

function matches(labels, want) {
  return Object.entries(want).every(([k, v]) => labels[k] === v);
}

class Metrics {
  constructor() {
    this.families = new Map();
  }

  family(name) { return this.families.get(name); }

  // Samples of a family (by sample name, default the family's own) whose labels include `want`.
  samples(family, want = {}, sampleName = family) {
    const f = this.families.get(family);
    if (!f) return [];
    return f.samples.filter((s) => s.name === sampleName && matches(s.labels, want));
  }

  // The value of the one sample with exactly these labels; undefined when absent.
  value(family, labels = {}, sampleName = family) {
    const key = labelKey(labels);
    const s = this.samples(family, {}, sampleName).find((x) => labelKey(x.labels) === key);
    return s ? s.value : undefined;
  }

  // Histogram series of a family, validated (see the header).
  histogram(name) {
    const f = this.families.get(name);
    if (!f) throw new Error(`no family ${name}`);
    if (f.type !== 'histogram') throw new Error(`${name} is ${f.type}, not a histogram`);
    const series = new Map();
    const get = (labels) => {
      const k = labelKey(labels, 'le');
      if (!series.has(k)) {
        const base = { ...labels };
        delete base.le;
        series.set(k, { labels: base, buckets: [], sum: undefined, count: undefined });
      }
      return series.get(k);
    };
    for (const s of f.samples) {
      if (s.name === `${name}_bucket`) {
        if (!('le' in s.labels)) throw new Error(`${name}: bucket without le: ${s.raw}`);
        get(s.labels).buckets.push({ le: parseValue(s.labels.le, `${name} le`), count: s.value, leText: s.labels.le });
      } else if (s.name === `${name}_sum`) {
        if ('le' in s.labels) throw new Error(`${name}: _sum with le: ${s.raw}`);
        get(s.labels).sum = s.value;
      } else if (s.name === `${name}_count`) {
        if ('le' in s.labels) throw new Error(`${name}: _count with le: ${s.raw}`);
        get(s.labels).count = s.value;
      } else {
        throw new Error(`${name}: unexpected sample ${s.name}`);
      }
    }
    for (const h of series.values()) {
      const id = `${name}${labelKey(h.labels)}`;
      if (h.sum === undefined || h.count === undefined) throw new Error(`${id}: lacks _sum or _count`);
      if (!h.buckets.length) throw new Error(`${id}: no buckets`);
      for (let i = 1; i < h.buckets.length; i++) {
        if (!(h.buckets[i].le > h.buckets[i - 1].le)) throw new Error(`${id}: bucket bounds not ascending at le=${h.buckets[i].leText}`);
        if (h.buckets[i].count < h.buckets[i - 1].count) throw new Error(`${id}: buckets not cumulative at le=${h.buckets[i].leText}`);
      }
      const last = h.buckets[h.buckets.length - 1];
      if (last.le !== Infinity) throw new Error(`${id}: no le="+Inf" bucket`);
      if (last.count !== h.count) throw new Error(`${id}: +Inf bucket ${last.count} != _count ${h.count}`);
      if (!Number.isInteger(h.count) || h.count < 0) throw new Error(`${id}: _count ${h.count} is not a count`);
      if (!(h.sum >= 0)) throw new Error(`${id}: negative or NaN _sum ${h.sum}`);
    }
    return [...series.values()];
  }
}

// The family a sample name belongs to, given the families declared so far.
function familyOf(m, name) {
  if (m.families.has(name) && !['histogram', 'summary'].includes(m.families.get(name).type)) return name;
  for (const suf of ['_bucket', '_sum', '_count']) {
    if (!name.endsWith(suf)) continue;
    const base = name.slice(0, -suf.length);
    const f = m.families.get(base);
    if (f && (f.type === 'histogram' || (f.type === 'summary' && suf !== '_bucket'))) return base;
  }
  if (m.families.has(name)) return name; // summary quantile samples
  return null;
}

function parse(text) {
  if (typeof text !== 'string') throw new Error('metrics text is not a string');
  if (text.length && !text.endsWith('\n')) throw new Error('metrics text does not end with a newline');
  const m = new Metrics();
  const seen = new Set();
  const closed = new Set(); // families whose sample group has ended
  let current = null; // family of the previous sample line
  const lines = text.split('\n');
  lines.pop();
  lines.forEach((line, idx) => {
    const where = `line ${idx + 1}`;
    if (line.includes('\r')) throw new Error(`${where}: carriage return`);
    if (line === '') return; // blank lines are allowed
    if (line.startsWith('#')) {
      const mm = /^#\s+(HELP|TYPE)\s+([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\s(.*))?$/.exec(line);
      if (!mm) return; // a plain comment
      const [, kw, name, rest = ''] = mm;
      let f = m.families.get(name);
      if (!f) {
        f = { name, type: 'untyped', help: undefined, typed: false, samples: [] };
        m.families.set(name, f);
      }
      if (kw === 'HELP') {
        if (f.help !== undefined) throw new Error(`${where}: second HELP for ${name}`);
        f.help = unescapeHelp(rest, where);
      } else {
        if (f.typed) throw new Error(`${where}: second TYPE for ${name}`);
        if (f.samples.length) throw new Error(`${where}: TYPE for ${name} after its samples`);
        const t = rest.trim();
        if (!TYPES.has(t)) throw new Error(`${where}: unknown type "${t}"`);
        f.type = t;
        f.typed = true;
      }
      return;
    }
    const nm = NAME.exec(line);
    if (!nm) throw new Error(`${where}: bad metric name: ${line}`);
    const name = nm[0];
    let i = name.length;
    let labels = {};
    if (line[i] === '{') [labels, i] = parseLabels(line, i, where);
    if (line[i] !== ' ' && line[i] !== '\t') throw new Error(`${where}: expected a space before the value: ${line}`);
    const parts = line.slice(i).trim().split(/[ \t]+/);
    if (parts.length < 1 || parts.length > 2 || parts[0] === '') throw new Error(`${where}: expected value [timestamp]: ${line}`);
    const value = parseValue(parts[0], where);
    if (parts.length === 2 && !/^-?\d+$/.test(parts[1])) throw new Error(`${where}: bad timestamp "${parts[1]}"`);
    let fam = familyOf(m, name);
    if (!fam) {
      fam = name;
      m.families.set(name, { name, type: 'untyped', help: undefined, typed: false, samples: [] });
    }
    if (fam !== current) {
      if (closed.has(fam)) throw new Error(`${where}: samples of ${fam} are not one group`);
      if (current) closed.add(current);
      current = fam;
    }
    const id = `${name}${labelKey(labels)}`;
    if (seen.has(id)) throw new Error(`${where}: series repeated: ${line}`);
    seen.add(id);
    const f = m.families.get(fam);
    if (f.type === 'counter' && !(value >= 0)) throw new Error(`${where}: counter ${name} is ${parts[0]}`);
    f.samples.push({ name, labels, value, text: parts[0], raw: line });
  });
  return m;
}

// A decimal number's text as integer nano-units, exactly for fixed-point text (no float
// rounding on the way); exponent forms go through Number (fine for test magnitudes).
function decimalNano(s) {
  const mm = /^(-?)(\d+)(?:\.(\d+))?$/.exec(s);
  if (!mm) return Math.round(Number(s) * 1e9);
  const [, sign, int, frac = ''] = mm;
  if (frac.length > 9 && /[^0]/.test(frac.slice(9))) throw new Error(`${s} has more than 9 decimals`);
  const n = Number(int) * 1e9 + Number((frac + '000000000').slice(0, 9));
  return sign ? -n : n;
}

module.exports = { parse, decimalNano, labelKey };
