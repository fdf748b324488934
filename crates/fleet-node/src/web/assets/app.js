// The fleet dashboard: the merged mesh from /api/v1/agents, kept live by /api/v1/events (SSE),
// and a pane in a terminal (xterm.js) over /api/v1/agents/{host}/{name}/watch|attach.
// Plain script, no build step (docs/operations.md "Dashboard").
'use strict';

const $ = (s) => document.querySelector(s);
const st = { me: null, agents: new Map(), hosts: new Map(), sel: null, term: null, ws: null, mode: 'watch' };
const key = (host, name) => `${name}@${host}`;

async function api(path, body) {
  const opts = { credentials: 'same-origin', headers: {} };
  if (body !== undefined) {
    opts.method = 'POST';
    opts.headers['content-type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  let json = null;
  try { json = await r.json(); } catch (_) { /* not JSON */ }
  return { status: r.status, ok: r.ok, body: json };
}

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v; else e.setAttribute(k, v);
  }
  for (const k of kids) if (k !== null && k !== undefined) e.append(k);
  return e;
}

function banner(html) {
  const b = $('#banner');
  b.hidden = !html;
  b.innerHTML = html || '';
}

function ago(s) {
  if (s === null || s === undefined) return '-';
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  return `${Math.floor(s / 3600)}h`;
}

// A word with its colour class.
const badge = (word, cls) => el('span', { class: `state ${cls || word}` }, word);

function beatCell(a) {
  const hb = a.heartbeat || {};
  const age = hb.age_seconds === null || hb.age_seconds === undefined ? null
    : hb.age_seconds + Math.floor((Date.now() - (a._seen || Date.now())) / 1000);
  const td = el('td', { class: 'hb', 'data-label': 'heartbeat', title: hb.reason || hb.ts || '' },
    badge(hb.health || 'unknown'), ' ', el('span', { class: 'dim' }, `${ago(age)}${hb.status ? ' ' + hb.status : ''}`));
  return td;
}

function activityCell(a) {
  const act = a.activity || { state: 'unknown' };
  const since = act.since_unix_ms ? Math.max(0, Math.floor((Date.now() - act.since_unix_ms) / 1000)) : null;
  return el('td', { class: 'activity', 'data-label': 'activity', title: act.detail || '' },
    badge(act.state), ' ', el('span', { class: 'dim' }, `${ago(since)} ${act.source || ''}`));
}

// One row per agent, kept across updates (only its cells are redrawn), so that a click or a
// reference to the row is never lost to an event that arrived meanwhile.
const rows = new Map();
function agentRow(a) {
  const k = key(a.host, a.name);
  let tr = rows.get(k);
  if (!tr) {
    tr = el('tr', { class: 'agent', 'data-agent': k, tabindex: '0' });
    tr.addEventListener('click', () => openPane(a.host, a.name));
    tr.addEventListener('keydown', (e) => { if (e.key === 'Enter') openPane(a.host, a.name); });
    rows.set(k, tr);
  }
  tr.replaceChildren(
    el('td', { class: 'name' }, a.name, a.managed === false ? el('span', { class: 'dim' }, ' unmanaged') : null),
    el('td', { 'data-label': 'class' }, `${a.class || '-'} / ${a.runtime || '-'}`),
    beatCell(a),
    activityCell(a),
    el('td', { 'data-label': 'pane' }, badge(a.pane === 'alive' ? 'alive' : a.pane, a.pane === 'alive' ? 'ok' : a.pane),
      el('span', { class: 'dim' }, ` ${a.current_command || ''}`)),
    el('td', { 'data-label': 'idle' }, ago(a.idle_seconds)));
  tr.classList.toggle('selected', st.sel === k);
  return tr;
}

function render() {
  const hosts = new Set([...st.hosts.keys(), ...[...st.agents.values()].map((a) => a.host)]);
  const table = el('table', {},
    el('thead', {}, el('tr', {}, ...['agent', 'class / runtime', 'heartbeat', 'activity', 'pane', 'idle']
      .map((h) => el('th', {}, h)))));
  for (const host of [...hosts].sort()) {
    const h = st.hosts.get(host) || { state: 'unknown' };
    const agents = [...st.agents.values()].filter((a) => a.host === host).sort((x, y) => x.name.localeCompare(y.name));
    const tb = el('tbody', { 'data-host': host });
    tb.append(el('tr', { class: 'host' }, el('td', { colspan: '6' }, host, ' ', badge(h.state),
      el('span', { class: 'dim' }, ` ${agents.length} agent${agents.length === 1 ? '' : 's'}${h.latency_ms !== undefined && h.latency_ms !== null ? `, ${h.latency_ms} ms` : ''}${h.detail ? ' · ' + h.detail : ''}${h.roster_problem ? ' · roster: ' + h.roster_problem : ''}`))));
    for (const a of agents) tb.append(agentRow(a));
    table.append(tb);
  }
  $('#fleet').replaceChildren(table);
  paneState();
}

let renderPending = false;
function soon() {
  if (renderPending) return;
  renderPending = true;
  requestAnimationFrame(() => { renderPending = false; render(); });
}

function update(a) {
  a._seen = Date.now();
  const k = key(a.host, a.name);
  st.agents.set(k, a);
  if (rows.has(k) && rows.get(k).isConnected) agentRow(a); else soon();
  if (st.sel === k) paneState();
}

async function loadAgents() {
  const r = await api('/api/v1/agents?scope=mesh');
  if (r.status === 401) return unpaired();
  if (!r.ok) return banner(`cannot list the fleet: ${r.body && r.body.error ? r.body.error.message : r.status}`);
  st.agents.clear();
  st.hosts.clear();
  const before = new Set(rows.keys());
  for (const row of r.body) {
    if (row.record === 'host') st.hosts.set(row.host, row);
    else { row._seen = Date.now(); st.agents.set(key(row.host, row.name), row); before.delete(key(row.host, row.name)); }
  }
  for (const k of before) rows.delete(k);
  render();
}

let reloadTimer = null;
function reloadSoon() {
  clearTimeout(reloadTimer);
  reloadTimer = setTimeout(loadAgents, 300);
}

function events() {
  const es = new EventSource('/api/v1/events');
  const live = $('#live');
  es.onopen = () => { live.className = 'state ok'; live.textContent = 'live'; };
  es.onerror = () => { live.className = 'state stale'; live.textContent = 'reconnecting'; };
  const on = (name, f) => es.addEventListener(name, (e) => f(JSON.parse(e.data)));
  const patch = (d, f) => {
    const a = st.agents.get(key(d.host, d.agent));
    if (a) { f(a); update(a); }
  };
  on('beat', (d) => patch(d, (a) => { a.heartbeat = d.heartbeat; }));
  on('health_change', (d) => patch(d, (a) => { a.heartbeat = d.heartbeat; }));
  on('activity_change', (d) => patch(d, (a) => { a.activity = d.activity; }));
  on('agent_appeared', (d) => { if (d.record) update(d.record); });
  on('agent_gone', (d) => { st.agents.delete(key(d.host, d.agent)); rows.delete(key(d.host, d.agent)); soon(); });
  on('host_up', reloadSoon);
  on('host_down', reloadSoon);
  on('snapshot_end', reloadSoon);
}

function unpaired() {
  banner('This browser is not paired with the fleet. On the node\'s host run <code>fleet web pair</code> ' +
    '(or <code>fleet web pair --role operator</code>) and open the link it prints.');
  $('#live').className = 'state unknown';
  $('#live').textContent = 'not paired';
}

// ---- the pane ----

function paneState() {
  if (!st.sel) return;
  const a = st.agents.get(st.sel);
  const s = $('#pane-state');
  const act = a && a.activity ? a.activity.state : 'unknown';
  s.className = `state ${act}`;
  s.textContent = act;
}

function closeSocket() {
  if (st.ws) { st.ws.onclose = null; st.ws.close(); st.ws = null; }
}

function openPane(host, name, mode) {
  st.sel = key(host, name);
  st.mode = mode || 'watch';
  document.querySelectorAll('tr.agent.selected').forEach((t) => t.classList.remove('selected'));
  const row = document.querySelector(`tr[data-agent="${CSS.escape(st.sel)}"]`);
  if (row) row.classList.add('selected');
  $('#pane').hidden = false;
  $('#pane-title').textContent = st.sel;
  $('#receipt').textContent = '';
  $('#receipt').className = '';
  for (const b of ['#watch', '#attach']) { const e = $(b); if (e) e.classList.toggle('on', b === `#${st.mode}`); }
  paneState();
  closeSocket();
  if (st.term) st.term.dispose();
  const term = new Terminal({ cols: 80, rows: 24, scrollback: 1000, fontSize: 13,
    disableStdin: st.mode !== 'attach', cursorBlink: st.mode === 'attach',
    theme: { background: '#0b0d10' } });
  st.term = term;
  term.open($('#term'));
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(`${proto}//${location.host}/api/v1/agents/${encodeURIComponent(host)}/${encodeURIComponent(name)}/${st.mode}`);
  ws.binaryType = 'arraybuffer';
  st.ws = ws;
  ws.onmessage = (e) => {
    if (typeof e.data !== 'string') { term.write(new Uint8Array(e.data)); return; }
    const m = JSON.parse(e.data);
    if (m.type === 'screen') { term.reset(); term.resize(Math.max(m.width, 2), Math.max(m.height, 1)); }
    else if (m.type === 'size') term.resize(Math.max(m.width, 2), Math.max(m.height, 1));
    else if (m.type === 'ended') term.write(`\r\n\x1b[7m ${st.mode} ended: ${m.reason} \x1b[0m`);
  };
  ws.onclose = (e) => {
    if (e.code !== 1000 && e.code !== 1001) {
      term.write(`\r\n\x1b[7m the ${st.mode} could not be opened or broke (code ${e.code}) \x1b[0m`);
    }
  };
  if (st.mode === 'attach') {
    term.onData((d) => { if (ws.readyState === WebSocket.OPEN) ws.send(d); });
    term.focus();
  }
}

async function sendMessage(ev) {
  ev.preventDefault();
  const text = $('#text').value;
  if (!st.sel || !text) return;
  const r = $('#receipt');
  r.className = '';
  r.textContent = 'sending...';
  const res = await api('/api/v1/send', { target: st.sel, text, verify: $('#verify').checked });
  const rec = res.body && (res.body.receipt || (res.body.outcome ? res.body : null));
  if (rec) {
    r.className = rec.outcome;
    r.textContent = `${rec.outcome}: ${rec.agent}@${rec.host}${rec.detail ? ' (' + rec.detail + ')' : ''}, ${rec.elapsed_ms} ms`;
    if (res.ok) $('#text').value = '';
  } else {
    r.className = 'error';
    r.textContent = res.body && res.body.error ? res.body.error.message : `HTTP ${res.status}`;
  }
}

async function lifecycle(verb) {
  if (!st.sel) return;
  const r = $('#receipt');
  r.className = '';
  r.textContent = `${verb}...`;
  const res = await api(`/api/v1/${verb}`, { target: st.sel });
  const rows = Array.isArray(res.body) ? res.body : (res.body && res.body.results) || [];
  if (rows.length) {
    r.className = res.ok ? 'accepted' : 'failed';
    r.textContent = rows.map((x) => `${x.outcome}: ${x.agent}@${x.host}${x.detail ? ' (' + x.detail + ')' : ''}`).join('; ');
  } else {
    r.className = 'error';
    r.textContent = res.body && res.body.error ? res.body.error.message : `HTTP ${res.status}`;
  }
}

async function boot() {
  const who = await api('/api/v1/whoami');
  if (who.status === 401) return unpaired();
  if (!who.ok) return banner(`cannot reach the node: HTTP ${who.status}`);
  st.me = who.body;
  document.title = `fleet · ${st.me.tenant_id}`;
  $('#where').textContent = `tenant ${st.me.tenant_id} · door of ${st.me.host}`;
  $('#who').textContent = `${st.me.label} (${st.me.role})`;
  // A viewer gets no write controls at all (the node refuses them anyway).
  if (st.me.role !== 'operator') document.querySelectorAll('.op').forEach((e) => e.remove());
  else {
    $('#send').addEventListener('submit', sendMessage);
    $('#text').addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); $('#send').requestSubmit(); }
    });
    $('#attach').addEventListener('click', () => { const [n, h] = st.sel.split('@'); openPane(h, n, 'attach'); });
    for (const v of ['start', 'stop', 'restart']) $(`#${v}`).addEventListener('click', () => lifecycle(v));
  }
  $('#watch').addEventListener('click', () => { const [n, h] = st.sel.split('@'); openPane(h, n, 'watch'); });
  $('#close').addEventListener('click', () => {
    closeSocket();
    if (st.term) { st.term.dispose(); st.term = null; }
    st.sel = null;
    $('#pane').hidden = true;
    soon();
  });
  await loadAgents();
  events();
  // Ages move on without events.
  setInterval(soon, 5000);
}

boot();
