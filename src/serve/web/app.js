// The dashboard of `flow serve`: one page, plain JavaScript, no framework.
// It reads the JSON API under api/v1 (relative, so the page works behind a
// proxy that mounts the serve under a prefix) and follows a run's Server-Sent
// Events with fetch(), because EventSource cannot send the bearer token.
'use strict';

(function () {
  const API = 'api/v1';
  const TOKEN_KEY = 'flow.token';
  const BY_KEY = 'flow.by';
  const POLL_MS = 2000;
  const JOURNAL_KEEP = 2000;     // journal rows kept in the page; older ones drop off the top
  const ACT_SHOW = 500;          // activation rows shown before "show all"
  const RUN_STATUSES = ['running', 'paused', 'stopped', 'completed', 'failed', 'cancelled'];
  const ENDED = new Set(['completed', 'failed', 'cancelled']);
  const ST_CLASSES = ['pending', 'running', 'completed', 'failed', 'skipped', 'cancelled',
                      'paused', 'waiting', 'stopped'].map(s => 'st-' + s);

  const main = document.getElementById('main');

  // ---------------------------------------------------------------- DOM

  // h('a.link', {href: '#'}, 'text', child...): an element; attributes named
  // on* become listeners, `class`/`text`/boolean properties are set directly.
  function h(tag, attrs, ...children) {
    const parts = tag.split('.');
    const el = document.createElement(parts[0] || 'div');
    if (parts.length > 1) el.className = parts.slice(1).join(' ');
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v === null || v === undefined || v === false) continue;
        if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
        else if (k === 'class') el.className = (el.className ? el.className + ' ' : '') + v;
        else if (k === 'text') el.textContent = v;
        else if (k === 'dataset') Object.assign(el.dataset, v);
        else if (k === 'disabled' || k === 'hidden' || k === 'checked' || k === 'selected' ||
                 k === 'value' || k === 'required')
          el[k] = v;
        else el.setAttribute(k, v === true ? '' : String(v));
      }
    }
    append(el, children);
    return el;
  }
  function append(el, ...children) {
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      if (Array.isArray(c)) append(el, ...c);
      else el.appendChild(typeof c === 'object' ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); return el; }
  function replace(el, ...children) { return append(clear(el), children); }

  // ---------------------------------------------------------------- formatting

  function parseTime(s) { if (!s) return null; const d = new Date(s); return isNaN(d) ? null : d; }
  function exact(d) {
    return d.toLocaleString(undefined, {year: 'numeric', month: 'short', day: 'numeric',
      hour: '2-digit', minute: '2-digit', second: '2-digit'});
  }
  function clock(d, ms) {
    const p = n => String(n).padStart(2, '0');
    let s = p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds());
    if (ms) s += '.' + String(d.getMilliseconds()).padStart(3, '0');
    return s;
  }
  // "just now", "3 min ago", "in 5 min"; older than a week: the date
  function relative(d, now) {
    const sec = Math.round(((now || Date.now()) - d.getTime()) / 1000);
    const a = Math.abs(sec);
    let s;
    if (a < 10) return sec >= 0 ? 'just now' : 'in a moment';
    if (a < 60) s = a + ' s';
    else if (a < 3600) s = Math.floor(a / 60) + ' min';
    else if (a < 86400) s = Math.floor(a / 3600) + ' h';
    else if (a < 7 * 86400) s = Math.floor(a / 86400) + ' d';
    else return d.toLocaleDateString(undefined, {year: 'numeric', month: 'short', day: 'numeric'});
    return sec >= 0 ? s + ' ago' : 'in ' + s;
  }
  function duration(sec) {
    if (sec === null || sec === undefined || !isFinite(sec)) return '';
    if (sec < 0) sec = 0;
    if (sec < 1) return Math.round(sec * 1000) + ' ms';
    if (sec < 60) return (sec < 10 ? sec.toFixed(2) : sec.toFixed(1)) + ' s';
    const m = Math.floor(sec / 60), s = Math.floor(sec % 60);
    if (sec < 3600) return m + ' min ' + String(s).padStart(2, '0') + ' s';
    const hr = Math.floor(sec / 3600);
    return hr + ' h ' + String(Math.floor((sec % 3600) / 60)).padStart(2, '0') + ' min';
  }
  function short(v, n) {
    let s = typeof v === 'string' ? v : JSON.stringify(v);
    if (s === undefined) s = String(v);
    n = n || 120;
    return s.length > n ? s.slice(0, n - 1) + '\u2026' : s;
  }
  function pretty(v) { return typeof v === 'string' ? v : JSON.stringify(v, null, 2); }

  // A time shown relative ("3 min ago"), exact in its title; the ticker keeps it fresh.
  function timeEl(iso, opts) {
    const d = parseTime(iso);
    if (!d) return h('span.muted', null, opts && opts.none !== undefined ? opts.none : '\u2014');
    const el = h('time', {datetime: iso, title: exact(d), dataset: {rel: iso}});
    el.textContent = relative(d);
    return el;
  }
  // A duration: fixed when it ended, ticking from `start` while it runs.
  function durationEl(sec, startIso, endIso, running) {
    if (running && parseTime(startIso) && !endIso) {
      const el = h('span.dur.ticking', {dataset: {since: startIso}});
      el.textContent = duration((Date.now() - parseTime(startIso)) / 1000);
      return el;
    }
    if ((sec === null || sec === undefined) && parseTime(startIso) && parseTime(endIso))
      sec = (parseTime(endIso) - parseTime(startIso)) / 1000;
    if (sec === null || sec === undefined) return h('span.dur.none', null, '\u2014');
    return h('span.dur', null, duration(sec));
  }
  setInterval(function tick() {
    const now = Date.now();
    for (const el of document.querySelectorAll('[data-rel]')) {
      const t = relative(new Date(el.dataset.rel), now);
      if (el.textContent !== t) el.textContent = t;
    }
    for (const el of document.querySelectorAll('[data-since]'))
      el.textContent = duration((now - new Date(el.dataset.since)) / 1000);
  }, 1000);

  function badge(status, extra) {
    return h('span.badge.st-' + (status || 'unknown'), null, extra || status || 'unknown');
  }

  // ---------------------------------------------------------------- banner, toast, live dot

  const bannerEl = document.getElementById('banner');
  const bannerText = document.getElementById('banner-text');
  let bannerKind = null;
  function showError(msg, kind) {
    bannerText.textContent = msg;
    bannerKind = kind || 'error';
    bannerEl.hidden = false;
  }
  // Clears the banner only if it shows an error of this kind (a lost connection
  // that came back), never one a person has not read yet.
  function clearError(kind) {
    if (!kind || bannerKind === kind) { bannerEl.hidden = true; bannerKind = null; }
  }
  document.getElementById('banner-close').addEventListener('click', () => clearError());

  let toastEl = null, toastTimer = 0;
  function toast(msg) {
    if (!toastEl) {
      toastEl = h('div.toast', {role: 'status', 'aria-live': 'polite'});
      document.body.appendChild(toastEl);
    }
    toastEl.textContent = msg;
    toastEl.classList.add('show');
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => toastEl.classList.remove('show'), 3500);
  }

  const liveEl = document.getElementById('live');
  function setLive(ok) {
    liveEl.classList.toggle('ok', ok);
    liveEl.classList.toggle('down', !ok);
    liveEl.querySelector('.live-text').textContent = ok ? 'live' : 'offline';
    if (ok) clearError('net');
  }

  // ---------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(status, code, message) { super(message); this.status = status; this.code = code; }
  }
  class AuthError extends Error {}

  function token() { try { return sessionStorage.getItem(TOKEN_KEY); } catch (e) { return null; } }
  function headers(extra) {
    const hd = Object.assign({}, extra);
    const t = token();
    if (t) hd.Authorization = 'Bearer ' + t;
    return hd;
  }
  function apiPath(...parts) { return API + '/' + parts.map(encodeURIComponent).join('/'); }

  async function errorOf(res) {
    let code = 'http_' + res.status, message = res.status + ' ' + res.statusText;
    try {
      const j = await res.json();
      if (j && j.error) { code = j.error.code || code; message = j.error.message || message; }
    } catch (e) { /* not JSON: keep the status line */ }
    return new ApiError(res.status, code, message);
  }

  // fetch() with the token; 401 asks for one and throws AuthError.
  async function request(method, path, body, opts) {
    opts = opts || {};
    const init = {method, headers: headers({Accept: opts.accept || 'application/json'}),
                  signal: opts.signal, cache: 'no-store'};
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      setLive(false);
      showError('Cannot reach flow serve: retrying\u2026', 'net');
      throw e;
    }
    setLive(true);
    if (res.status === 401) {
      askToken(token() !== null);
      throw new AuthError('token needed');
    }
    if (!res.ok) throw await errorOf(res);
    if (opts.text) return res.text();
    if (res.status === 204) return null;
    return res.json();
  }
  const get = (path, opts) => request('GET', path, undefined, opts);
  const post = (path, body) => request('POST', path, body === undefined ? {} : body);

  // Reports what a person should see; AuthError and aborts are handled elsewhere.
  function report(e, what) {
    if (e instanceof AuthError || (e && e.name === 'AbortError')) return;
    if (e instanceof ApiError) showError((what ? what + ': ' : '') + e.message);
    else if (!(e instanceof TypeError)) showError((what ? what + ': ' : '') + (e && e.message || e));
  }

  // ---------------------------------------------------------------- Server-Sent Events

  // Reads an SSE stream with fetch() (EventSource cannot send a token).
  // onEvent({event, data, id}) for each event; resolves when the server closes
  // the stream; `lastId` resumes after that event (Last-Event-ID).
  async function readEvents(path, lastId, signal, onEvent) {
    const hd = headers({Accept: 'text/event-stream'});
    if (lastId !== null && lastId !== undefined) hd['Last-Event-ID'] = String(lastId);
    const res = await fetch(path, {headers: hd, signal, cache: 'no-store'});
    setLive(true);
    if (res.status === 401) { askToken(token() !== null); throw new AuthError('token needed'); }
    if (!res.ok) throw await errorOf(res);
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let buf = '', event = '', data = [], id = null;
    for (;;) {
      const {value, done} = await reader.read();
      if (done) return;
      buf += dec.decode(value, {stream: true});
      let nl;
      while ((nl = buf.search(/[\r\n]/)) >= 0) {
        // a CR at the chunk's end may be the first half of CRLF: wait for more
        if (buf[nl] === '\r' && nl === buf.length - 1) break;
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + (buf[nl] === '\r' && buf[nl + 1] === '\n' ? 2 : 1));
        if (line === '') {
          if (data.length || event) onEvent({event: event || 'message', data: data.join('\n'), id});
          event = ''; data = [];
          continue;
        }
        if (line[0] === ':') continue;
        const c = line.indexOf(':');
        const field = c < 0 ? line : line.slice(0, c);
        let val = c < 0 ? '' : line.slice(c + 1);
        if (val[0] === ' ') val = val.slice(1);
        if (field === 'event') event = val;
        else if (field === 'data') data.push(val);
        else if (field === 'id' && val.indexOf('\0') < 0) id = val;
      }
    }
  }

  // ---------------------------------------------------------------- scopes

  // What a view starts (timers, fetches, streams) ends with it.
  function newScope() {
    const ctl = new AbortController();
    const timers = new Set();
    const scope = {
      signal: ctl.signal,
      alive: true,
      later(ms, fn) {
        const t = setTimeout(() => { timers.delete(t); if (scope.alive) fn(); }, ms);
        timers.add(t);
        return t;
      },
      // fn every `ms` after the previous call settled; at once when the tab shows again
      poll(ms, fn) {
        let t = 0, busy = false;
        const run = async () => {
          if (!scope.alive || busy) return;
          if (document.hidden) { t = scope.later(ms, run); return; }
          busy = true;
          try { await fn(); } catch (e) { report(e); }
          busy = false;
          if (scope.alive) { clearTimeout(t); t = scope.later(ms, run); }
        };
        const vis = () => { if (!document.hidden) { clearTimeout(t); run(); } };
        document.addEventListener('visibilitychange', vis);
        scope.onStop(() => document.removeEventListener('visibilitychange', vis));
        run();
        return run;
      },
      stops: [],
      onStop(fn) { scope.stops.push(fn); },
      stop() {
        scope.alive = false;
        ctl.abort();
        for (const t of timers) clearTimeout(t);
        for (const fn of scope.stops) fn();
      },
    };
    return scope;
  }
  function debounce(scope, ms, fn) {
    let t = 0;
    return () => { clearTimeout(t); t = scope.later(ms, fn); };
  }

  // ---------------------------------------------------------------- router

  let current = null;
  let tokenShown = false;

  function parseHash() {
    const raw = location.hash.replace(/^#\/?/, '');
    const q = raw.indexOf('?');
    const path = (q < 0 ? raw : raw.slice(0, q)).split('/').filter(Boolean).map(decodeURIComponent);
    const params = new URLSearchParams(q < 0 ? '' : raw.slice(q + 1));
    return {path, params};
  }
  function hashFor(path, params) {
    let s = '#/' + path.map(encodeURIComponent).join('/');
    const qs = params ? params.toString() : '';
    return qs ? s + '?' + qs : s;
  }

  function route() {
    if (current) current.stop();
    tokenShown = false;
    const {path, params} = parseHash();
    const section = path[0] || 'runs';
    for (const a of document.querySelectorAll('[data-nav]')) {
      if (a.dataset.nav === section) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    const scope = newScope();
    current = scope;
    clear(main);
    if (section === 'runs' && path[1]) runView(scope, path[1]);
    else if (section === 'runs') runsView(scope, params);
    else if (section === 'flows') flowsView(scope, path[1]);
    else if (section === 'feedback') feedbackView(scope);
    else if (section === 'workers') workersView(scope);
    else {
      document.title = 'Not found \u00b7 flow';
      append(main, h('section.card.empty', null, h('h1', null, 'Nothing here'),
        h('p', null, 'No page ', h('code', null, location.hash), '. ',
          h('a', {href: '#/runs'}, 'Go to the runs'), '.')));
    }
  }
  window.addEventListener('hashchange', route);

  // ---------------------------------------------------------------- token

  function askToken(refused) {
    if (tokenShown) return;
    tokenShown = true;
    if (current) current.stop();
    current = newScope();
    document.title = 'Token \u00b7 flow';
    const input = h('input', {id: 'token', type: 'password', autocomplete: 'current-password',
                              required: true, spellcheck: 'false'});
    const form = h('form.card.token-form', {onsubmit: (ev) => {
      ev.preventDefault();
      const v = input.value.trim();
      if (!v) return;
      try { sessionStorage.setItem(TOKEN_KEY, v); } catch (e) { /* private mode: kept for this page only */ }
      clearError();
      route();
    }},
      h('h1', null, 'Token needed'),
      h('p', null, 'This flow serve asks for the token of its ', h('code', null, '--token-file'),
        '. It is kept in this tab only (sessionStorage) and sent with every request.'),
      refused ? h('p.form-error', {role: 'alert'}, 'The server refused that token.') : null,
      h('label', {for: 'token'}, 'Token'),
      h('div.row', null, input, h('button.btn.primary', {type: 'submit'}, 'Continue')));
    replace(main, form);
    input.focus();
  }

  // ---------------------------------------------------------------- feedback count in the nav

  const fbCount = document.getElementById('feedback-count');
  async function refreshFeedbackCount() {
    try {
      const j = await get(API + '/feedback');
      setFeedbackCount((j.feedback || []).filter(f => !f.expired).length);
    } catch (e) { /* the views report errors; the count just stays */ }
  }
  function setFeedbackCount(n) {
    fbCount.hidden = !n;
    fbCount.textContent = n ? String(n) : '';
    fbCount.setAttribute('aria-label', n + ' open');
  }
  (function pollCount() {
    if (!document.hidden && !tokenShown) refreshFeedbackCount();
    setTimeout(pollCount, 5000);
  })();

  // ---------------------------------------------------------------- runs list

  function runsView(scope, params) {
    document.title = 'Runs \u00b7 flow';
    const status = params.get('status') || '';
    const flow = params.get('flow') || '';
    const cursor = params.get('cursor') || '';
    const setParam = (k, v) => {
      const p = new URLSearchParams(params);
      if (v) p.set(k, v); else p.delete(k);
      p.delete('cursor');
      location.hash = hashFor(['runs'], p);
    };

    const statusSel = h('select', {id: 'f-status', onchange: () => setParam('status', statusSel.value)},
      h('option', {value: ''}, 'any status'),
      h('option', {value: 'running,paused,stopped'}, 'active (running, paused, stopped)'),
      RUN_STATUSES.map(s => h('option', {value: s}, s)));
    statusSel.value = status;
    if (statusSel.value !== status) {
      append(statusSel, h('option', {value: status}, status));
      statusSel.value = status;
    }
    const flowSel = h('select', {id: 'f-flow', onchange: () => setParam('flow', flowSel.value)},
      h('option', {value: ''}, 'any flow'));
    const addFlow = (name) => {
      if (!name || [...flowSel.options].some(o => o.value === name)) return;
      append(flowSel, h('option', {value: name}, name));
    };
    addFlow(flow);
    flowSel.value = flow;
    get(API + '/flows', {signal: scope.signal}).then(j => {
      for (const f of j.flows || []) addFlow(f.name);
      flowSel.value = flow;
    }).catch(() => {});

    const tbody = h('tbody');
    const table = h('table.runs', null,
      h('thead', null, h('tr', null,
        h('th', {scope: 'col'}, 'Status'), h('th', {scope: 'col'}, 'Run'),
        h('th', {scope: 'col'}, 'Flow'), h('th', {scope: 'col'}, 'Started'),
        h('th.num', {scope: 'col'}, 'Duration'), h('th', {scope: 'col'}, 'Runner'))),
      tbody);
    const empty = h('div.empty', {hidden: true});
    const pager = h('nav.pager', {'aria-label': 'Pages'});
    const summary = h('span.muted.summary');

    append(main,
      h('div.page-head', null, h('h1', null, 'Runs'), summary),
      h('section.card', null,
        h('form.filters', {onsubmit: ev => ev.preventDefault()},
          h('div.field', null, h('label', {for: 'f-status'}, 'Status'), statusSel),
          h('div.field', null, h('label', {for: 'f-flow'}, 'Flow'), flowSel),
          (status || flow) ? h('a.btn.ghost', {href: '#/runs'}, 'Clear filters') : null),
        h('div.table-wrap', null, table), empty, pager));

    const rows = new Map();
    function rowFor(r, waiting) {
      const sig = JSON.stringify(r) + waiting;
      let row = rows.get(r.id);
      if (row && row.sig === sig) return row.tr;
      const href = hashFor(['runs', r.id]);
      const running = r.status === 'running';
      const tr = h('tr', {dataset: {run: r.id}, class: 'row-link',
                          onclick: (ev) => { if (!ev.target.closest('a')) location.hash = href; }},
        h('td.status-cell', {'data-label': 'Status'}, badge(r.status),
          waiting ? h('span.badge.st-waiting.compact', {title: 'waiting for feedback'}, 'waiting') : null),
        h('td.mono', {'data-label': 'Run'}, h('a', {href}, r.id)),
        h('td', {'data-label': 'Flow'}, r.flow || '\u2014'),
        h('td', {'data-label': 'Started'}, timeEl(r.created_at)),
        h('td.num', {'data-label': 'Duration'}, durationEl(r.duration, r.created_at, r.ended_at, running)),
        h('td.mono.muted', {'data-label': 'Runner'}, r.runner || ''));
      if (row) row.tr.replaceWith(tr);
      rows.set(r.id, {tr, sig});
      return tr;
    }

    async function load() {
      const q = new URLSearchParams();
      if (status) q.set('status', status);
      if (flow) q.set('flow', flow);
      if (cursor) q.set('cursor', cursor);
      q.set('limit', /^\d+$/.test(params.get('limit') || '') ? params.get('limit') : '50');
      // the open requests too, to tell a run that waits for a person
      const [j, fb] = await Promise.all([get(API + '/runs?' + q, {signal: scope.signal}),
        get(API + '/feedback', {signal: scope.signal}).catch(e => { if (e instanceof AuthError) throw e; return null; })]);
      const runs = j.runs || [];
      const waiting = new Set(fb ? (fb.feedback || []).filter(f => !f.expired).map(f => f.run) : []);
      if (fb) setFeedbackCount(waiting.size ? fb.feedback.filter(f => !f.expired).length : 0);
      const keep = new Set(runs.map(r => r.id));
      for (const [id, row] of rows) if (!keep.has(id)) { row.tr.remove(); rows.delete(id); }
      const order = runs.map(r => rowFor(r, !ENDED.has(r.status) && waiting.has(r.id)));
      const now = [...tbody.children];
      if (order.length !== now.length || order.some((tr, i) => tr !== now[i])) append(tbody, order);
      table.hidden = runs.length === 0;
      table.classList.toggle('no-runner', !runs.some(r => r.runner));
      empty.hidden = runs.length !== 0;
      if (!runs.length) {
        replace(empty, (status || flow || cursor)
          ? h('p', null, 'No runs match these filters.')
          : h('p', null, 'No runs yet. Start one from ', h('a', {href: '#/flows'}, 'Flows'), '.'));
      }
      summary.textContent = runs.length ? (runs.length + (j.next ? '+' : '') + ' shown') : '';
      const p = new URLSearchParams(params);
      p.delete('cursor');
      replace(pager,
        cursor ? h('a.btn', {href: hashFor(['runs'], p)}, '\u2190 Newest') : null,
        j.next ? h('a.btn', {href: (p.set('cursor', j.next), hashFor(['runs'], p))}, 'Older \u2192') : null);
    }
    scope.poll(POLL_MS, load);
  }

  // ---------------------------------------------------------------- graph

  // The SVG of a graph route, parsed and cleaned (no scripts, no handlers: the
  // server writes it from file contents), as a node for the document.
  async function loadGraph(path, scope) {
    const text = await get(path, {signal: scope.signal, text: true, accept: 'image/svg+xml'});
    const doc = new DOMParser().parseFromString(text, 'image/svg+xml');
    const svg = doc.documentElement;
    if (!svg || svg.nodeName !== 'svg') throw new Error('the graph is not an SVG');
    for (const bad of svg.querySelectorAll('script, foreignObject, style')) bad.remove();
    for (const el of [svg, ...svg.querySelectorAll('*')]) {
      for (const a of [...el.attributes]) {
        if (/^on/i.test(a.name) || a.name === 'style' ||
            (/href$/i.test(a.name) && !a.value.startsWith('#'))) el.removeAttribute(a.name);
      }
    }
    svg.removeAttribute('width');
    svg.removeAttribute('height');
    svg.setAttribute('role', 'img');
    return document.importNode(svg, true);
  }

  // The width the SVG wants (its viewBox), so small graphs are not blown up
  // and big ones scroll inside their box.
  function sizeGraph(svg) {
    const vb = (svg.getAttribute('viewBox') || '').split(/[\s,]+/).map(Number);
    if (vb.length === 4 && vb[2] > 0) {
      svg.style.width = vb[2] + 'px';
      svg.style.maxWidth = 'none';
    }
  }

  // ---------------------------------------------------------------- run page

  // The state a task's node shows: its most telling activation's.
  const TASK_RANK = ['running', 'waiting', 'paused', 'stopped', 'failed', 'pending',
                     'cancelled', 'completed', 'skipped'];
  function taskStates(run) {
    const waiting = new Set((run.feedback || []).map(f => f.activation));
    const by = new Map();
    for (const a of run.tasks || []) {
      let st = a.status;
      if (waiting.has(a.activation) && !ENDED.has(st)) st = 'waiting';
      const was = by.get(a.task);
      const r = TASK_RANK.indexOf(st);
      if (was === undefined || (r >= 0 && (TASK_RANK.indexOf(was) < 0 || r < TASK_RANK.indexOf(was))))
        by.set(a.task, st);
    }
    return by;
  }

  function runView(scope, id) {
    document.title = id + ' \u00b7 flow';
    let run = null;
    let lastSeq = -1;
    let ended = false;
    const expanded = new Set();
    let taskFilter = null;
    let showAll = false;

    // header
    const titleStatus = h('span.title-status');
    const actions = h('div.actions');
    const facts = h('dl.facts');
    const outcome = h('div.outcome');
    const head = h('section.card.run-head', null,
      h('div.run-title', null,
        h('div', null,
          h('nav.crumbs', {'aria-label': 'Breadcrumb'}, h('a', {href: '#/runs'}, 'Runs'), ' / '),
          h('h1.mono', null, id)),
        titleStatus, actions),
      facts, outcome);

    const fbSection = h('section.card.feedback-card', {hidden: true, 'aria-labelledby': 'fb-h'},
      h('h2', {id: 'fb-h'}, 'Waiting for you'));
    const fbList = h('div.fb-list');
    append(fbSection, fbList);

    const graphBox = h('div.graph', {tabindex: '0', 'aria-label': 'Flow graph'},
      h('p.muted', null, 'Loading the graph\u2026'));
    const legend = h('ul.legend', {'aria-label': 'Legend'},
      TASK_RANK.map(s => h('li', {dataset: {st: s}, hidden: true},
        h('span.swatch.st-' + s, {'aria-hidden': 'true'}), s)));
    const graphCard = h('section.card.graph-card', {'aria-labelledby': 'g-h'},
      h('div.card-head', null, h('h2', {id: 'g-h'}, 'Graph'),
        h('span.muted.small', null, 'select a task to see its activations')), graphBox, legend);

    const actFilter = h('div.act-filter');
    const actBody = h('tbody');
    const actTable = h('table.acts');
    const actMore = h('div.more');
    const actCard = h('section.card.acts-card', {'aria-labelledby': 'a-h'},
      h('div.card-head', null, h('h2', {id: 'a-h'}, 'Activations'), actFilter),
      h('div.table-wrap', null, append(actTable,
        h('thead', null, h('tr', null,
          h('th.num', {scope: 'col'}, '#'), h('th', {scope: 'col'}, 'Task'),
          h('th', {scope: 'col'}, 'Item'), h('th', {scope: 'col'}, 'Status'),
          h('th.num', {scope: 'col'}, 'Attempts'), h('th', {scope: 'col'}, 'Started'),
          h('th.num', {scope: 'col'}, 'Duration'), h('th', {scope: 'col'}, 'Error / note'))),
        actBody)), actMore);

    const journalList = h('ol.journal', {'aria-live': 'off'});
    const journalNote = h('p.muted.small', {hidden: true});
    const journalBox = h('div.journal-box', {tabindex: '0', 'aria-label': 'Journal records'},
      journalNote, journalList);
    const journalCount = h('span.muted.small.journal-count');
    const journalCard = h('section.card.journal-card', {'aria-labelledby': 'j-h'},
      h('div.card-head', null, h('h2', {id: 'j-h'}, 'Journal'), journalCount), journalBox);

    append(main, head, fbSection,
      h('div.run-grid', null, graphCard, actCard), journalCard);

    // --- header

    const buttons = {
      pause: h('button.btn', {type: 'button', disabled: true, onclick: () => act('pause')}, 'Pause'),
      resume: h('button.btn', {type: 'button', disabled: true, onclick: () => act('resume')}, 'Resume'),
      retry: h('button.btn', {type: 'button', disabled: true, onclick: () => act('retry')}, 'Retry'),
      cancel: h('button.btn.danger', {type: 'button', disabled: true,
        onclick: () => act('cancel', {}, 'Cancel run ' + id + '? Running tasks are stopped.')}, 'Cancel'),
    };
    append(actions, buttons.pause, buttons.resume, buttons.retry, buttons.cancel);
    async function act(verb, body, confirmMsg) {
      if (confirmMsg && !window.confirm(confirmMsg)) return;
      try {
        await post(apiPath('runs', id, verb), body);
        toast(verb === 'pause' ? 'Pause requested' : verb === 'cancel' ? 'Cancel requested'
              : verb === 'resume' ? 'Resumed' : 'Retrying');
        clearError();
        if (verb === 'resume' || verb === 'retry') { ended = false; follow(); }
        refetch();
      } catch (e) { report(e, 'Cannot ' + verb + ' run ' + id); }
    }

    function renderHead() {
      const st = run.status;
      document.title = id + ' \u00b7 ' + st + ' \u00b7 flow';
      const waiting = (run.feedback || []).length > 0 && !ENDED.has(st);
      replace(titleStatus, badge(st),
        waiting ? h('span.badge.st-waiting', {title: 'An open request waits for an answer'},
                    'waiting for feedback') : null);
      // the buttons stay (a person may have one focused); what applies changes
      buttons.pause.disabled = st !== 'running';
      buttons.resume.disabled = st !== 'paused' && st !== 'stopped';
      buttons.retry.disabled = st !== 'failed' && st !== 'cancelled';
      buttons.cancel.disabled = ENDED.has(st);
      const fact = (k, ...v) => h('div', {dataset: {fact: k.toLowerCase()}}, h('dt', null, k), h('dd', null, ...v));
      replace(facts,
        fact('Flow', run.flow ? h('a', {href: hashFor(['flows', run.flow])}, run.flow) : '\u2014',
          run.version ? h('span.muted', null, ' v' + run.version) : null),
        fact('Started', timeEl(run.created_at)),
        fact('Ended', timeEl(run.ended_at, {none: ENDED.has(st) ? '\u2014' : 'not yet'})),
        fact('Duration', durationEl(run.duration, run.created_at, run.ended_at, st === 'running')),
        run.runner ? fact('Runner', h('span.mono', null, run.runner)) : null,
        run.source ? fact('Source', h('span.mono.break', null, run.source)) : null);
      if (run.source) facts.lastChild.classList.add('wide');
      const outSig = JSON.stringify([st, run.error, run.result]);
      if (outSig === outcome.dataset.sig) return;
      outcome.dataset.sig = outSig;
      clear(outcome);
      if (run.error) {
        const cls = st === 'paused' ? 'note-warn' : st === 'cancelled' ? 'note-muted' : 'note-err';
        append(outcome, h('div.note.' + cls, null,
          h('strong', null, st === 'paused' ? 'Paused: ' : st === 'cancelled' ? 'Cancelled: ' : 'Error: '),
          h('span.pre-wrap', null, String(run.error))));
      }
      if (run.result !== null && run.result !== undefined) {
        append(outcome, h('details.result', {open: JSON.stringify(run.result).length < 400},
          h('summary', null, 'Result'), h('pre.code', null, pretty(run.result))));
      }
    }

    // --- graph

    function colour() {
      const svg = graphBox.querySelector('svg');
      if (!svg || !run) return;
      const states = taskStates(run);
      svg.classList.toggle('run-ended', ENDED.has(run.status));
      // the legend names the states the drawing shows, no more
      const shown = new Set(states.values());
      for (const li of legend.children) li.hidden = !shown.has(li.dataset.st);
      for (const g of svg.querySelectorAll('g.task')) {
        const name = g.dataset.task || (g.id || '').replace(/^t-/, '');
        const st = states.get(name);
        for (const c of ST_CLASSES) if (c !== 'st-' + st) g.classList.remove(c);
        if (st) g.classList.add('st-' + st);
        g.classList.toggle('selected', taskFilter === name);
        g.setAttribute('aria-label', name + ': ' + (st || 'not started'));
      }
    }
    function setFilter(name) {
      taskFilter = taskFilter === name ? null : name;
      renderActs();
      colour();
    }
    loadGraph(apiPath('runs', id, 'graph') + '?format=svg&style=0', scope).then(svg => {
      sizeGraph(svg);
      for (const g of svg.querySelectorAll('g.task')) {
        const name = g.dataset.task || (g.id || '').replace(/^t-/, '');
        g.setAttribute('tabindex', '0');
        g.setAttribute('role', 'button');
        g.addEventListener('click', () => setFilter(name));
        g.addEventListener('keydown', ev => {
          if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); setFilter(name); }
        });
      }
      replace(graphBox, svg);
      colour();
    }).catch(e => {
      if (e instanceof AuthError || e.name === 'AbortError') return;
      replace(graphBox, h('p.muted', null, 'No graph: ' + (e.message || e)));
      legend.hidden = true;
    });

    // --- activations

    // What a completion journaled about itself, in words (as `flow status` says it).
    function infoNote(info) {
      if (!info) return '';
      const parts = [];
      if (info.cached) parts.push('cached');
      if (info.prompt) parts.push('prompt ' + info.prompt.name + ' v' + info.prompt.version +
        (info.prompt.label ? ' (' + info.prompt.label + ')' : ''));
      if (info.usage) parts.push('tokens ' + (info.usage.prompt_tokens ?? 0) + '+' +
        (info.usage.completion_tokens ?? 0));
      return parts.join(', ');
    }

    function actRows(a) {
      const running = a.status === 'running';
      const waiting = run && !ENDED.has(run.status) && !ENDED.has(a.status) &&
        (run.feedback || []).some(f => f.activation === a.activation);
      const open = expanded.has(a.activation);
      const detailId = 'act-' + a.activation;
      const toggle = h('button.expander', {type: 'button', 'aria-expanded': open ? 'true' : 'false',
        'aria-controls': detailId, 'aria-label': 'Details of activation ' + a.activation,
        onclick: () => {
          if (expanded.has(a.activation)) expanded.delete(a.activation); else expanded.add(a.activation);
          renderActs();
        }}, h('span.chev', {'aria-hidden': 'true'}), String(a.activation));
      let item = null;
      if (a.index !== undefined && a.index !== null) {
        item = h('span.mono', {title: a.item !== undefined ? short(a.item, 2000) : ''},
          '[' + a.index + ']' + (a.item !== undefined && a.item !== null ? ' ' + short(a.item, 40) : ''));
      }
      const tr = h('tr', {class: open ? 'open' : null},
        h('td.num', {'data-label': '#'}, toggle),
        h('td.mono', {'data-label': 'Task'}, a.task),
        h('td.item', {'data-label': 'Item'}, item),
        h('td', {'data-label': 'Status'}, badge(waiting ? 'waiting' : a.status)),
        h('td.num', {'data-label': 'Attempts'}, String(a.attempts ?? '')),
        h('td', {'data-label': 'Started'}, timeEl(a.started_at)),
        h('td.num', {'data-label': 'Duration'}, durationEl(null, a.started_at, a.ended_at, running)),
        a.error || a.waiting_for
          ? h('td.err-cell', {'data-label': 'Error', title: a.error || a.waiting_for},
              short(a.error || a.waiting_for, 90))
          : h('td.note-cell', {'data-label': 'Note', title: infoNote(a.info)}, infoNote(a.info)));
      if (!open) return [tr];
      const blocks = [];
      if (a.output !== undefined && a.output !== null)
        blocks.push(h('div.block', null, h('h3', null, 'Output'), h('pre.code', null, pretty(a.output))));
      if (a.item !== undefined && a.item !== null)
        blocks.push(h('div.block', null, h('h3', null, 'Item'), h('pre.code', null, pretty(a.item))));
      if (a.error)
        blocks.push(h('div.block', null, h('h3', null, 'Error'), h('pre.code.err', null, a.error)));
      if (a.stderr_tail)
        blocks.push(h('div.block', null, h('h3', null, 'stderr (tail)'), h('pre.code', null, a.stderr_tail)));
      if (a.info)
        blocks.push(h('div.block', null, h('h3', null, 'Journaled'), h('pre.code', null, pretty(a.info))));
      if (!blocks.length) blocks.push(h('p.muted', null, 'No output yet.'));
      const detail = h('tr.detail', {id: detailId}, h('td', {colspan: '8'}, h('div.blocks', null, blocks)));
      return [tr, detail];
    }
    let actSig = '';
    function renderActs() {
      let list = run ? run.tasks || [] : [];
      if (taskFilter) list = list.filter(a => a.task === taskFilter);
      const sig = JSON.stringify([list, [...expanded], showAll]);
      if (sig === actSig) return;
      actSig = sig;
      // keep focus on the expander a person just pressed
      const focused = document.activeElement && document.activeElement.closest &&
        document.activeElement.closest('.expander') ? document.activeElement.getAttribute('aria-controls') : null;
      const shown = showAll ? list : list.slice(0, ACT_SHOW);
      actTable.classList.toggle('no-items', !list.some(a => a.index !== undefined && a.index !== null));
      replace(actBody, shown.map(actRows));
      if (!list.length) append(actBody, h('tr', null, h('td.muted', {colspan: '8'}, 'No activation yet.')));
      replace(actMore, list.length > shown.length
        ? h('button.btn', {type: 'button', onclick: () => { showAll = true; renderActs(); }},
            'Show all ' + list.length + ' activations')
        : null);
      replace(actFilter, taskFilter
        ? h('button.chip', {type: 'button', onclick: () => setFilter(taskFilter),
            'aria-label': 'Show every task'}, 'task: ', h('span.mono', null, taskFilter), ' \u2715')
        : h('span.muted.small', null, run && run.tasks ? run.tasks.length + ' total' : ''));
      if (focused) {
        const b = actBody.querySelector('[aria-controls="' + focused + '"]');
        if (b) b.focus();
      }
    }

    // --- feedback

    const fbForms = new Map();
    function renderFeedback() {
      const list = run && !ENDED.has(run.status) ? run.feedback || [] : [];
      fbSection.hidden = list.length === 0;
      const keep = new Set(list.map(f => f.request));
      for (const [k, el] of fbForms) if (!keep.has(k)) { el.remove(); fbForms.delete(k); }
      for (const f of list) {
        if (fbForms.has(f.request)) continue;
        const el = feedbackForm(Object.assign({run: id}, f), () => refetch(), false);
        fbForms.set(f.request, el);
        fbList.appendChild(el);
      }
    }

    // --- journal

    function addRecords(recs) {
      const box = journalBox;
      const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
      const frag = document.createDocumentFragment();
      for (const r of recs) {
        if (typeof r.seq === 'number') {
          if (r.seq <= lastSeq) continue;
          lastSeq = r.seq;
        }
        frag.appendChild(journalRow(r));
      }
      journalList.appendChild(frag);
      let drop = journalList.children.length - JOURNAL_KEEP;
      if (drop > 0) {
        while (drop-- > 0) journalList.firstChild.remove();
        journalNote.hidden = false;
        journalNote.textContent = 'Older records are not shown here; flow logs ' + id + ' has them all.';
      }
      journalCount.textContent = lastSeq >= 0 ? (lastSeq + 1) + ' records' : '';
      if (atBottom) box.scrollTop = box.scrollHeight;
    }
    async function loadJournal(initial) {
      for (;;) {
        const q = lastSeq >= 0 ? '?after=' + lastSeq + '&limit=5000' : '?limit=5000';
        const j = await get(apiPath('runs', id, 'journal') + q, {signal: scope.signal});
        const recs = j.records || [];
        addRecords(recs);
        if (recs.length < 5000) break;
      }
      if (initial) journalBox.scrollTop = journalBox.scrollHeight;
    }

    // --- live

    let settle = 0;
    async function refetchNow() {
      const r = await get(apiPath('runs', id), {signal: scope.signal});
      run = r;
      ended = ENDED.has(r.status);
      // the store may say a run ended a moment before it has its end time:
      // ask again shortly, a few times, rather than show no end
      if (ended && !r.ended_at && settle++ < 10) scope.later(300, () => refetchNow().catch(e => report(e)));
      renderHead();
      renderFeedback();
      renderActs();
      colour();
    }
    const refetch = debounce(scope, 150, () => refetchNow().catch(e => report(e)));

    let following = false;
    async function follow() {
      if (following) return;
      following = true;
      let delay = 1000;
      let sawEnd = false;
      while (scope.alive && !sawEnd) {
        try {
          await readEvents(apiPath('runs', id, 'events'), lastSeq >= 0 ? lastSeq : null, scope.signal, ev => {
            delay = 1000;
            if (ev.event === 'record') {
              try { addRecords([JSON.parse(ev.data)]); } catch (e) { /* keep the stream */ }
              refetch();
            } else if (ev.event === 'run') {
              try {
                const j = JSON.parse(ev.data);
                if (run && j.status && j.status !== run.status) {
                  run.status = j.status;
                  renderHead();
                  colour();
                }
              } catch (e) { /* keep the stream */ }
              refetch();
            } else if (ev.event === 'end') {
              sawEnd = true;
              refetch();
              // what the stream did not send before it ended (the last records
              // may be committed just after the final status was read)
              loadJournal().catch(e => report(e));
            } else if (ev.event === 'resync') {
              loadJournal().catch(e => report(e));
              refetch();
            }
          });
          if (!sawEnd) await new Promise(r => scope.later(delay, r));
        } catch (e) {
          if (e instanceof AuthError || (e && e.name === 'AbortError') || !scope.alive) break;
          if (e instanceof ApiError && e.status === 404) { report(e); break; }
          await new Promise(r => scope.later(delay, r));
          delay = Math.min(delay * 2, 15000);
        }
      }
      following = false;
    }

    (async () => {
      try {
        await refetchNow();
        await loadJournal(true);
        follow();
        // a slow safety net under the stream: a missed event costs at most this long
        scope.poll(10000, async () => { if (!ended) await refetchNow(); });
      } catch (e) {
        if (e instanceof ApiError && e.status === 404) {
          replace(main, h('section.card.empty', null, h('h1', null, 'No run ', h('span.mono', null, id)),
            h('p', null, e.message), h('p', null, h('a', {href: '#/runs'}, 'Back to the runs'))));
        } else report(e);
      }
    })();
  }

  // One journal record as a line: time, type, task, and what it says.
  function journalRow(r) {
    const t = parseTime(r.time);
    const type = r.type || 'record';
    const kind = /completed|answered|resumed/.test(type) ? 'ok' : /failed|error/.test(type) ? 'err'
      : /paused|waiting|held|feedback_opened|cancel/.test(type) ? 'warn'
      : /started|created/.test(type) ? 'info' : 'plain';
    let what = '';
    switch (type) {
      case 'run_created': what = 'flow ' + (r.flow || '?') + (r.inputs && Object.keys(r.inputs).length ? ' inputs ' + short(r.inputs, 200) : ''); break;
      case 'act_created':
        what = r.input && Object.keys(r.input).length ? 'input ' + short(r.input, 200)
          : r.index !== undefined ? '[' + r.index + ']' : r.sources ? 'after #' + r.sources.join(', #') : '';
        break;
      case 'act_started': what = 'attempt ' + r.attempt; break;
      case 'act_waiting': what = 'for ' + (r.request || 'an answer'); break;
      case 'act_held': what = r.reason ? short(r.reason, 300) : ''; break;
      case 'act_completed': what = r.output !== undefined ? short(r.output, 240) : ''; break;
      case 'act_failed': case 'act_error': what = r.error ? short(r.error, 300) : ''; break;
      case 'log': what = [r.exit_status !== undefined && r.exit_status !== null ? 'exit ' + r.exit_status : '',
                          r.stderr ? 'stderr: ' + short(r.stderr.trim(), 200) : '',
                          r.stdout ? 'stdout: ' + short(r.stdout.trim(), 200) : ''].filter(Boolean).join(' \u00b7 '); break;
      case 'feedback_opened': what = (r.feedback_type || '') + ' ' + (r.request || '') + (r.message ? ': ' + r.message : ''); break;
      case 'feedback_answered': {
        const a = r.answer || {};
        const v = 'approved' in a ? (a.approved ? 'approved' : 'rejected')
          : 'text' in a ? 'text ' + short(a.text, 120) : 'selected' in a ? 'selected ' + short(a.selected, 80) : short(a, 160);
        what = (r.request || '') + ': ' + v + (a.by ? ' by ' + a.by : '');
        break;
      }
      case 'paused': case 'cancelled': what = r.reason || ''; break;
      case 'run_ended': what = (r.status || '') + (r.error ? ': ' + short(r.error, 200) : r.result !== undefined && r.result !== null ? ' \u2192 ' + short(r.result, 200) : ''); break;
      case 'checkpoint': what = '#' + r.id + (r.reason ? ' (' + r.reason + ')' : ''); break;
      default: {
        const rest = Object.assign({}, r);
        for (const k of ['seq', 'time', 'type', 'task', 'activation']) delete rest[k];
        what = Object.keys(rest).length ? short(rest, 240) : '';
      }
    }
    return h('li.jrec.k-' + kind, {dataset: {seq: r.seq, type}},
      h('span.jseq.mono', null, String(r.seq ?? '')),
      h('time.jtime.mono', t ? {datetime: r.time, title: exact(t)} : null, t ? clock(t, true) : ''),
      h('span.jtype', null, type.replace(/_/g, ' ')),
      h('span.jtask.mono', null, r.task ? r.task + (r.activation ? '#' + r.activation : '') : ''),
      h('span.jwhat', null, what));
  }

  // ---------------------------------------------------------------- feedback forms

  // A form answering one open request; after an answer, done() (refresh).
  function feedbackForm(f, done, withRun) {
    const base = 'fb-' + (f.run + '-' + f.request).replace(/[^A-Za-z0-9_-]/g, '_');
    const err = h('p.form-error', {role: 'alert', hidden: true});
    const byInput = h('input.by', {id: base + '-by', type: 'text', placeholder: 'your name (optional)',
      autocomplete: 'name', value: localStorage.getItem(BY_KEY) || ''});
    const buttons = [];
    async function answer(body) {
      const by = byInput.value.trim();
      try { if (by) localStorage.setItem(BY_KEY, by); else localStorage.removeItem(BY_KEY); } catch (e) { /* fine */ }
      if (by) body.by = by;
      for (const b of buttons) b.disabled = true;
      err.hidden = true;
      try {
        const j = await post(apiPath('runs', f.run, 'feedback', f.request), body);
        toast('Answered ' + f.request + (j && j.by ? ' as ' + j.by : ''));
        el.classList.add('answered');
        setTimeout(() => { if (el.isConnected) el.remove(); }, 400);
        refreshFeedbackCount();
        done();
      } catch (e) {
        for (const b of buttons) b.disabled = false;
        if (e instanceof AuthError) return;
        err.textContent = e.message || String(e);
        err.hidden = false;
        if (e instanceof ApiError && e.status === 409) showError('Request ' + f.request + ': ' + e.message);
      }
    }
    // what to answer with (above), the buttons (in a row with "Answer as")
    let above = null, submit = null;
    const type = f.type || 'approval';
    if (type === 'approval') {
      buttons.push(h('button.btn.ok', {type: 'button', onclick: () => answer({approve: true})}, 'Approve'),
                   h('button.btn.danger', {type: 'button', onclick: () => answer({reject: true})}, 'Reject'));
    } else if (type === 'selection') {
      const sel = h('select', {id: base + '-sel', required: true},
        // nothing chosen until a person chooses
        h('option', {value: '', disabled: true, selected: true}, 'choose one\u2026'),
        (f.options || []).map(o => {
          const v = typeof o === 'string' ? o : JSON.stringify(o);
          return h('option', {value: v}, v);
        }));
      above = [h('label', {for: base + '-sel'}, 'Choose'), sel];
      buttons.push(h('button.btn.primary', {type: 'submit'}, 'Send'));
      submit = () => answer({select: sel.value});
    } else {
      const ta = h('textarea', {id: base + '-text', rows: '3', required: true});
      above = [h('label', {for: base + '-text'}, 'Answer'), ta];
      buttons.push(h('button.btn.primary', {type: 'submit'}, 'Send'));
      submit = () => answer({text: ta.value});
    }
    const dl = parseTime(f.deadline);
    const expired = f.expired || (dl && dl < new Date());
    const el = h('form.fb', {dataset: {request: f.request, run: f.run},
      onsubmit: ev => { ev.preventDefault(); if (submit) submit(); }},
      h('div.fb-head', null,
        h('span.badge.st-waiting', null, type),
        withRun ? h('a.mono', {href: hashFor(['runs', f.run])}, f.run) : null,
        h('span.mono.muted', null, f.task + (f.activation ? '#' + f.activation : '')),
        h('span.muted.small.push', null, 'asked ', timeEl(f.created_at),
          dl ? [' \u00b7 ', expired ? h('span.expired', null, 'expired') : ['expires ', timeEl(f.deadline)]] : null)),
      h('p.fb-msg', null, f.message || h('span.muted', null, '(no message)')),
      expired ? h('p.muted', null, 'The deadline has passed; the default stands.') : [
        above ? h('div.fb-above', null, above) : null,
        h('div.fb-actions', null, buttons,
          h('span.by-row', null, h('label.small.muted', {for: base + '-by'}, 'Answer as'), byInput))],
      err);
    if (expired) el.classList.add('is-expired');
    return el;
  }

  // ---------------------------------------------------------------- flows

  function flowsView(scope, selected) {
    document.title = 'Flows \u00b7 flow';
    const list = h('ul.flow-list', {'aria-label': 'Flow files'});
    const detail = h('section.card.flow-detail', {'aria-live': 'polite'});
    append(main, h('div.page-head', null, h('h1', null, 'Flows')),
      h('div.split', null, h('div.card.flow-list-card', null, list), detail));

    (async () => {
      let j;
      try { j = await get(API + '/flows', {signal: scope.signal}); } catch (e) { report(e); return; }
      const flows = j.flows || [];
      if (!flows.length) {
        replace(list, h('li.empty', null, 'No flow files. Put *.yaml files in the directory of ',
          h('code', null, '--flows'), '.'));
        replace(detail, h('p.muted', null, 'Nothing to show.'));
        return;
      }
      const pick = flows.find(f => f.name === selected) || flows[0];
      for (const f of flows) {
        append(list, h('li', null, h('a.flow-item', {href: hashFor(['flows', f.name]),
          'aria-current': f === pick ? 'page' : null},
          h('span.flow-name.mono', null, f.name),
          f.version ? h('span.muted.small', null, ' v' + f.version) : null,
          f.error ? h('span.badge.st-failed', null, 'invalid')
                  : h('span.muted.small.push', null, (f.tasks ?? '?') + ' tasks'),
          f.description ? h('span.flow-desc', null, f.description) : null)));
      }
      showFlow(pick);
      // on a narrow window the detail is below the list: show it
      if (selected && window.matchMedia('(max-width: 720px)').matches) detail.scrollIntoView();
    })();

    function showFlow(f) {
      const graphBox = h('div.graph', {tabindex: '0', 'aria-label': 'Graph of ' + f.name},
        h('p.muted', null, 'Loading the graph\u2026'));
      const inputs = h('textarea.mono', {id: 'inputs', rows: '4', spellcheck: 'false'});
      inputs.value = '{}';
      const runId = h('input.mono', {id: 'run-id', type: 'text', placeholder: 'generated when empty',
                                      pattern: '[A-Za-z0-9_.:-]+', autocomplete: 'off', spellcheck: 'false'});
      const err = h('p.form-error', {role: 'alert', hidden: true});
      const start = h('button.btn.primary', {type: 'submit', disabled: !!f.error}, 'Start run');
      const form = h('form.start-form', {onsubmit: async ev => {
        ev.preventDefault();
        err.hidden = true;
        let parsed;
        try {
          parsed = inputs.value.trim() ? JSON.parse(inputs.value) : {};
        } catch (e) {
          err.textContent = 'Inputs are not JSON: ' + e.message;
          err.hidden = false;
          inputs.focus();
          return;
        }
        const body = {flow: f.name, inputs: parsed};
        if (runId.value.trim()) body.id = runId.value.trim();
        start.disabled = true;
        try {
          const r = await post(API + '/runs', body);
          toast('Started run ' + r.id);
          location.hash = hashFor(['runs', r.id]);
        } catch (e) {
          start.disabled = false;
          if (e instanceof AuthError) return;
          err.textContent = e.message || String(e);
          err.hidden = false;
        }
      }},
        h('h2', null, 'Start a run'),
        h('label', {for: 'inputs'}, 'Inputs ', h('span.muted.small', null, '(JSON object)')), inputs,
        h('label', {for: 'run-id'}, 'Run id ', h('span.muted.small', null, '(optional)')), runId,
        err, h('div.row', null, start));
      replace(detail,
        h('div.card-head', null, h('h2.mono.flow-title', null, f.name),
          h('a.small', {href: hashFor(['runs'], new URLSearchParams({flow: f.name}))}, 'Runs of this flow \u2192')),
        f.description ? h('p', null, f.description) : null,
        h('p.muted.small.mono.break', null, f.file || ''),
        f.error ? h('div.note.note-err', null, h('strong', null, 'Does not load: '), h('span.pre-wrap', null, f.error)) : null,
        h('div.flow-body', null, f.error ? null : graphBox, form));
      if (!f.error) {
        loadGraph(apiPath('flows', f.name, 'graph') + '?format=svg&style=0', scope).then(svg => {
          sizeGraph(svg);
          replace(graphBox, svg);
        }).catch(e => {
          if (e instanceof AuthError || e.name === 'AbortError') return;
          replace(graphBox, h('p.muted', null, 'No graph: ' + (e.message || e)));
        });
      }
    }
  }

  // ---------------------------------------------------------------- feedback view

  function feedbackView(scope) {
    document.title = 'Feedback \u00b7 flow';
    const listEl = h('div.fb-list');
    const empty = h('div.card.empty', {hidden: true},
      h('p', null, 'Nobody is waited for: no run has an open request.'));
    append(main, h('div.page-head', null, h('h1', null, 'Feedback'),
      h('span.muted', null, 'open requests of every run')), empty, listEl);
    const forms = new Map();
    async function load() {
      const j = await get(API + '/feedback', {signal: scope.signal});
      const list = j.feedback || [];
      setFeedbackCount(list.filter(f => !f.expired).length);
      const keep = new Set(list.map(f => f.run + '\n' + f.request));
      for (const [k, el] of forms) if (!keep.has(k)) { el.remove(); forms.delete(k); }
      for (const f of list) {
        const k = f.run + '\n' + f.request;
        if (forms.has(k)) continue;
        const el = h('div.card', null, feedbackForm(f, () => scope.later(200, load), true));
        forms.set(k, el);
        listEl.appendChild(el);
      }
      empty.hidden = list.length !== 0;
    }
    scope.poll(3000, load);
  }

  // ---------------------------------------------------------------- workers

  function workersView(scope) {
    document.title = 'Workers \u00b7 flow';
    const body = h('div');
    append(main, h('div.page-head', null, h('h1', null, 'Workers')), h('section.card', null, body));
    let sig = '';
    async function load() {
      const j = await get(API + '/workers', {signal: scope.signal});
      const ws = j.workers || [];
      const s = JSON.stringify(ws);
      if (s === sig) return;
      sig = s;
      if (!ws.length) {
        replace(body, h('div.empty', null,
          h('p', null, h('strong', null, 'No workers.'), ' Either no Redis is configured for this serve (',
            h('code', null, '--redis URL'), '), or no worker is running: start one with ',
            h('code', null, 'flow worker --redis URL'), '.')));
        return;
      }
      const ep = v => typeof v === 'number' ? new Date(v * 1000).toISOString() : v;
      const bytes = n => {
        const u = ['', 'K', 'M', 'G', 'T'];
        let i = 0;
        while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
        return (Number.isInteger(n) ? n : n.toFixed(1)) + u[i];
      };
      // What the worker's jobs use of what it declared (flow worker --resources).
      const res = (w, name) => {
        const cap = w.resources && w.resources[name];
        if (cap === undefined || cap === null) return '';
        const used = (w.in_use && w.in_use[name]) || 0;
        return name === 'memory' ? bytes(used) + '/' + bytes(cap) : used + '/' + cap;
      };
      replace(body, h('div.table-wrap', null, h('table.workers', null,
        h('thead', null, h('tr', null, ['Name', 'Host', 'PID', 'Queues', 'Running', 'Done', 'CPU', 'Memory', 'GPU',
          'Started', 'Last seen']
          .map((t, i) => h('th' + (i === 2 || (i >= 4 && i <= 8) ? '.num' : ''), {scope: 'col'}, t)))),
        h('tbody', null, ws.map(w => h('tr', null,
          h('td.mono', {'data-label': 'Name'}, w.name),
          h('td', {'data-label': 'Host'}, w.host || ''),
          h('td.num', {'data-label': 'PID'}, String(w.pid ?? '')),
          h('td.mono', {'data-label': 'Queues'}, (w.queues || []).join(', ')),
          h('td.num', {'data-label': 'Running'}, String(w.running ?? '')),
          h('td.num', {'data-label': 'Done'}, String(w.done ?? '')),
          h('td.num', {'data-label': 'CPU', title: 'in use / declared'}, res(w, 'cpu')),
          h('td.num', {'data-label': 'Memory', title: 'in use / declared'}, res(w, 'memory')),
          h('td.num', {'data-label': 'GPU', title: 'in use / declared'}, res(w, 'gpu')),
          h('td', {'data-label': 'Started'}, timeEl(ep(w.started))),
          h('td', {'data-label': 'Last seen'}, timeEl(ep(w.seen)))))))));
    }
    scope.poll(POLL_MS, load);
  }

  route();
})();
