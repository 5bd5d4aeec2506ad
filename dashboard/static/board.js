// pas dashboard: the kanban, keyed. Each shown card owns one DOM node, found by its id,
// for as long as it is shown: a render creates the node of a new card, moves the node of
// a card that changed column or rank, rewrites the inside of a card whose fields changed,
// and leaves every other node alone (same object, no entry animation replayed), so a
// board of 10,000 cards stays calm while one card moves (DECISIONS.md, "Pictures and the
// board at scale"). Every string from the board goes through esc().
'use strict';
(() => {
  (window.pasViews = window.pasViews || {}).kanban = (app) => {
    const { S, $, esc, ago, boot } = app;
    const PRIO = { critical: 0, high: 1, medium: 2, low: 3 };
    const limits = { inbox: 200, assigned: 200, review: 200, done: 200, failed: 200 };
    const f = { text: $('#f-text'), agent: $('#f-agent'), cap: $('#f-cap'), prio: $('#f-prio') };
    for (const el of Object.values(f)) el.addEventListener('input', () => app.render());

    // Sort keys are built once per card and field values, so a sort of 10,000 cards
    // compares plain strings instead of re-deriving (and locale-comparing) each pair.
    const prioKey = (c) => {
      const k = (c.pending ? '-' : PRIO[c.priority] ?? 2) + '\u0000' + String(c.created || '') + '\u0000' + c.id;
      if (c._pk !== k) c._pk = k;
      return c._pk;
    };
    const byPrio = (a, b) => { const x = prioKey(a); const y = prioKey(b); return x < y ? -1 : x > y ? 1 : 0; };
    const byNewest = (a, b) => {
      const x = String(a.updated || ''); const y = String(b.updated || '');
      return x > y ? -1 : x < y ? 1 : (a.id > b.id ? -1 : a.id < b.id ? 1 : 0);
    };

    // The inside of a card, without its age (the age ticks: it is set as text alone).
    const body = (c) => `<a class="card-title" href="/jobs/${encodeURIComponent(c.id)}">${esc(c.title)}</a>
    <div class="card-meta"><span class="id">${esc(c.id.length > 14 ? c.id.slice(0, 6) + '…' + c.id.slice(-6) : c.id)}</span>
    <span class="prio">${esc(c.priority)}</span>${c.agent ? `<span class="who">@${esc(c.agent)}</span>` : ''}
    ${c.attempts ? `<span class="attempts">attempt ${Number(c.attempts) + 1}</span>` : ''}${c.archived ? `<span class="archived" title="work/archive/${esc(c.archived)}">archived</span>` : ''}<span class="age" title="${esc(c.created)}"></span></div>
    ${(c.requires || []).length ? `<div class="caps">${c.requires.map((r) => `<span class="cap">${esc(r)}</span>`).join('')}</div>` : ''}
    ${c.state === 'inbox' && c.waiting ? `<div class="why">${esc(c.waiting)}</div>` : ''}`;

    // id -> { el, sig, age, ageText }: the node of each card shown by the last render.
    const nodes = new Map();
    // Ids shown at least once: only a card new to this page gets the entry animation.
    const seen = new Set();
    const groups = new Map(); // agent -> { el, sig }
    const extras = new Map(); // column -> { more, empty }
    let first = true;
    window.pasBoard = { nodes, stats: { created: 0, updated: 0, renders: 0, last_ms: 0 } };

    function cardNode(c, animate) {
      let n = nodes.get(c.id);
      const cls = 'card prio-' + String(c.priority || 'medium').replace(/[^a-z]/g, '') + (c.pending ? ' pending' : '');
      if (!n) {
        const el = document.createElement('article');
        el.dataset.id = c.id;
        n = { el, sig: null, age: null, ageText: '' };
        if (animate) {
          el.classList.add('enter');
          el.addEventListener('animationend', () => el.classList.remove('enter'), { once: true });
        }
        nodes.set(c.id, n);
        window.pasBoard.stats.created++;
      }
      const sig = cls + '\u0000' + body(c);
      if (n.sig !== sig) {
        if (n.sig !== null) window.pasBoard.stats.updated++;
        const entering = n.el.classList.contains('enter');
        n.el.className = cls + (entering ? ' enter' : '');
        n.el.innerHTML = sig.slice(cls.length + 1);
        n.sig = sig; n.age = n.el.querySelector('.age'); n.ageText = '';
      }
      const t = ago(c.state === 'inbox' ? c.created : (c.updated || c.created));
      if (n.ageText !== t) { n.age.textContent = t; n.ageText = t; }
      return n.el;
    }
    function groupNode(g, count) {
      let n = groups.get(g);
      if (!n) { n = { el: document.createElement('div'), sig: null }; n.el.dataset.agent = g; groups.set(g, n); }
      const ag = S.agents.get(g);
      // What the agent says of itself: blocked and error stand out on its group.
      const said = ag && (ag.beat_status === 'blocked' || ag.beat_status === 'error') ? ag.beat_status : '';
      const cls = 'group' + (said ? ' said-' + said : '');
      const html = `<span class="dot ${esc(ag ? ag.status : 'unregistered')}"></span> ${esc(g)} · ${count}${said ? ` <span class="said said-${said}">${said}</span>${ag.note ? ` <span class="hint">“${esc(ag.note)}”</span>` : ''}` : ''}`;
      const sig = cls + '\u0000' + html;
      if (n.sig !== sig) { n.el.className = cls; n.el.innerHTML = html; n.sig = sig; }
      return n.el;
    }
    function extra(name) {
      let x = extras.get(name);
      if (!x) {
        const more = document.createElement('button'); more.className = 'more'; more.type = 'button'; more.dataset.col = name;
        const empty = document.createElement('p'); empty.className = 'hint'; empty.textContent = 'Empty.';
        x = { more, empty }; extras.set(name, x);
      }
      return x;
    }
    // Puts exactly `want` in `col`, in order, touching only the nodes out of place.
    function place(col, want) {
      const keep = new Set(want);
      for (const ch of [...col.childNodes]) if (!keep.has(ch)) ch.remove();
      let cur = col.firstChild;
      for (const el of want) {
        if (cur === el) { cur = cur.nextSibling; continue; }
        col.insertBefore(el, cur);
      }
    }

    let fetchingDone = false;
    // Where the next page of the Done column starts: past the live done cards, it goes on
    // into the archive, whose cards may land in the Failed column (failed, then archived).
    let doneOffset = null;
    async function moreDone() {
      if (fetchingDone) return; fetchingDone = true;
      const have = doneOffset ?? [...S.cards.values()].filter((c) => c.state === 'done').length;
      try {
        const j = await (await fetch('/api/jobs?state=done&limit=200&offset=' + have + (boot.at ? '&at=' + encodeURIComponent(boot.at) : ''))).json();
        doneOffset = have + (j.jobs || []).length;
        for (const c of j.jobs || []) if (!S.cards.has(c.id)) S.cards.set(c.id, c);
      } finally { fetchingDone = false; app.render(); }
    }
    $('#board').addEventListener('click', (e) => {
      const b = e.target.closest('button.more'); if (!b) return;
      limits[b.dataset.col] += 200;
      if (b.dataset.col === 'done') moreDone();
      app.render();
    });
    function syncOptions(sel, values) {
      const have = new Set([...sel.options].map((o) => o.value));
      for (const v of [...values].sort()) if (!have.has(v)) { const o = document.createElement('option'); o.value = v; o.textContent = v; sel.appendChild(o); }
    }

    return () => {
      const t0 = performance.now();
      const text = f.text.value.toLowerCase().split(/\s+/).filter(Boolean);
      const agent = f.agent.value; const cap = f.cap.value; const prio = f.prio.value;
      const filtered = !!(text.length || agent || cap || prio);
      const caps = new Set(); const agentNames = new Set(S.agents.keys());
      const cols = { inbox: [], assigned: [], review: [], done: [], failed: [] };
      for (const c of S.cards.values()) {
        if (c.requires) for (const r of c.requires) caps.add(r);
        if (c.agent) agentNames.add(c.agent);
        if (agent && c.agent !== agent) continue;
        if (cap && !(c.requires || []).includes(cap)) continue;
        if (prio && c.priority !== prio) continue;
        if (text.length) { const hay = (c.id + ' ' + c.title).toLowerCase(); if (!text.every((w) => hay.includes(w))) continue; }
        (cols[c.state] || (cols[c.state] = [])).push(c);
      }
      syncOptions(f.cap, caps); syncOptions(f.agent, agentNames);
      const shownIds = new Set(); const shownGroups = new Set();
      for (const [name, list] of Object.entries(cols)) {
        const col = $('#col-' + name); if (!col) continue;
        if (first) col.textContent = ''; // the server's rendering, taken over once
        list.sort(name === 'done' || name === 'failed' ? byNewest : byPrio);
        const total = name === 'done' && !filtered ? Math.max(S.doneTotal, list.length) : list.length;
        const count = $('#count-' + name); const ct = String(total);
        if (count.textContent !== ct) count.textContent = ct;
        const shown = list.slice(0, limits[name]);
        const want = [];
        const node = (c) => { shownIds.add(c.id); const el = cardNode(c, !first && !seen.has(c.id)); seen.add(c.id); return el; };
        if (name === 'assigned') {
          const by = new Map();
          for (const c of shown) { const g = c.agent || '?'; if (!by.has(g)) by.set(g, []); by.get(g).push(c); }
          for (const [g, cs] of [...by].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))) {
            shownGroups.add(g); want.push(groupNode(g, cs.length));
            for (const c of cs) want.push(node(c));
          }
        } else for (const c of shown) want.push(node(c));
        const x = extra(name);
        if (total > shown.length) {
          const label = `Show ${Math.min(200, total - shown.length)} more of ${total - shown.length}`;
          if (x.more.textContent !== label) x.more.textContent = label;
          want.push(x.more);
        }
        if (!want.length) want.push(x.empty);
        place(col, want);
      }
      // Nodes no render shows any more are let go (a card shown again gets a new one).
      for (const id of [...nodes.keys()]) if (!shownIds.has(id)) nodes.delete(id);
      for (const g of [...groups.keys()]) if (!shownGroups.has(g)) groups.delete(g);
      const rj = String(S.rejected);
      if ($('#count-rejected').textContent !== rj) $('#count-rejected').textContent = rj;
      first = false;
      const st = window.pasBoard.stats; st.renders++; st.last_ms = performance.now() - t0;
    };
  };
})();
