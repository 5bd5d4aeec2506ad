// pas dashboard, traces: the list, one trace (span tree beside a waterfall, subtree
// roll-ups, a span's messages as a conversation, "edit and replay"), and two traces lined
// up. The data is the JSON twin's document in the boot block; live updates come from
// `trace.span` events on /ws. Every span text is set with textContent, never as HTML, so
// a prompt holding <script> is shown as text.
'use strict';
(() => {
  const boot = JSON.parse(document.getElementById('boot').textContent || '{}');
  if (boot.page !== 'traces') return;
  const $ = (s, r = document) => r.querySelector(s);

  // An element with text children (strings become text nodes, never markup).
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = String(v);
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, String(v));
    }
    for (const k of kids.flat()) {
      if (k == null) continue;
      e.appendChild(typeof k === 'string' || typeof k === 'number' ? document.createTextNode(String(k)) : k);
    }
    return e;
  }
  const money = (s) => (s == null ? '—' : '$' + s);
  const signed = (s) => (s == null ? '—' : (String(s).startsWith('-') ? '-$' + String(s).slice(1) : '+$' + s));
  const ms = (v) => (v == null ? 'running' : v < 1000 ? Math.round(v) + ' ms' : (v / 1000).toFixed(2) + ' s');
  const link = (href, text) => el('a', { href }, text);
  const traceHref = (id) => '/traces/' + encodeURIComponent(id);

  // ---- the list ----
  function drawList(doc) {
    const body = $('#trace-list tbody'); body.textContent = '';
    for (const t of doc.traces || []) {
      body.appendChild(el('tr', {},
        el('td', {}, link(traceHref(t.trace_id), t.trace_id.slice(0, 12) + '…')),
        el('td', { text: t.root }), el('td', { text: t.agent || '' }),
        el('td', {}, t.job ? link('/jobs/' + encodeURIComponent(t.job), t.job) : ''),
        el('td', { text: t.spans }), el('td', { text: ms(t.duration_ms) }),
        el('td', { text: `${t.input_tokens}/${t.output_tokens}` }), el('td', { text: money(t.cost_usd) }),
        el('td', { text: t.status })));
    }
    if (!(doc.traces || []).length) body.appendChild(el('tr', {}, el('td', { colspan: 9, class: 'hint', text: 'No traces yet.' })));
  }

  // ---- one trace ----
  let doc = boot.doc; let selected = null; let drawnDetail = null;
  // The forest in tree order with depths, without recursion.
  function flatten(forest) {
    const out = []; const stack = (forest || []).map((n) => [n, 0]).reverse();
    while (stack.length) {
      const [n, d] = stack.pop(); out.push([n, d]);
      for (let i = (n.children || []).length - 1; i >= 0; i--) stack.push([n.children[i], d + 1]);
    }
    return out;
  }
  // The first rows are drawn at once and the rest after that first paint, in one go (a
  // table laid out again for every slice costs more than it saves), so a 100,000-span
  // trace shows its top at once; a newer draw (a live update) stops an older one.
  const FIRST = 300; let drawing = 0;
  function drawTrace() {
    const rows = flatten(doc.spans);
    const t = doc.totals || {};
    $('#trace-title').textContent = 'Trace ' + doc.trace_id;
    $('#trace-totals').textContent = `${t.spans} spans · tokens ${t.input_tokens}/${t.output_tokens} · cost ${money(t.cost_usd)}${t.errors ? ' · ' + t.errors + ' errors' : ''}`;
    // Loops, not Math.min(...xs): a spread of 100,000 arguments overflows the stack.
    let t0 = Infinity; let t1 = -Infinity;
    for (const [n] of rows) {
      const s = Date.parse(n.start); const e = Date.parse(n.end || n.start) || Date.now();
      if (s < t0) t0 = s;
      if (e > t1) t1 = e;
    }
    t1 = Math.max(t1, t0 + 1);
    const body = $('#trace-tree tbody'); body.textContent = '';
    const me = ++drawing;
    const row = ([n, depth]) => {
      const start = Date.parse(n.start); const end = n.end ? Date.parse(n.end) : Date.now();
      const bar = el('div', { class: `wf-bar k-${n.kind} st-${n.status}`, title: ms(n.duration_ms) });
      bar.style.left = ((start - t0) / (t1 - t0) * 100).toFixed(2) + '%';
      bar.style.width = (Math.max(end - start, 0) / (t1 - t0) * 100).toFixed(2) + '%';
      const name = el('td', { class: 'name', title: n.name }, n.name);
      name.style.paddingLeft = (0.3 + Math.min(depth, 30) * 1.1) + 'rem';
      const tot = n.totals || {};
      return el('tr', { class: `span st-${n.status}${selected === n.span_id ? ' sel' : ''}`, 'data-span': n.span_id,
        onclick: () => select(n.span_id) },
        name, el('td', { text: n.kind }),
        el('td', { text: n.input_tokens != null || n.output_tokens != null ? `${n.input_tokens ?? 0}/${n.output_tokens ?? 0}` : '' }),
        el('td', { text: (n.cost_usd != null ? money(n.cost_usd) : '') + ((n.children || []).length ? ` (${money(tot.cost_usd)})` : '') }),
        el('td', { class: 'wf' }, el('div', { class: 'wf-lane' }, bar)));
    };
    const slice = (from, upto) => {
      if (me !== drawing) return;
      const frag = document.createDocumentFragment();
      for (let i = from; i < Math.min(upto, rows.length); i++) frag.appendChild(row(rows[i]));
      body.appendChild(frag);
      if (upto < rows.length) requestAnimationFrame(() => setTimeout(() => slice(upto, rows.length)));
    };
    slice(0, FIRST);
    // The detail is drawn again only for another span, so a live update does not wipe
    // a replay form being edited.
    const chosen = rows.find(([n]) => n.span_id === selected);
    if (chosen && drawnDetail !== selected) { drawnDetail = selected; drawDetail(chosen[0]); }
  }

  // Marks span `id` as selected (without drawing the tree again) and shows its detail.
  function select(id) {
    selected = id; drawnDetail = id;
    for (const r of document.querySelectorAll('#trace-tree tr.sel')) r.classList.remove('sel');
    const r = document.querySelector(`#trace-tree tr[data-span="${CSS.escape(id)}"]`);
    if (r) r.classList.add('sel');
    const n = flatten(doc.spans).find(([x]) => x.span_id === id);
    if (n) drawDetail(n[0]);
  }

  // A message's content as text: a string, or the text of its parts.
  const contentText = (c) => (typeof c === 'string' ? c : Array.isArray(c)
    ? c.map((p) => (typeof p === 'string' ? p : p.text != null ? p.text : '[' + (p.type || 'part') + ']')).join('\n') : c == null ? '' : JSON.stringify(c));
  function message(m) {
    const role = String(m.role || '?');
    const box = el('div', { class: 'msg role-' + role.replace(/[^a-z]/g, '') },
      el('span', { class: 'role', text: role + (m.tool_call_id ? ' → ' + m.tool_call_id : '') + (m.name ? ' (' + m.name + ')' : '') }),
      contentText(m.content));
    for (const c of m.tool_calls || []) {
      const f = c.function || {};
      box.appendChild(el('span', { class: 'call', text: `${f.name || '?'}(${f.arguments || ''})${c.id ? '  #' + c.id : ''}` }));
    }
    return box;
  }
  const answerOf = (out) => (out && out.choices && out.choices[0] && out.choices[0].message) || null;
  const messagesOf = (input) => (Array.isArray(input) ? input : input && Array.isArray(input.messages) ? input.messages : null);

  // A page's tree comes without messages (`content: false`): a span's are fetched when it
  // is first shown, and kept.
  function drawDetail(n) {
    if (doc.content === false && !n.fetched) {
      fetch(`/api/traces/${encodeURIComponent(doc.trace_id)}/spans/${encodeURIComponent(n.span_id)}`, { credentials: 'same-origin' })
        .then((r) => (r.ok ? r.json() : null))
        .then((full) => {
          n.fetched = true;
          if (full) { n.input = full.input; n.output = full.output; n.attrs = full.attrs; }
          if (selected === n.span_id) drawDetail(n);
        });
      return;
    }
    const d = $('#span-detail'); d.textContent = '';
    d.appendChild(el('h3', { id: 'span-name' }, n.name));
    const facts = [`${n.kind} · ${n.status} · ${ms(n.duration_ms)}`];
    if (n.model) facts.push(`${n.provider || '?'}/${n.model}`);
    if (n.cost_usd != null) facts.push(money(n.cost_usd));
    if (n.ttft_ms != null) facts.push('TTFT ' + ms(n.ttft_ms));
    d.appendChild(el('p', { class: 'hint', text: facts.join(' · ') }));
    const links = el('p', {});
    if (n.job) links.append('job ', link('/jobs/' + encodeURIComponent(n.job), n.job), ' ');
    if (n.receipt_id) links.append('receipt ', el('code', { text: n.receipt_id }), ' (', link('/costs', 'costs'), ')');
    if (links.childNodes.length) d.appendChild(links);
    const msgs = messagesOf(n.input);
    if (msgs) {
      d.appendChild(el('h4', { text: 'Conversation' }));
      const conv = el('div', { class: 'conv', id: 'conversation' }, msgs.map(message));
      if (n.input && Array.isArray(n.input.tools) && n.input.tools.length) {
        conv.appendChild(el('p', { class: 'hint', text: 'tools: ' + n.input.tools.map((t) => (t.function || t).name).join(', ') }));
      }
      d.appendChild(conv);
      const a = answerOf(n.output);
      if (a) d.appendChild(el('div', { class: 'conv', id: 'answer' }, el('h4', { text: 'Answer' }), message(a)));
      else if (n.output != null) d.appendChild(el('pre', { class: 'attrs', text: JSON.stringify(n.output, null, 2) }));
    } else {
      if (n.input != null) d.append(el('h4', { text: 'Input' }), el('pre', { class: 'attrs', text: JSON.stringify(n.input, null, 2) }));
      if (n.output != null) d.append(el('h4', { text: 'Output' }), el('pre', { class: 'attrs', text: JSON.stringify(n.output, null, 2) }));
      if (n.kind === 'llm' && n.input == null) d.appendChild(el('p', { class: 'hint', text: 'No messages recorded (traces.capture is metadata or off).' }));
    }
    d.append(el('h4', { text: 'Attributes' }), el('pre', { class: 'attrs', text: JSON.stringify(n.attrs || {}, null, 2) }));
    if (n.kind === 'llm' && msgs && n.input && !Array.isArray(n.input)) d.appendChild(replayForm(n));
  }

  // ---- edit and replay ----
  function replayForm(n) {
    const box = el('div', { class: 'replay-form', id: 'replay' }, el('h4', { text: 'Edit and replay' }));
    if (!boot.replay) { box.appendChild(el('p', { class: 'hint', text: 'Replay is off here (dashboard: {replay: false}); use pas replay.' })); return box; }
    const params = Object.fromEntries(Object.entries(n.input).filter(([k]) => !['model', 'messages', 'stream', 'stream_options'].includes(k)));
    const model = el('input', { name: 'model', value: n.input.model || '' });
    const policy = el('select', { name: 'policy' }, ['', 'local', 'cheapest', 'fastest', 'balanced'].map((p) => el('option', { value: p, text: p || '(configured)' })));
    const messages = el('textarea', { name: 'messages' }); messages.value = JSON.stringify(n.input.messages, null, 2);
    const set = el('textarea', { name: 'set' }); set.value = JSON.stringify(params, null, 2);
    const status = el('p', { class: 'hint', id: 'replay-status' });
    const result = el('div', { class: 'side-by-side', id: 'replay-result' });
    const go = el('button', { type: 'submit', text: 'Replay' });
    const form = el('form', {
      onsubmit: async (ev) => {
        ev.preventDefault();
        let body;
        try {
          const edited = JSON.parse(set.value || '{}');
          for (const k of Object.keys(params)) if (!(k in edited)) edited[k] = null; // removed
          body = { replay_of: `${n.trace_id}/${n.span_id}`, model: model.value || undefined,
            policy: policy.value || undefined, messages: JSON.parse(messages.value), set: edited };
        } catch (e) { status.textContent = 'Not valid JSON: ' + e.message; return; }
        go.disabled = true; status.textContent = 'writing the replay card…';
        try {
          const r = await fetch('/api/replays', { method: 'POST', credentials: 'same-origin',
            headers: { 'Content-Type': 'application/json', 'X-Pas-Replay': '1' }, body: JSON.stringify(body) });
          const v = await r.json();
          if (!r.ok) { status.textContent = (v.error && v.error.message) || ('refused: ' + r.status); return; }
          status.textContent = ''; status.append('card ', link('/jobs/' + encodeURIComponent(v.job), v.job), ' is running…');
          await waitFor(v.job, n, status, result);
        } finally { go.disabled = false; }
      },
    }, el('label', {}, 'model ', model), ' ', el('label', {}, 'policy ', policy),
    el('label', {}, 'messages (JSON)', messages), el('label', {}, 'parameters (JSON; remove one to drop it)', set), go);
    box.append(form, status, result);
    return box;
  }
  // Polls the replay card until it is done or failed, then shows both answers.
  async function waitFor(job, n, status, result) {
    for (let i = 0; i < 600; i++) {
      await new Promise((r) => setTimeout(r, 500));
      const r = await fetch('/api/jobs/' + encodeURIComponent(job), { credentials: 'same-origin' });
      if (!r.ok) continue;
      const d = await r.json(); const state = d.job && d.job.state;
      if (state !== 'done' && state !== 'failed') continue;
      const card = d.card || {}; const res = card.result || {};
      status.textContent = ''; status.append(`replay ${state}: `, link('/jobs/' + encodeURIComponent(job), job),
        d.trace_id ? ' · ' : '', d.trace_id ? link(traceHref(d.trace_id), 'its trace') : '',
        ' · ', link(`/traces/${encodeURIComponent(n.trace_id)}/vs/${encodeURIComponent(d.trace_id || job)}`, 'compare the traces'));
      result.textContent = '';
      const old = answerOf(n.output);
      const fresh = state === 'done' ? { role: 'assistant', content: res.text, tool_calls: res.tool_calls } : { role: 'error', content: card.error };
      result.append(
        el('div', { id: 'answer-old' }, el('h4', { text: `original · ${n.model || '?'} · ${money(n.cost_usd)}` }), old ? message(old) : 'no answer recorded'),
        el('div', { id: 'answer-new' }, el('h4', { text: `replay · ${res.model || '?'} · ${money(res.cost_usd)}` }), message(fresh)));
      return;
    }
    status.textContent = 'the replay card has not finished yet; see ' + job;
  }

  // ---- two traces ----
  function drawVs(v) {
    const s = $('#vs-summary'); s.textContent = '';
    const f = v.first_divergence;
    s.append(
      el('p', {}, 'A ', link(traceHref(v.a), v.a), ` · ${v.totals_a.spans} spans · ${money(v.totals_a.cost_usd)}`),
      el('p', {}, 'B ', link(traceHref(v.b), v.b), ` · ${v.totals_b.spans} spans · ${money(v.totals_b.cost_usd)}`),
      el('p', { text: `Δ tokens ${v.input_tokens_delta}/${v.output_tokens_delta} · Δ cost ${signed(v.cost_usd_delta)}` }),
      el('p', { id: 'first-divergence', text: f ? `first divergence: ${f.name} (${(f.differs || []).join(', ')})` : 'no divergence' }));
    const body = $('#vs-rows tbody'); body.textContent = '';
    (v.rows || []).forEach((r, i) => {
      const side = (x) => (x ? el('td', {}, el('div', { text: `${x.model || ''} ${x.status}` }), el('div', { class: 'hint', text: x.output || '' })) : el('td', { class: 'hint', text: '—' }));
      const name = el('td', { class: 'name', text: (r.a || r.b).name }); name.style.paddingLeft = (0.3 + Math.min(r.depth, 30) * 1.1) + 'rem';
      body.appendChild(el('tr', { class: (r.differs.length ? 'differs' : '') + (f && f.row === i ? ' first' : '') },
        el('td', { text: r.matched_by || '' }), name, side(r.a), side(r.b),
        el('td', { text: `${r.input_tokens_delta}/${r.output_tokens_delta}` }), el('td', { text: signed(r.cost_usd_delta) }),
        el('td', { text: r.differs.join(', ') })));
    });
  }

  // ---- live: trace.span events for this trace refetch it ----
  function live() {
    let timer = null;
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const sock = new WebSocket(proto + '//' + location.host + '/ws');
    sock.onmessage = (m) => {
      let e; try { e = JSON.parse(m.data); } catch (_) { return; }
      if (e.type !== 'trace.span' || !e.data || e.data.trace_id !== doc.trace_id || timer) return;
      timer = setTimeout(async () => {
        timer = null;
        const r = await fetch('/api/traces/' + encodeURIComponent(doc.trace_id) + '?content=false', { credentials: 'same-origin' });
        if (r.ok) { doc = await r.json(); drawTrace(); }
      }, 250);
    };
    sock.onclose = () => setTimeout(live, 2000);
  }

  if (!boot.doc) return;
  if (boot.mode === 'list') drawList(boot.doc);
  else if (boot.mode === 'one') { drawTrace(); live(); window.pasTrace = { select }; }
  else if (boot.mode === 'vs') drawVs(boot.doc);
})();
