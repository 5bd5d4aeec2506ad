// pas dashboard, operating views: the banner of what is wrong now (every page), events as
// sentences (the same as src/ops/sentences.rs), and the live providers table.
// Every string from the board goes through esc(); links are built from encoded parts.
'use strict';
(() => {
  const $ = (s, r = document) => r.querySelector(s);
  const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
  const clock = (ts) => (typeof ts === 'string' && ts.length >= 19 ? ts.slice(11, 19) : String(ts ?? '?'));
  const pct = (v) => { const f = Number(v); return v == null || !isFinite(f) ? '?' : Math.round(f * 100) + '%'; };
  const agentHref = (n) => '/tree#agent-' + encodeURIComponent(n);
  const jobHref = (id) => '/jobs/' + encodeURIComponent(id);
  const num = (v) => (Number.isInteger(v) ? String(v) : String(v));

  // An event as { text, links } (text is plain: callers escape it).
  function sentence(e) {
    const d = e.data || {}; const s = (k) => (d[k] == null ? '' : String(d[k]));
    const agent = s('agent'); const id = s('id'); const who = agent || 'an agent';
    const links = [];
    if (agent) links.push({ label: agent, href: agentHref(agent) });
    const job = id || s('job'); if (job) links.push({ label: job, href: jobHref(job) });
    if (d.card) links.push({ label: s('card'), href: jobHref(s('card')) });
    const note = (k) => (d[k] ? `, last note “${s(k)}”` : '');
    // The card as a person knows it: its title (from the board's state), else its id.
    const known = id && window.pas && window.pas.cards && window.pas.cards.get(id);
    const card = known && known.title && known.title !== id ? `“${String(known.title).slice(0, 80)}”` : id;
    const first = (t) => String(t || '').split('\n')[0];
    let text;
    switch (e.type) {
      case 'agent.down': text = `${who} is down: no beat for 2 intervals (${d.interval_s != null ? num(2 * d.interval_s) + ' s' : '?'}), last seen ${clock(d.last_seen)}${note('last_note')}`; break;
      case 'agent.up': text = `${who} is back up: it beat at ${clock(d.last_seen)}`; break;
      case 'agent.deregistered': text = `${who} was deregistered: ${s('reason')}${d.last_seen ? ', last seen ' + clock(d.last_seen) : ''}${note('last_note')}`; break;
      case 'agent.registered': text = `${who} registered (epoch ${s('epoch')})`; break;
      case 'agent.paused': text = `${who} is paused: it keeps its cards and gets no new ones`; break;
      case 'agent.resumed': text = `${who} resumed`; break;
      case 'agent.heartbeat': {
        const b = d.beat || {}; text = `${who} beat`;
        if (b.status) text += ': ' + b.status;
        if (b.job) text += ' on ' + b.job;
        if (b.progress != null) text += ', ' + pct(b.progress) + ' done';
        if (b.note) text += ', “' + b.note + '”';
        break;
      }
      case 'token.warning': text = `${who}'s context is at ${pct(d.ctx_ratio)}, over its target of ${pct(d.target)}`; break;
      case 'token.breach': text = `${who}'s context is at ${pct(d.ctx_ratio)}, over its hard limit of ${pct(d.hard_max)}${d.card ? ': pas dropped save-state card ' + s('card') : ''}`; break;
      case 'budget.alert': text = `the ${s('scope')} budget for ${s('period')} crossed ${pct(d.threshold)}: $${s('spent_usd')} of $${s('limit_usd')} spent`; break;
      case 'job.created': text = `${card} arrived in ${s('place')}`; break;
      case 'job.assigned': text = `${card} was assigned to ${who}`; break;
      case 'job.review': text = `${card} waits for review (${who})`; break;
      case 'job.done': text = `${card} is done (${who})`; break;
      case 'job.failed': text = `${card} failed${d.reason ? ': ' + s('reason') : ''}`; break;
      case 'job.requeued': text = `${card} went back to the inbox${d.reason ? ': ' + s('reason') : ''}`; break;
      case 'job.rejected': text = `${s('file')} was rejected: ${first(d.reason)}`; break;
      case 'file.refused': text = `${s('file')} was refused: ${first(d.reason)}`; break;
      case 'cost.receipt': text = `${s('provider')}/${s('model')} answered${agent ? ' ' + agent : ''}: ${d.cost_usd != null ? '$' + s('cost_usd') : 'no price'}, ${s('input_tokens')} tokens in, ${s('output_tokens')} out`; break;
      default: text = String(e.type);
    }
    return { text, links };
  }
  const linksHtml = (links) => (links || []).map((l) => ` <a href="${esc(l.href)}">${esc(l.label)}</a>`).join('');
  // An event as one line of HTML: time, sentence, links.
  function describe(e) {
    const s = sentence(e);
    return `<time title="${esc(e.ts)}">${esc(String(e.ts).slice(11, 19))}</time> <span class="text">${esc(s.text)}</span>${linksHtml(s.links)}`;
  }

  // ---- the banner of what is wrong now, on every page ----
  const banner = $('#active-alerts');
  const since = (ts) => (ts ? ` <time title="${esc(ts)}">since ${esc(String(ts).replace('T', ' ').slice(0, 19))}</time>` : '');
  function showActive(list) {
    if (!banner) return;
    banner.hidden = !list.length;
    banner.innerHTML = list.map((a) => `<div class="act sev-${esc(a.severity)}" data-key="${esc(a.key)}"><span class="sev">${esc(a.severity)}</span> <span class="text">${esc(a.text)}</span>${since(a.since)}${linksHtml(a.links)}</div>`).join('');
    const now = $('#now');
    if (now) now.innerHTML = list.map((a) => `<li class="alert sev-${esc(a.severity)}"><b>${esc(a.text)}</b>${since(a.since)}${linksHtml(a.links)}</li>`).join('') || '<li class="hint">Nothing is wrong now.</li>';
  }
  async function refreshActive() {
    try { const j = await (await fetch('/api/alerts/active')).json(); showActive(j.active || []); } catch (e) { /* next round */ }
  }
  const boot = JSON.parse(($('#boot') || {}).textContent || '{}');
  if (!boot.at && banner) setInterval(refreshActive, 2000);

  // ---- providers, live ----
  function providersTable(r) {
    const ms = (v) => (v == null ? '—' : Math.round(v) + ' ms');
    return (r.providers || []).map((p) => {
      const b = p.breaker || {};
      const head = `<tr class="prov br-${esc(b.state)}" data-provider="${esc(p.name)}"><th>${esc(p.name)}${p.base_url ? ` <small class="hint">${esc(p.base_url)}</small>` : ''}</th>
        <td class="breaker"><span class="br">${esc(b.state)}</span>${b.cooldown_left_s ? ' ' + Math.round(b.cooldown_left_s) + ' s left' : ''}${b.fails ? ' · ' + esc(b.fails) + ' failures in a row' : ''}</td>
        <td></td><td></td><td></td><td>${esc(p.calls_today)}</td><td>$${esc(p.spend_today_usd)}</td><td></td></tr>`;
      return head + (p.models || []).map((m) => {
        const rc = m.recent || {};
        return `<tr class="model"><td>&nbsp;&nbsp;${esc(m.id)}</td><td></td><td>${ms(rc.p50_ms)}</td><td>${ms(rc.p99_ms)}</td>
          <td>${rc.calls ? esc(rc.errors) + ' of ' + esc(rc.calls) : '—'}</td><td>${esc(m.calls_today)}</td>
          <td>$${esc(m.spend_today_usd)}${m.unpriced_calls_today ? ` <small>+${esc(m.unpriced_calls_today)} unpriced</small>` : ''}</td>
          <td class="err">${m.last_error ? `<time>${esc(String(m.last_error.at).replace('T', ' ').slice(0, 19))}</time> ${esc(m.last_error.text)}` : ''}</td></tr>`;
      }).join('');
    }).join('') || '<tr><td colspan="8" class="hint">No providers in pas.yaml.</td></tr>';
  }
  if (boot.page === 'providers') {
    const body = $('#providers tbody');
    setInterval(async () => {
      try { body.innerHTML = providersTable(await (await fetch('/api/providers')).json()); } catch (e) { /* next round */ }
    }, 2000);
  }

  window.pasOps = { sentence, describe, refreshActive };
})();
