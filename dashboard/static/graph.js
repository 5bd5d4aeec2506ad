// pas dashboard: the agent tree drawn as a graph (SVG), beside the indented list that stays
// the accessible view. Nodes are coloured by state (up, down, paused, unregistered; blocked
// and error as the agent says of itself), each with its context gauge at the governor's
// thresholds, its current job and its subtree's roll-up. Pan by dragging, zoom with the
// wheel or the buttons. Built with DOM calls and textContent only: a hostile agent name or
// note is text, never markup.
'use strict';
(() => {
  const NS = 'http://www.w3.org/2000/svg';
  const W = 250; const H = 104; const GAP_X = 24; const GAP_Y = 56;
  const el = (tag, attrs, parent) => {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (parent) parent.appendChild(e);
    return e;
  };
  const text = (parent, x, y, s, cls) => { const t = el('text', { x, y, class: cls || '' }, parent); t.textContent = s; return t; };
  const clip = (s, n) => { s = String(s ?? ''); return s.length > n ? s.slice(0, n - 1) + '…' : s; };

  // The view: translate then scale, kept across redraws.
  const view = { x: 20, y: 20, k: 1 };
  let svg = null; let g = null;
  const apply = () => { if (g) g.setAttribute('transform', `translate(${view.x.toFixed(1)} ${view.y.toFixed(1)}) scale(${view.k.toFixed(3)})`); };
  const zoomAt = (f, cx, cy) => {
    const k = Math.min(3, Math.max(0.2, view.k * f)); const r = k / view.k;
    view.x = cx - (cx - view.x) * r; view.y = cy - (cy - view.y) * r; view.k = k; apply();
  };

  function mount(host) {
    svg = el('svg', { class: 'graph', role: 'img', 'aria-label': 'The agent tree as a graph (the same agents are listed below)' });
    host.appendChild(svg);
    g = el('g', { class: 'view' }, svg); apply();
    let drag = null;
    svg.addEventListener('pointerdown', (e) => {
      if (e.target.closest('a')) return;
      drag = { x: e.clientX - view.x, y: e.clientY - view.y }; svg.setPointerCapture(e.pointerId); svg.classList.add('dragging');
    });
    svg.addEventListener('pointermove', (e) => { if (drag) { view.x = e.clientX - drag.x; view.y = e.clientY - drag.y; apply(); } });
    const end = () => { drag = null; svg.classList.remove('dragging'); };
    svg.addEventListener('pointerup', end); svg.addEventListener('pointercancel', end);
    svg.addEventListener('wheel', (e) => {
      e.preventDefault();
      const b = svg.getBoundingClientRect();
      zoomAt(e.deltaY < 0 ? 1.15 : 1 / 1.15, e.clientX - b.left, e.clientY - b.top);
    }, { passive: false });
  }

  // Places each agent: leaves left to right, a parent centred over its children.
  function layout(agents) {
    const names = new Set(agents.keys()); const kids = new Map(); const roots = [];
    for (const a of agents.values()) {
      if (a.parent && names.has(a.parent) && a.parent !== a.name) { if (!kids.has(a.parent)) kids.set(a.parent, []); kids.get(a.parent).push(a); } else roots.push(a);
    }
    const byName = (x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0);
    const pos = new Map(); const edges = []; let leaf = 0;
    const walk = (a, depth) => {
      if (pos.has(a.name)) return null; // a cycle in the parents
      pos.set(a.name, null);
      const ch = (kids.get(a.name) || []).sort(byName).map((c) => walk(c, depth + 1)).filter(Boolean);
      const x = ch.length ? (ch[0].x + ch[ch.length - 1].x) / 2 : leaf++;
      const p = { a, x, depth };
      pos.set(a.name, p);
      for (const c of ch) edges.push([p, c]);
      return p;
    };
    roots.sort(byName).forEach((r) => walk(r, 0));
    for (const a of agents.values()) if (!pos.get(a.name)) walk(a, 0); // agents only on a cycle
    return { nodes: [...pos.values()].filter(Boolean), edges };
  }

  function node(parent, p, rollups, ago, money) {
    const a = p.a; const st = a.status || 'unregistered';
    const said = a.beat_status === 'blocked' || a.beat_status === 'error' ? a.beat_status : '';
    const x = p.x * (W + GAP_X); const y = p.depth * (H + GAP_Y);
    const n = el('g', { class: `gnode st-${st.replace(/[^a-z]/g, '')}${said ? ' said-' + said : ''}`, transform: `translate(${x} ${y})` }, parent);
    n.dataset.agent = a.name; n.dataset.status = st; n.dataset.beat = a.beat_status || '';
    el('rect', { class: 'box', width: W, height: H, rx: 8 }, n);
    el('circle', { class: 'dot', cx: 14, cy: 17, r: 5 }, n);
    const link = el('a', { href: '#agent-' + encodeURIComponent(a.name) }, n);
    text(link, 26, 21, clip(a.name, 19), 'name');
    text(n, W - 10, 21, said || st, 'state').setAttribute('text-anchor', 'end');
    // The current job, or the note when idle.
    if (a.job) {
      const j = el('a', { href: '/jobs/' + encodeURIComponent(a.job) }, n);
      text(j, 12, 40, 'on ' + clip(a.job, 15), 'job');
    } else text(n, 12, 40, a.note ? '“' + clip(a.note, 18) + '”' : 'no job', 'job idle');
    text(n, W - 10, 40, 'beat ' + ago(a.last_seen), 'beat').setAttribute('text-anchor', 'end');
    // The context gauge: the share of the window in use, ticks at the warning and the breach.
    const gw = 150; const t = a.ctx_target ?? 0.5; const h = a.ctx_hard_max ?? 0.75;
    const gauge = el('g', { class: 'ctx', transform: 'translate(12 50)' }, n);
    el('rect', { class: 'track', width: gw, height: 7, rx: 3 }, gauge);
    if (a.ctx_ratio != null) {
      const r = Math.min(1, Math.max(0, Number(a.ctx_ratio) || 0));
      const cls = a.ctx_ratio >= h ? 'breach' : a.ctx_ratio >= t ? 'warning' : 'ok';
      el('rect', { class: 'fill ' + cls, width: (r * gw).toFixed(1), height: 7, rx: 3 }, gauge);
    }
    for (const v of [t, h]) el('line', { class: 'tick', x1: v * gw, x2: v * gw, y1: -2, y2: 9 }, gauge);
    const pct = a.ctx_ratio == null ? 'ctx —' : 'ctx ' + Math.round(a.ctx_ratio * 100) + '%';
    el('title', {}, gauge).textContent = `context ${pct.slice(4)} (warning at ${Math.round(t * 100)}%, breach at ${Math.round(h * 100)}%)`;
    text(n, gw + 20, 57, pct, 'pct');
    // The roll-up: this agent and everything under it.
    const r = rollups[a.name] || {}; const jobs = r.jobs || {};
    const roll = text(n, 12, 78, `${money(r.cost_usd)} · ${r.tokens ?? 0} tok`, 'roll');
    el('title', {}, roll).textContent = 'this agent and everything under it';
    text(n, 12, 94, `${jobs.assigned ?? 0} assigned · ${jobs.done ?? 0} done · ${jobs.failed ?? 0} failed`, 'roll');
    el('title', {}, n).textContent = `${a.name}: ${st}${said ? ', says ' + said : ''}${a.note ? ' — ' + a.note : ''}`;
  }

  function draw(host, agents, rollups, ago, money) {
    if (!svg) mount(host);
    const { nodes, edges } = layout(agents);
    const fresh = document.createDocumentFragment();
    const eg = el('g', { class: 'edges' }, fresh);
    for (const [p, c] of edges) {
      const x1 = p.x * (W + GAP_X) + W / 2; const y1 = p.depth * (H + GAP_Y) + H;
      const x2 = c.x * (W + GAP_X) + W / 2; const y2 = c.depth * (H + GAP_Y); const m = (y1 + y2) / 2;
      const e = el('path', { class: 'edge', d: `M${x1} ${y1} C${x1} ${m} ${x2} ${m} ${x2} ${y2}` }, eg);
      e.dataset.from = p.a.name; e.dataset.to = c.a.name;
    }
    const ng = el('g', { class: 'nodes' }, fresh);
    for (const p of nodes) node(ng, p, rollups, ago, money);
    g.replaceChildren(fresh);
    const depth = nodes.reduce((m, p) => Math.max(m, p.depth), 0);
    svg.style.height = Math.min(640, Math.max(220, (depth + 1) * (H + GAP_Y) + 40)) + 'px';
  }

  window.pasGraph = {
    draw,
    view,
    zoom: (f) => { if (svg) { const b = svg.getBoundingClientRect(); zoomAt(f, b.width / 2, b.height / 2); } },
    reset: () => { view.x = 20; view.y = 20; view.k = 1; apply(); },
  };
})();
