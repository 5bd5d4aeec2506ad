// pas dashboard: the costs page's pictures, from /api/costs/series: spend and tokens over
// time (stacked bars per hour or per day, one colour per provider, model or agent) and
// each model's share of the spend. Money arrives as exact decimal strings; it becomes a
// number here only to size a bar. Built with DOM calls and textContent only: a hostile
// name is text, never markup.
'use strict';
(() => {
  const NS = 'http://www.w3.org/2000/svg';
  const PALETTE = ['#3f6fd8', '#e07b24', '#1f9d55', '#b04fc6', '#d64545', '#0f9fb0', '#c98a00', '#6b7a99', '#8c5a2b', '#2f8f7f'];
  const OTHER = '#a0a8b8';
  const el = (tag, attrs, parent) => {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (parent) parent.appendChild(e);
    return e;
  };
  const h = (tag, text, cls) => { const e = document.createElement(tag); if (text != null) e.textContent = text; if (cls) e.className = cls; return e; };
  const money = (s) => { const [i, f = ''] = String(s ?? '0').split('.'); return '$' + i + '.' + (f + '00').slice(0, Math.max(2, Math.min(f.length, 6))); };
  const label = (iso, step) => (step === 'hour' ? String(iso).slice(11, 16) : String(iso).slice(5, 10));
  // At most ten series keep their own colour; the rest are summed as "other".
  function top(series, field) {
    if (series.length <= 10) return series;
    const rest = series.slice(9);
    const sum = rest[0][field].map((_, i) => rest.reduce((t, s) => t + Number(s[field][i]), 0));
    return [...series.slice(0, 9), { key: `${rest.length} others`, other: true, [field]: sum }];
  }

  // Stacked bars: one bar per bucket, one segment per series.
  function bars(series, buckets, field, step, fmt) {
    const W = 600; const H = 180; const L = 56; const B = 22; const T = 10;
    const svg = el('svg', { class: 'series', viewBox: `0 0 ${W} ${H}`, role: 'img' });
    svg.dataset.field = field;
    const lines = top(series, field);
    const totals = buckets.map((_, i) => lines.reduce((t, s) => t + Number(s[field][i]), 0));
    const max = Math.max(...totals, 0);
    el('line', { class: 'axis', x1: L, x2: W, y1: H - B, y2: H - B }, svg);
    const ty = el('text', { x: L - 6, y: T + 8, 'text-anchor': 'end' }, svg); ty.textContent = fmt(max);
    const t0 = el('text', { x: L - 6, y: H - B, 'text-anchor': 'end' }, svg); t0.textContent = fmt(0);
    const bw = (W - L) / buckets.length;
    buckets.forEach((b, i) => {
      let y = H - B;
      lines.forEach((s, k) => {
        const v = Number(s[field][i]);
        if (!v || !max) return;
        const hh = (v / max) * (H - B - T);
        y -= hh;
        const r = el('rect', { x: (L + i * bw + bw * 0.12).toFixed(1), y: y.toFixed(1), width: (bw * 0.76).toFixed(1), height: Math.max(0.5, hh).toFixed(1), fill: s.other ? OTHER : PALETTE[k % PALETTE.length] }, svg);
        r.dataset.key = s.key; r.dataset.bucket = b;
        el('title', {}, r).textContent = `${s.key}, ${label(b, step)}: ${fmt(s[field][i])}`;
      });
      const every = Math.ceil(buckets.length / 8);
      if (i % every === 0) { const t = el('text', { x: (L + i * bw + bw / 2).toFixed(1), y: H - 6, 'text-anchor': 'middle' }, svg); t.textContent = label(b, step); }
    });
    svg.setAttribute('aria-label', `${field === 'cost_usd' ? 'spend' : 'tokens'} per ${step}, ${lines.length} series`);
    return svg;
  }

  function legend(series) {
    const d = h('div', null, 'chart-legend');
    top(series, 'tokens').forEach((s, k) => {
      const item = h('span'); const sw = h('i'); sw.style.background = s.other ? OTHER : PALETTE[k % PALETTE.length];
      item.append(sw, document.createTextNode(s.key + (s.total_cost_usd != null ? ` · ${money(s.total_cost_usd)} · ${s.total_tokens} tok` : '')));
      d.appendChild(item);
    });
    return d;
  }

  // Each model's share of the window's spend (of its tokens when nothing had a price).
  function donut(series) {
    const svg = el('svg', { class: 'donut', viewBox: '-1.1 -1.1 2.2 2.2', role: 'img', 'aria-label': 'model share' });
    const byCost = series.some((s) => Number(s.total_cost_usd) > 0);
    const v = (s) => (byCost ? Number(s.total_cost_usd) : s.total_tokens);
    const sum = series.reduce((t, s) => t + v(s), 0);
    svg.dataset.basis = byCost ? 'cost' : 'tokens';
    if (!sum) { el('circle', { r: 1, fill: 'none', stroke: OTHER, 'stroke-width': 0.02 }, svg); return svg; }
    let a = -Math.PI / 2;
    series.forEach((s, k) => {
      const share = v(s) / sum; if (!share) return;
      const b = a + share * 2 * Math.PI;
      const p = share >= 0.9999
        ? el('circle', { r: 0.7, fill: 'none', stroke: PALETTE[k % PALETTE.length], 'stroke-width': 0.5 }, svg)
        : el('path', { d: `M${Math.cos(a)} ${Math.sin(a)} A1 1 0 ${share > 0.5 ? 1 : 0} 1 ${Math.cos(b)} ${Math.sin(b)} L${0.45 * Math.cos(b)} ${0.45 * Math.sin(b)} A0.45 0.45 0 ${share > 0.5 ? 1 : 0} 0 ${0.45 * Math.cos(a)} ${0.45 * Math.sin(a)} Z`, fill: PALETTE[k % PALETTE.length] }, svg);
      p.dataset.key = s.key; p.classList.add('slice');
      el('title', {}, p).textContent = `${s.key}: ${Math.round(share * 1000) / 10}%`;
      a = b;
    });
    return svg;
  }

  const state = { by: 'provider', step: 'hour' };
  let busy = false;
  async function refresh() {
    const host = document.getElementById('cost-series'); if (!host || busy) return;
    busy = true;
    try {
      const q = (by) => fetch(`/api/costs/series?by=${by}&step=${state.step}`).then((r) => r.json());
      const [s, m] = await Promise.all([q(state.by), q('model')]);
      const charts = h('div', null, 'charts');
      const spend = h('div'); spend.append(h('h2', `Spend per ${state.step} by ${state.by}`), bars(s.series, s.buckets, 'cost_usd', state.step, (x) => '$' + Number(x).toFixed(Number(x) >= 1 ? 2 : 4)));
      const tok = h('div'); tok.append(h('h2', `Tokens per ${state.step} by ${state.by}`), bars(s.series, s.buckets, 'tokens', state.step, (x) => String(Math.round(Number(x)))));
      charts.append(spend, tok);
      const share = h('div'); const row = h('div', null, 'share');
      row.append(donut(m.series), legend(m.series));
      share.append(h('h2', `Model share, last ${m.buckets.length} ${state.step}s`), row);
      const out = h('div'); out.append(charts, legend(s.series), share);
      if (!s.series.length) out.prepend(h('p', 'No LLM calls in this window yet.', 'hint'));
      document.getElementById('cost-series-body').replaceChildren(out);
    } catch (e) { /* the next receipt retries */ } finally { busy = false; }
  }
  function mount() {
    const by = document.getElementById('s-by'); const step = document.getElementById('s-step');
    if (!by) return;
    by.onchange = () => { state.by = by.value; refresh(); };
    step.onchange = () => { state.step = step.value; refresh(); };
    refresh();
  }
  window.pasCharts = { mount, refresh, state };
})();
