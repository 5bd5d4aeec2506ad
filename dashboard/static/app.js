// pas dashboard: keeps the server-rendered page live from GET /ws.
// One state model fed by a snapshot and then by events (deltas only); each page renders
// its part of it. No build step, no library. Every string from the board goes through esc().
'use strict';
(() => {
  const boot = JSON.parse(document.getElementById('boot').textContent || '{}');
  const page = boot.page;
  const $ = (s, r = document) => r.querySelector(s);
  const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
  // The events that are alerts (the server's list is ALERT_KINDS in src/dashboard/api.rs).
  const ALERT_TYPES = ['agent.down', 'agent.deregistered', 'token.warning', 'token.breach', 'budget.alert',
    'job.rejected', 'job.failed', 'file.refused'];
  const S = { seq: null, cards: new Map(), agents: new Map(), doneTotal: 0, rejected: 0, costs: null, rollups: {}, alerts: 0 };
  window.pas = S; // for the end-to-end test and for curious users

  // ---- money: decimal strings added exactly (scaled BigInt), never as floats ----
  const SCALE = 12;
  const toBig = (s) => {
    const m = /^(-?)(\d*)(?:\.(\d*))?$/.exec(String(s ?? '0').trim()) || [];
    const frac = ((m[3] || '') + '0'.repeat(SCALE)).slice(0, SCALE);
    const v = BigInt((m[2] || '0') + frac);
    return m[1] ? -v : v;
  };
  const fromBig = (v) => {
    const neg = v < 0n; if (neg) v = -v;
    let s = v.toString().padStart(SCALE + 1, '0');
    let out = s.slice(0, -SCALE) + '.' + s.slice(-SCALE);
    out = out.replace(/0+$/, '').replace(/\.$/, '');
    return (neg ? '-' : '') + out;
  };
  const addDec = (a, b) => fromBig(toBig(a) + toBig(b));
  const money = (s) => { const [i, f = ''] = String(s ?? '0').split('.'); return '$' + i + '.' + (f + '00').slice(0, Math.max(2, Math.min(f.length, 6))); };

  const ago = (ts) => {
    if (!ts) return '—';
    const s = (Date.now() - Date.parse(ts)) / 1000;
    if (s < 10) return s.toFixed(1) + 's ago';
    if (s < 120) return Math.round(s) + 's ago';
    if (s < 7200) return Math.round(s / 60) + 'm ago';
    if (s < 172800) return Math.round(s / 3600) + 'h ago';
    return Math.round(s / 86400) + 'd ago';
  };

  // ---- the connection ----
  let ws = null; let backoff = 500; let lastPong = Date.now();
  const setLive = (cls, text) => { const el = $('#live'); if (el) { el.className = 'live ' + cls; el.textContent = text; } };
  function connect() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const q = S.seq != null ? '?since=' + S.seq : '';
    setLive('connecting', 'connecting…');
    ws = new WebSocket(proto + '//' + location.host + '/ws' + q);
    ws.onopen = () => { backoff = 500; lastPong = Date.now(); setLive('on', 'live'); };
    ws.onmessage = (m) => { try { handle(JSON.parse(m.data)); } catch (e) { console.error(e); } };
    ws.onclose = () => {
      const wait = backoff; backoff = Math.min(backoff * 2, 10000);
      setLive('off', 'offline, retrying in ' + Math.ceil(wait / 1000) + 's');
      setTimeout(connect, wait);
    };
  }
  setInterval(() => {
    if (!ws || ws.readyState !== 1) return;
    if (Date.now() - lastPong > 40000) { ws.close(); return; } // silent server: reconnect
    ws.send('{"type":"ping"}');
  }, 15000);

  function handle(msg) {
    if (msg.type === 'pong') { lastPong = Date.now(); return; }
    lastPong = Date.now();
    if (msg.type === 'snapshot') { applySnapshot(msg.data); S.seq = msg.seq; render(); return; }
    if (S.seq != null && msg.seq <= S.seq) return; // already have it
    if (S.seq != null && msg.seq !== S.seq + 1) { ws.close(); return; } // a gap: resume with ?since
    S.seq = msg.seq;
    apply(msg);
    if (onEvent) onEvent(msg);
    render();
  }

  function applySnapshot(d) {
    S.cards = new Map((d.cards || []).map((c) => [c.id, c]));
    S.agents = new Map((d.agents || []).map((a) => [a.name, a]));
    S.doneTotal = d.done_total || 0;
    S.rejected = (d.status && d.status.jobs && d.status.jobs.rejected) || 0;
    S.costs = d.costs || null;
  }

  const placeOf = (label) => {
    const [state, ...rest] = String(label || 'inbox').split('/');
    return { state, agent: rest.length ? rest.join('/') : null };
  };

  function moveCard(id, label, agent) {
    let c = S.cards.get(id);
    // A card the page learns of from an event alone is `pending` until its fields arrive:
    // the board shows it at the top of its column at once, then at its rank.
    if (!c) { c = { id, title: id, priority: 'medium', requires: [], attempts: 0, created: new Date().toISOString(), pending: true }; S.cards.set(id, c); }
    const before = c.state;
    const p = placeOf(label);
    c.state = p.state;
    if (p.agent || agent) c.agent = p.agent || agent;
    c.updated = new Date().toISOString();
    if (c.state !== 'inbox') c.waiting = null;
    if (before !== 'done' && c.state === 'done') S.doneTotal++;
    if (before === 'done' && c.state !== 'done') S.doneTotal--;
    want(id);
  }

  function apply(e) {
    const d = e.data || {};
    const a = d.agent ? S.agents.get(d.agent) || S.agents.set(d.agent, { name: d.agent, status: 'up' }).get(d.agent) : null;
    switch (e.type) {
      case 'job.created': {
        moveCard(d.id, d.place);
        // The event carries what ranks the card, so it takes its place at once.
        const c = S.cards.get(d.id);
        if (c && c.pending && typeof d.title === 'string') {
          Object.assign(c, { title: d.title, priority: d.priority || c.priority, requires: d.requires || [], created: d.created || c.created, pending: false });
        }
        break;
      }
      case 'job.assigned': case 'job.review': case 'job.done': case 'job.failed': case 'job.requeued': moveCard(d.id, d.to, d.agent); break;
      case 'job.rejected': S.rejected++; break;
      case 'agent.registered': if (a) { a.status = 'up'; a.epoch = d.epoch; wantAgents(); } break;
      case 'agent.heartbeat': if (a && d.beat) {
        a.last_seen = d.beat.ts; a.job = d.beat.job ?? null; a.note = d.beat.note ?? null;
        a.beat_status = d.beat.status ?? null; if (d.ctx_ratio != null) a.ctx_ratio = d.ctx_ratio;
        a.progress = d.beat.progress ?? null; a.cpu = d.beat.cpu ?? null; a.mem_mb = d.beat.mem_mb ?? null; a.report_stale = false;
      } break;
      case 'agent.down': if (a) { a.status = 'down'; a.last_seen = d.last_seen; } break;
      case 'agent.up': if (a) { a.status = 'up'; a.last_seen = d.last_seen; } break;
      case 'agent.deregistered': if (a) { a.status = 'unregistered'; a.job = null; } break;
      case 'agent.paused': if (a) a.status = 'paused'; break;
      case 'agent.resumed': if (a) a.status = 'up'; break;
      case 'token.warning': if (a) { a.ctx = 'warning'; if (d.ratio != null) a.ctx_ratio = d.ratio; } break;
      case 'token.breach': if (a) { a.ctx = 'breach'; if (d.ratio != null) a.ctx_ratio = d.ratio; } break;
      case 'cost.receipt': if (S.costs && d.cost_usd != null) {
        for (const p of ['today', 'month', 'total']) if (S.costs[p]) {
          S.costs[p].cost_usd = addDec(S.costs[p].cost_usd, d.cost_usd); S.costs[p].calls = (S.costs[p].calls || 0) + 1;
        }
      } break;
    }
    if (ALERT_TYPES.includes(e.type)) {
      S.alerts++; const b = $('#alert-badge'); if (b && page !== 'alerts') { b.hidden = false; b.textContent = S.alerts; }
    }
  }

  // Cards an event named are fetched (in batches) for the fields events do not carry.
  const wanted = new Set(); const retries = new Map(); let wantTimer = null;
  function want(id) {
    wanted.add(id);
    if (!wantTimer) wantTimer = setTimeout(fetchWanted, 50);
  }
  async function fetchWanted() {
    wantTimer = null;
    const ids = [...wanted].slice(0, 200); ids.forEach((i) => wanted.delete(i));
    if (wanted.size) wantTimer = setTimeout(fetchWanted, 50);
    try {
      const r = await fetch('/api/jobs?ids=' + ids.map(encodeURIComponent).join(','));
      const j = await r.json();
      const got = new Set((j.jobs || []).map((c) => c.id));
      for (const id of ids) {
        // Not in the server's view yet (it is at most 250 ms old): ask again, a few times.
        const n = (retries.get(id) || 0) + 1;
        if (!got.has(id) && S.cards.has(id) && n <= 12) { retries.set(id, n); want(id); } else {
          retries.delete(id); const m = S.cards.get(id); if (m && !got.has(id)) delete m.pending; // given up: rank it as it is
        }
      }
      for (const c of j.jobs || []) {
        const mine = S.cards.get(c.id);
        if (!mine) continue;
        // The place comes from events (newer); the rest from the files.
        for (const k of ['title', 'priority', 'requires', 'attempts', 'created', 'parent', 'kind', 'assignee']) mine[k] = c[k];
        delete mine.pending;
        if (mine.state === 'inbox' && c.state === 'inbox') mine.waiting = c.waiting;
        if (!mine.agent && c.agent) mine.agent = c.agent;
      }
      render();
    } catch (e) { /* the next event retries */ }
  }
  let agentsTimer = null;
  function wantAgents() { if (!agentsTimer) agentsTimer = setTimeout(fetchAgents, 300); }
  async function fetchAgents() {
    agentsTimer = null;
    try {
      const list = await (await fetch('/api/agents')).json();
      for (const n of list) {
        const a = S.agents.get(n.name);
        if (!a) { S.agents.set(n.name, n); continue; }
        for (const k of ['capabilities', 'parent', 'description', 'ctx_target', 'ctx_hard_max', 'interval_s', 'max_concurrent', 'ctx', 'report_stale']) a[k] = n[k];
        if (!a.last_seen || (n.last_seen && n.last_seen > a.last_seen)) { a.last_seen = n.last_seen; a.ctx_ratio = n.ctx_ratio; }
      }
      render();
    } catch (e) { /* retried by the next change */ }
  }

  // ---- rendering, at most once a frame and four times a second ----
  // A view may ask for a shorter gap (the keyed board renders only what changed, so it can
  // afford to show a change within a frame or two).
  let renderer = null; let onEvent = null; let queued = false; let lastRender = 0; let minGap = 250;
  function render() {
    if (queued || !renderer) return;
    queued = true;
    const wait = Math.max(0, minGap - (performance.now() - lastRender));
    setTimeout(() => requestAnimationFrame(() => { queued = false; lastRender = performance.now(); renderer(); }), wait);
  }

  function slider() {
    const commits = boot.commits || []; const s = $('#slider'); const label = $('#slider-label');
    if (!s) return;
    s.max = commits.length; // the rightmost stop is "now"
    const at = boot.at ? commits.findIndex((c) => c.oid.startsWith(boot.at) || c.short === boot.at) : -1;
    s.value = boot.at ? (at >= 0 ? commits.length - 1 - at : 0) : commits.length;
    const show = () => {
      const i = Number(s.value);
      if (i >= commits.length) { label.textContent = 'now (live)'; return; }
      const c = commits[commits.length - 1 - i];
      label.textContent = c.short + ' · ' + c.time.replace('T', ' ').slice(0, 19) + ' · ' + (c.lines[0] || '');
    };
    show();
    if (boot.at && at < 0) label.textContent = boot.at;
    s.addEventListener('input', show);
    s.addEventListener('change', () => {
      const i = Number(s.value);
      location.href = i >= commits.length ? '/' : '/?at=' + commits[commits.length - 1 - i].oid;
    });
  }

  // ---- agent tree ----
  function tree() {
    const collapsed = new Set();
    $('#t-expand').onclick = () => { collapsed.clear(); render(); };
    $('#t-collapse').onclick = () => { for (const a of S.agents.values()) collapsed.add(a.name); render(); };
    $('#t-zoom').oninput = (e) => { $('#tree').style.fontSize = (14 * e.target.value / 100) + 'px'; };
    if (window.pasGraph) {
      $('#g-in').onclick = () => window.pasGraph.zoom(1.25);
      $('#g-out').onclick = () => window.pasGraph.zoom(0.8);
      $('#g-reset').onclick = () => window.pasGraph.reset();
    }
    $('#tree').addEventListener('click', (e) => {
      const t = e.target.closest('.toggle'); if (!t) return;
      const n = t.dataset.agent; collapsed.has(n) ? collapsed.delete(n) : collapsed.add(n); render();
    });
    async function rollups() {
      try {
        const j = await (await fetch('/api/tree')).json();
        const walk = (n) => { S.rollups[n.name] = n.subtree; (n.children || []).forEach(walk); };
        (j.roots || []).forEach(walk); render();
      } catch (e) { /* next round */ }
    }
    rollups(); setInterval(rollups, 5000); setInterval(fetchAgents, 3000); setInterval(render, 1000);
    const gauge = (a) => {
      if (a.ctx_ratio == null) return '<span class="beat">ctx —</span>';
      const r = Math.min(1, a.ctx_ratio); const t = a.ctx_target ?? 0.5; const h = a.ctx_hard_max ?? 0.75;
      const cls = a.ctx_ratio >= h ? 'breach' : a.ctx_ratio >= t ? 'warning' : '';
      return `<span class="gauge" title="context ${Math.round(a.ctx_ratio * 100)}% (warning at ${Math.round(t * 100)}%, breach at ${Math.round(h * 100)}%)"><i class="${cls}" style="width:${r * 100}%"></i><b style="left:${t * 100}%"></b><b style="left:${h * 100}%"></b></span> <span class="beat">${Math.round(a.ctx_ratio * 100)}%</span>`;
    };
    renderer = () => {
      const names = new Set(S.agents.keys()); const kids = new Map(); const roots = [];
      for (const a of S.agents.values()) {
        if (a.parent && names.has(a.parent) && a.parent !== a.name) { if (!kids.has(a.parent)) kids.set(a.parent, []); kids.get(a.parent).push(a); } else roots.push(a);
      }
      const seen = new Set();
      const node = (a) => {
        if (seen.has(a.name)) return ''; seen.add(a.name);
        const ch = (kids.get(a.name) || []).sort((x, y) => x.name.localeCompare(y.name));
        const r = S.rollups[a.name] || {}; const jobs = r.jobs || {};
        const st = a.status || 'unregistered';
        const said = a.beat_status === 'blocked' || a.beat_status === 'error' ? ' said-' + a.beat_status : '';
        const report = (a.beat_status ? ` <span class="said">${esc(a.beat_status)}</span>` : '')
          + (a.progress != null ? ` <progress max="1" value="${Number(a.progress) || 0}" title="${Math.round(100 * a.progress)}%"></progress>` : '')
          + (a.cpu != null ? ` <span class="beat">cpu ${esc(a.cpu)}</span>` : '') + (a.mem_mb != null ? ` <span class="beat">${Math.round(a.mem_mb)} MB</span>` : '')
          + (a.report_stale ? ` <span class="stale" title="figures from an old beat">as of ${ago(a.last_seen)}</span>` : '');
        return `<li class="node${collapsed.has(a.name) ? ' collapsed' : ''}" id="agent-${esc(a.name)}" data-agent="${esc(a.name)}" data-status="${esc(st)}" data-beat="${esc(a.beat_status || '')}"><div class="agent st-${esc(st)}${said}">
          <span class="toggle" data-agent="${esc(a.name)}">${ch.length ? (collapsed.has(a.name) ? '▸' : '▾') : ''}</span>
          <span class="dot ${esc(st)}"></span><strong>${esc(a.name)}</strong> <span class="status">${esc(st)}</span>${report}
          ${gauge(a)} ${a.job ? `<span class="job">on <a href="/jobs/${encodeURIComponent(a.job)}">${esc(a.job)}</a></span>` : ''}
          <span class="beat">beat ${ago(a.last_seen)}</span>
          <span class="roll" title="this agent and everything under it">${money(r.cost_usd)} · ${r.tokens ?? 0} tok · ${jobs.assigned ?? 0} assigned · ${jobs.done ?? 0} done · ${jobs.failed ?? 0} failed</span>
          ${a.note ? `<span class="beat">“${esc(a.note)}”</span>` : ''}</div>
          ${ch.length ? `<ul>${ch.map(node).join('')}</ul>` : ''}</li>`;
      };
      let html = roots.sort((x, y) => x.name.localeCompare(y.name)).map(node).join('');
      for (const a of S.agents.values()) html += node(a); // cycles
      $('#tree').innerHTML = `<ul class="roots">${html || '<li class="hint">No agents yet.</li>'}</ul>`;
      if (window.pasGraph && $('#graph')) window.pasGraph.draw($('#graph'), S.agents, S.rollups, ago, money);
    };
  }

  // ---- costs ----
  function costs() {
    let c = boot.costs || {};
    let timer = null;
    onEvent = (e) => { if (e.type === 'cost.receipt' || e.type === 'budget.alert') { if (!timer) timer = setTimeout(refresh, 1000); } };
    async function refresh() {
      timer = null; if (window.pasCharts) window.pasCharts.refresh();
      try { c = await (await fetch('/api/costs')).json(); render(); } catch (e) { /* next receipt */ }
    }
    if (window.pasCharts) window.pasCharts.mount();
    // `label` is HTML already: callers esc() any part of it that comes from the board.
    const gauge = (label, g, tile = 'tile') => {
      if (!g) return `<div class="${tile}"><h3>${label} budget</h3><div class="hint">none set in pas.yaml</div></div>`;
      const share = Number(g.share || 0); const cls = share >= 1 ? 'bad' : share >= 0.75 ? 'warn' : '';
      return `<div class="${tile}"><h3>${label} budget</h3><div class="big">${money(g.spent_usd)} <small>of ${money(g.limit_usd)}</small></div>
        <div class="bar"><i class="${cls}" style="width:${Math.min(100, share * 100)}%"></i></div><small>${money(g.remaining_usd)} left</small></div>`;
    };
    const table = (title, rows, dim) => `<div><h2>${title}</h2><table class="grid" data-dim="${dim}"><thead><tr><th></th><th>cost</th><th>calls</th><th>tokens in/out</th></tr></thead><tbody>${
      (rows || []).slice().sort((a, b) => (toBig(b.cost_usd) > toBig(a.cost_usd) ? 1 : -1)).slice(0, 20).map((r) => `<tr><td>${esc(r.key)}</td><td>${money(r.cost_usd)}${r.unpriced_calls ? ` <small>+${r.unpriced_calls} unpriced</small>` : ''}</td><td>${r.calls}</td><td>${r.input_tokens}/${r.output_tokens}</td></tr>`).join('') || '<tr><td colspan="4" class="hint">—</td></tr>'}</tbody></table></div>`;
    const chart = (days) => {
      days = (days || []).slice(-30);
      if (!days.length) return '<p class="hint">No spend yet.</p>';
      const max = days.reduce((m, d) => (toBig(d.cost_usd) > m ? toBig(d.cost_usd) : m), 1n);
      const w = 100 / days.length;
      return `<svg class="chart" viewBox="0 0 100 60" preserveAspectRatio="none">${days.map((d, i) => {
        const h = Number((toBig(d.cost_usd) * 5000n) / max) / 100; // bar height, display only
        return `<rect x="${i * w + w * 0.1}" y="${55 - h}" width="${w * 0.8}" height="${h}"><title>${esc(d.key)}: ${money(d.cost_usd)}</title></rect>`;
      }).join('')}</svg>`;
    };
    renderer = () => {
      const b = c.budgets || {};
      $('#cost-tiles').innerHTML = ['today', 'month', 'total'].map((p) => `<div class="tile"><h3>${p === 'month' ? 'This month' : p[0].toUpperCase() + p.slice(1)}</h3><div class="big">${money((c[p] || {}).cost_usd)}</div><small>${(c[p] || {}).calls ?? 0} calls${(c[p] || {}).unpriced_calls ? ', ' + c[p].unpriced_calls + ' without a price' : ''}</small></div>`).join('') + gauge('Daily', b.daily) + gauge('Monthly', b.monthly)
        // One per agent that spent today, when pas.yaml sets agent_daily_usd; fullest first.
        + (b.agents || []).map((g) => gauge(`Agent ${esc(g.agent)} daily`, g, 'tile agent-budget')).join('');
      $('#cost-live').innerHTML = `<h2>Spend per day</h2>${chart(c.by_day)}<div class="cols">${table('By provider', c.by_provider, 'provider')}${table('By model', c.by_model, 'model')}${table('By agent', c.by_agent, 'agent')}${table('By job', c.by_job, 'job')}${table('By status', c.by_status, 'status')}</div>`;
      const rs = (c.receipts || []).slice().reverse();
      $('#receipts tbody').innerHTML = rs.map((r) => `<tr><td>${esc(String(r.ts).replace('T', ' ').slice(0, 19))}</td><td>${esc(r.provider)}/${esc(r.model)}</td><td>${esc(r.agent || '-')}</td><td>${r.job ? `<a href="/jobs/${encodeURIComponent(r.job)}">${esc(r.job)}</a>` : '-'}</td><td>${r.tokens.input}/${r.tokens.output}</td><td>${r.cost_usd == null ? 'no price' : money(r.cost_usd)}</td><td>${esc(r.status)}</td></tr>`).join('') || '<tr><td colspan="7" class="hint">No LLM calls yet.</td></tr>';
    };
  }

  // ---- alerts, activity, job ----
  // Sentences come from ops.js (the same as the server's); this is the fallback.
  const describe = (e) => (window.pasOps ? window.pasOps.describe(e) : describeRaw(e));
  const describeRaw = (e) => {
    const d = e.data || {};
    const who = d.agent ? `<b>${esc(d.agent)}</b> ` : '';
    const job = d.id ? `<a href="/jobs/${encodeURIComponent(d.id)}">${esc(d.id)}</a> ` : '';
    const rest = Object.entries(d).filter(([k]) => !['agent', 'id', 'beat'].includes(k) && d[k] != null)
      .map(([k, v]) => `${esc(k)}=${esc(typeof v === 'object' ? JSON.stringify(v) : v)}`).join(' ');
    const beat = d.beat ? esc([d.beat.status, d.beat.job, d.beat.note].filter(Boolean).join(' · ')) : '';
    return `<time>${esc(String(e.ts).slice(11, 23))}</time><b>${esc(e.type)}</b> ${who}${job}<span class="hint">${rest} ${beat}</span>`;
  };
  function alerts() {
    onEvent = (e) => {
      if (!ALERT_TYPES.includes(e.type)) return;
      const none = $('#no-alerts'); if (none) none.remove();
      const li = document.createElement('li'); li.className = 'alert a-' + e.type.replace('.', '-'); li.innerHTML = describe(e);
      $('#alerts').prepend(li);
    };
    renderer = () => {};
  }
  function activity() {
    const feed = $('#feed'); const filter = $('#a-filter'); const beats = $('#a-beats');
    const events = (boot.recent || []).slice(); let count = 0; const started = Date.now();
    const visible = (e) => (beats.checked || e.type !== 'agent.heartbeat') && (!filter.value || JSON.stringify(e).toLowerCase().includes(filter.value.toLowerCase()));
    const li = (e) => `<li class="k-${esc(e.type.split('.')[0])}${/down|failed|breach|rejected/.test(e.type) ? ' bad' : ''}">${describe(e)}</li>`;
    onEvent = (e) => { events.unshift(e); count++; if (events.length > 500) events.pop(); };
    filter.oninput = beats.onchange = () => render();
    renderer = () => {
      feed.innerHTML = events.filter(visible).slice(0, 300).map(li).join('') || '<li class="hint">Waiting for events…</li>';
      $('#a-rate').textContent = count ? (count / ((Date.now() - started) / 1000)).toFixed(1) + ' events/s since load' : '';
    };
  }
  function job() {
    onEvent = (e) => { if (e.data && e.data.id === boot.id) { const s = $('#job-state'); if (s) s.textContent = placeOf(e.data.to || e.data.place).state; } };
    renderer = () => {};
  }

  // Views kept in their own files register in window.pasViews and get this handle.
  const app = { S, $, esc, ago, money, toBig, fromBig, addDec, boot, render: () => render(), fetchAgents: () => fetchAgents(),
    onEvent: (fn) => { onEvent = fn; } };
  function kanban() { minGap = 50; renderer = window.pasViews.kanban(app); slider(); }
  ({ kanban, tree, costs, alerts, activity, job }[page] || (() => {}))();
  if (boot.at) {
    // A board of the past: render it once, no stream.
    applySnapshot(boot.snapshot || {}); setLive('past', 'past: ' + boot.at); render();
  } else {
    connect();
  }
})();
