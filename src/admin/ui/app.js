// cutover dashboard: reads the live feed (GET v1/events, streamed with
// fetch so the token travels in the Authorization header, never in a URL
// or a cookie) and acts through the control API with If-Match.
// Hand-written; every URL is relative, so it works behind a port-forward.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const SVG = 'http://www.w3.org/2000/svg';
  const COLORS = ['#4c8dff', '#ff9f43', '#2fbf71', '#b57cff', '#ff6b81', '#22c1c3'];
  const TOKEN_KEY = 'cutover.token';

  const state = {
    doc: null,          // the latest state document
    shape: '',          // routes/rules/groups the DOM was built for
    views: new Map(),   // "route/rule" -> the rule's elements
    history: new Map(), // "route/rule/group" -> samples, oldest first
    depth: 300,
    editing: new Map(), // "route/rule" -> generation the edit started from
    stream: null,       // AbortController of the open feed
    retry: 0,
    written: 0,         // generation the proxy answered our last write with (0: none pending)
  };

  // The generation an edit builds on: the document's, or our own last write's
  // until a document shows it (the feed sends at most one every 250 ms, and an
  // edit started in between must not conflict with the change it follows).
  function liveGeneration() {
    return Math.max(state.doc.generation, state.written);
  }

  // === helpers

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== null && v !== undefined && v !== false) e.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children) {
      if (c !== null && c !== undefined) e.append(c);
    }
    return e;
  }

  function svg(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    return e;
  }

  function button(label, action, attrs, onClick) {
    const b = el('button', Object.assign({ type: 'button', 'data-action': action }, attrs), label);
    b.addEventListener('click', onClick);
    return b;
  }

  const enc = encodeURIComponent;
  const ruleKey = (route, rule) => route + '/' + rule;
  // One colour per group name everywhere: in the order groups first appear
  // in the rules that split (so the config's `stable, canary` order gives
  // stable the first colour), then in the others.
  const colorOf = (group) => {
    const names = [];
    const rules = [];
    for (const r of (state.doc && state.doc.routes) || []) rules.push(...r.rules);
    const splitting = rules.filter((r) => r.groups.length > 1);
    for (const r of splitting.concat(rules)) {
      for (const g of r.groups) if (!names.includes(g.group)) names.push(g.group);
    }
    const i = names.indexOf(group);
    return COLORS[(i < 0 ? names.length : i) % COLORS.length];
  };

  function fmtRate(v) {
    if (v === null || v === undefined) return '–';
    return v < 10 ? v.toFixed(1) : Math.round(v).toString();
  }
  function fmtPct(v) {
    if (v === null || v === undefined) return '–';
    return (v * 100).toFixed(v >= 0.1 ? 0 : 1) + '%';
  }
  function fmtMs(v) {
    if (v === null || v === undefined) return '–';
    return (v < 10 ? v.toFixed(1) : Math.round(v).toString()) + ' ms';
  }
  function fmtNum(v, digits) {
    if (v === null || v === undefined || Number.isNaN(v)) return '–';
    if (Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3)) return v.toExponential(1);
    return v.toFixed(digits);
  }
  function errClass(v) {
    if (v === null || v === undefined) return '';
    return v >= 0.05 ? 'bad' : v >= 0.01 ? 'warn' : 'good';
  }

  // === token and API

  const token = () => sessionStorage.getItem(TOKEN_KEY) || '';

  function headers(extra) {
    const h = Object.assign({}, extra);
    const t = token();
    if (t) h.Authorization = 'Bearer ' + t;
    return h;
  }

  async function api(method, path, body, ifMatch) {
    const h = headers({ 'Content-Type': 'application/json' });
    if (ifMatch !== null && ifMatch !== undefined) h['If-Match'] = '"' + ifMatch + '"';
    const res = await fetch(path, {
      method, headers: h, cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let json = null;
    try { json = await res.json(); } catch (_) { json = null; }
    if (res.status === 401 || res.status === 403) {
      showLogin(res.status === 403 ? 'Wrong token.' : 'This proxy needs a token.');
    }
    return { status: res.status, json };
  }

  // === login

  function showLogin(message) {
    if (state.stream) state.stream.abort();
    state.stream = null;
    $('board').hidden = true;
    $('login').hidden = false;
    $('sign-out').hidden = true;
    $('login-error').textContent = message || '';
    setLink('signed out', 'down');
    $('token').focus();
  }

  function hideLogin() {
    $('login').hidden = true;
    $('sign-out').hidden = !token();
  }

  // === the live feed

  function setLink(text, cls) {
    $('link').textContent = text;
    $('link-dot').className = 'dot ' + (cls || '');
  }

  async function connect() {
    if (state.stream) state.stream.abort();
    const ctl = new AbortController();
    state.stream = ctl;
    setLink('connecting');
    let res;
    try {
      res = await fetch('v1/events', {
        headers: headers({ Accept: 'text/event-stream' }), signal: ctl.signal, cache: 'no-store',
      });
    } catch (_) {
      retryLater(ctl);
      return;
    }
    if (res.status === 401 || res.status === 403) {
      showLogin(res.status === 403 ? 'Wrong token.' : 'This proxy needs a token.');
      return;
    }
    if (!res.ok || !res.body) {
      setLink('feed answered ' + res.status, 'down');
      retryLater(ctl);
      return;
    }
    hideLogin();
    setLink('live', 'live');
    state.retry = 0;
    state.written = 0; // a restarted proxy counts generations afresh
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buf = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true });
        let end;
        while ((end = buf.indexOf('\n\n')) >= 0) {
          onEvent(buf.slice(0, end));
          buf = buf.slice(end + 2);
        }
      }
    } catch (_) {
      if (ctl.signal.aborted) return;
    }
    retryLater(ctl);
  }

  function retryLater(ctl) {
    if (state.stream !== ctl) return;
    state.retry = Math.min(state.retry + 1, 5);
    setLink('reconnecting', 'down');
    setTimeout(() => { if (state.stream === ctl) connect(); }, 500 * state.retry);
  }

  function onEvent(raw) {
    let name = 'message';
    let data = '';
    for (const line of raw.split('\n')) {
      if (line.startsWith('event:')) name = line.slice(6).trim();
      else if (line.startsWith('data:')) data += line.slice(5).trim();
    }
    let value;
    try { value = JSON.parse(data); } catch (_) { return; }
    if (name === 'history') loadHistory(value);
    else if (name === 'state') render(value);
  }

  function loadHistory(h) {
    state.depth = h.depth || 300;
    state.history = new Map(Object.entries(h.series || {}));
  }

  function remember(key, sample) {
    if (!sample) return;
    const ring = state.history.get(key) || [];
    const last = ring[ring.length - 1];
    if (last && last.t >= sample.t) return;
    ring.push(sample);
    while (ring.length > state.depth) ring.shift();
    state.history.set(key, ring);
  }

  // === rendering

  function shapeOf(doc) {
    return doc.routes.map((r) => r.route + ':' + r.rules.map(
      (x) => x.rule + '=' + x.groups.map((g) => g.group).join(',')).join(';')).join('|');
  }

  function render(doc) {
    state.doc = doc;
    if (doc.generation >= state.written) state.written = 0;
    $('generation').textContent = doc.generation;
    $('origin').textContent = originText(doc.origin);
    $('reload-errors').textContent = doc.reload_errors;
    $('reload-errors').className = doc.reload_errors > 0 ? 'v bad' : '';
    $('draining').hidden = !doc.draining;
    for (const route of doc.routes) {
      for (const rule of route.rules) {
        for (const g of rule.groups) remember(ruleKey(route.route, rule.rule) + '/' + g.group, g.sample);
      }
    }
    const shape = shapeOf(doc);
    if (shape !== state.shape) {
      state.shape = shape;
      state.views.clear();
      $('routes').replaceChildren(...doc.routes.map(buildRoute));
    }
    for (const route of doc.routes) {
      for (const rule of route.rules) updateRule(route.route, rule, doc);
    }
    renderEndpoints(doc.endpoints || []);
    renderOverrides(doc.overrides || []);
    $('board').hidden = false;
  }

  function originText(o) {
    if (!o) return '–';
    if (o.kind === 'file') return o.path;
    if (o.kind === 'api') return 'PUT through the API (generation ' + o.generation + ')';
    return 'given at start';
  }

  function buildRoute(route) {
    const names = [];
    for (const r of route.rules) for (const g of r.groups) if (!names.includes(g.group)) names.push(g.group);
    const head = el('h2', {}, route.route);
    if (names.length > 1) {
      const sw = el('span', { class: 'switch' }, 'switch every rule to');
      for (const g of names) {
        sw.append(button(g, 'switch', { 'data-group': g }, () => doSwitch(route.route, g)));
      }
      head.append(sw);
    }
    const sec = el('section', { class: 'panel route', 'data-route': route.route }, head);
    for (const rule of route.rules) sec.append(buildRule(route.route, rule));
    return sec;
  }

  function metricCell(cls) {
    const v = el('span', { class: 'v' }, '–');
    const spark = svg('svg', { class: 'spark', viewBox: '0 0 84 22', preserveAspectRatio: 'none' });
    const path = svg('path', { d: '' });
    spark.append(path);
    return { td: el('td', { class: cls }, el('div', { class: 'metric' }, v, spark)), v, path };
  }

  function buildRule(route, rule) {
    const key = ruleKey(route, rule.rule);
    const view = { bars: {}, rows: [], verdict: el('div', { class: 'verdict', hidden: true }) };
    const tags = el('span', {});
    if (rule.sticky) tags.append(el('span', { class: 'tag' }, 'sticky'), ' ');
    if (rule.rollout_plan) tags.append(el('span', { class: 'tag' }, 'rollout plan'));
    const bars = el('div', { class: 'bars' });
    for (const which of ['desired', 'effective', 'observed']) {
      const bar = svg('svg', { class: 'bar', 'data-bar': which });
      view.bars[which] = bar;
      bars.append(el('span', { class: 'label' }, which), bar);
    }
    const table = el('table', { class: 'groups' },
      el('tr', {}, ...['group', 'weight', 'req/s', 'errors', 'p50', 'p99'].map((h) => el('th', {}, h))));
    rule.groups.forEach((g) => {
      const range = el('input', { type: 'range', min: 0, max: 100, step: 1, 'data-group': g.group });
      const number = el('input', { type: 'number', min: 0, step: 1, 'data-group': g.group });
      // The edit belongs to the generation shown when the field took focus.
      const focus = () => { if (!state.editing.has(key)) view.focusGen = liveGeneration(); };
      const edit = (from, to) => () => {
        to.value = from.value;
        if (!state.editing.has(key)) state.editing.set(key, view.focusGen ?? liveGeneration());
        markEditing(view, true);
      };
      for (const input of [range, number]) input.addEventListener('focus', focus);
      range.addEventListener('input', edit(range, number));
      number.addEventListener('input', edit(number, range));
      const unavailable = el('span', { class: 'unavailable', hidden: true }, 'no endpoint up');
      const cells = { rps: metricCell('rps'), err: metricCell('err'), p50: metricCell('p50'), p99: metricCell('p99') };
      const tr = el('tr', { 'data-group': g.group },
        el('td', {}, el('span', { class: 'swatch' }), g.group, unavailable),
        el('td', {}, el('div', { class: 'weight' }, range, number)),
        cells.rps.td, cells.err.td, cells.p50.td, cells.p99.td);
      paintSwatch(tr.querySelector('.swatch'), g.group);
      table.append(tr);
      view.rows.push({ group: g.group, range, number, cells, unavailable });
    });
    const actions = el('div', { class: 'actions' },
      button('Apply weights', 'apply', { class: 'primary' }, () => applyWeights(route, rule.rule)),
      button('Reset', 'reset', { class: 'quiet' }, () => { state.editing.delete(key); markEditing(view, false); updateRule(route, findRule(route, rule.rule), state.doc); }),
      el('span', { class: 'sep' }));
    for (const g of rule.groups) {
      actions.append(button('Promote ' + g.group, 'promote', { 'data-group': g.group }, () => doPromote(route, rule.rule, g.group)));
    }
    actions.append(button('Roll back', 'rollback', {}, () => doRollback(route, rule.rule)));
    view.rollout = el('span', { class: 'actions', hidden: true },
      el('span', { class: 'sep' }),
      ...['start', 'pause', 'resume', 'abort'].map((a) => button(
        a[0].toUpperCase() + a.slice(1) + (a === 'start' ? ' rollout' : ''), 'rollout-' + a,
        a === 'abort' ? { class: 'danger' } : {}, () => doRollout(route, rule.rule, a))));
    actions.append(view.rollout);
    view.actions = actions;
    state.views.set(key, view);
    return el('div', { class: 'rule', 'data-rule': key },
      el('div', { class: 'rule-head' }, el('h3', {}, rule.rule), tags), bars, table, actions, view.verdict);
  }

  // Colour swatches are SVG-free spans: their colour is set through the
  // CSSOM (allowed by the style policy, unlike a style attribute).
  function paintSwatch(span, group) { span.style.background = colorOf(group); }

  function markEditing(view, on) {
    for (const r of view.rows) {
      r.number.classList.toggle('editing', on);
    }
  }

  function findRule(route, rule) {
    const r = state.doc.routes.find((x) => x.route === route);
    return r && r.rules.find((x) => x.rule === rule);
  }

  function updateRule(route, rule, doc) {
    if (!rule) return;
    const key = ruleKey(route, rule.rule);
    const view = state.views.get(key);
    if (!view) return;
    const total = rule.groups.reduce((s, g) => s + g.desired, 0);
    const desired = rule.groups.map((g) => (total > 0 ? (100 * g.desired) / total : 0));
    drawBar(view.bars.desired, rule.groups, desired);
    drawBar(view.bars.effective, rule.groups, rule.groups.map((g) => g.effective));
    const observed = rule.groups.map((g) => (g.observed === null ? null : 100 * g.observed));
    drawBar(view.bars.observed, rule.groups, observed.includes(null) ? null : observed);
    const editing = state.editing.has(key);
    const max = Math.max(100, total);
    rule.groups.forEach((g, i) => {
      const row = view.rows[i];
      row.range.max = max;
      // Never under the cursor of someone typing, nor over an edit.
      const typing = document.activeElement === row.range || document.activeElement === row.number;
      if (!editing && !typing) {
        row.range.value = g.desired;
        row.number.value = g.desired;
      }
      row.unavailable.hidden = g.available;
      const s = g.sample || {};
      const ring = state.history.get(key + '/' + g.group) || [];
      setMetric(row.cells.rps, fmtRate(s.rps), '', ring, (x) => x.rps);
      setMetric(row.cells.err, fmtPct(s.err), errClass(s.err), ring, (x) => x.err);
      setMetric(row.cells.p50, fmtMs(s.p50), '', ring, (x) => x.p50);
      setMetric(row.cells.p99, fmtMs(s.p99), '', ring, (x) => x.p99);
    });
    const analysis = (doc.analysis || []).find((a) => a.route === route && a.rule === rule.rule);
    view.rollout.hidden = !(rule.rollout_plan || analysis);
    const phase = analysis ? analysis.phase : 'not_started';
    const allowed = {
      start: phase !== 'running' && phase !== 'paused',
      pause: phase === 'running',
      resume: phase === 'paused',
      abort: phase === 'running' || phase === 'paused',
    };
    for (const b of view.rollout.querySelectorAll('button')) {
      b.disabled = !allowed[b.getAttribute('data-action').slice('rollout-'.length)];
    }
    renderVerdict(view.verdict, analysis);
  }

  function setMetric(cell, text, cls, ring, pick) {
    cell.v.textContent = text;
    cell.v.className = 'v ' + cls;
    cell.td.classList.toggle('bad-metric', cls === 'bad');
    cell.path.setAttribute('d', sparkPath(ring, pick));
  }

  // A fixed five-minute x axis ending now; gaps where there was no traffic.
  function sparkPath(ring, pick) {
    if (ring.length === 0) return '';
    const end = ring[ring.length - 1].t;
    // The axis grows with the history up to five minutes, so a young
    // history is not a dot at the right edge.
    const span = Math.min(state.depth, Math.max(30, end - ring[0].t));
    let max = 0;
    for (const s of ring) { const v = pick(s); if (v !== null && v !== undefined && v > max) max = v; }
    if (max === 0) max = 1;
    let d = '';
    let pen = false;
    for (const s of ring) {
      const v = pick(s);
      if (v === null || v === undefined) { pen = false; continue; }
      const x = (84 * (span - (end - s.t))) / span;
      const y = 21 - (19 * v) / max;
      d += (pen ? 'L' : 'M') + x.toFixed(1) + ' ' + y.toFixed(1);
      pen = true;
    }
    return d;
  }

  function drawBar(bar, groups, shares) {
    bar.replaceChildren();
    if (!shares) {
      const t = svg('text', { x: '8', y: '13' });
      t.textContent = 'no traffic in the last 10 s';
      bar.append(t);
      return;
    }
    let x = 0;
    groups.forEach((g, i) => {
      const w = Math.max(0, shares[i] || 0);
      if (w <= 0) return;
      const title = svg('title', {});
      title.textContent = g.group + ' ' + w.toFixed(1) + '%';
      const rect = svg('rect', { x: x + '%', y: '0', width: w + '%', height: '18', fill: colorOf(g.group), 'data-group': g.group });
      rect.append(title);
      bar.append(rect);
      const label = g.group + ' ' + (w >= 99.95 ? '100' : w.toFixed(w < 10 ? 1 : 0)) + '%';
      if ((w / 100) * (bar.clientWidth || 600) >= 7 * label.length + 12) {
        const t = svg('text', { x: x + '%', dx: '8', y: '13' });
        t.textContent = label;
        bar.append(t);
      }
      x += w;
    });
  }

  function renderVerdict(box, a) {
    box.hidden = !a;
    if (!a) return;
    const verdict = a.verdict || 'inconclusive';
    const head = el('div', { class: 'head' },
      el('b', {}, 'Rollout'),
      el('span', { class: 'badge ' + verdict, 'data-verdict': verdict }, verdict),
      el('span', {}, (a.phase || '').replace('_', ' ')));
    if (a.step && a.step.weight !== null && a.step.weight !== undefined) {
      head.append(el('span', {}, 'step ' + (a.step.index + 1) + ' of ' + a.step.of + ' · canary ' + a.step.weight + '%'));
    }
    const items = [];
    const groups = a.groups || {};
    for (const [name, g] of Object.entries(groups)) {
      items.push([name, g.requests + ' req · ' + g.errors + ' err (' + fmtPct(g.rate) + ')']);
    }
    if (a.bayes_factor !== undefined) items.push(['Bayes factor (fail at 1/α)', fmtNum(a.bayes_factor, 2)]);
    if (a.p_value !== undefined) items.push(['anytime p-value', fmtNum(a.p_value, 3)]);
    if (a.effect) {
      items.push(['error-rate effect', '[' + fmtNum(100 * a.effect.low, 2) + ', ' + fmtNum(100 * a.effect.high, 2) + '] pp']);
    }
    if (a.requests_needed !== undefined && a.requests_needed !== null) {
      // Every metric must decide; say which one needs the most.
      const each = (a.metrics || []).filter((m) => m.requests_needed !== null && m.requests_needed !== undefined)
        .map((m) => m.metric + ' ' + m.requests_needed);
      items.push(['to decide' + (each.length > 1 ? ' (' + each.join(', ') + ')' : ''),
        'needs about ' + a.requests_needed + ' more canary requests']);
    }
    if (a.window && a.window.seconds !== undefined) items.push(['this step', Math.round(a.window.seconds) + ' s']);
    const evidence = el('div', { class: 'evidence' },
      ...items.map(([k, v]) => el('div', {}, k, el('b', {}, v))));
    box.replaceChildren(head, evidence, el('div', { class: 'reason' }, a.reason || ''));
  }

  function renderEndpoints(list) {
    if (list.length === 0) {
      $('endpoints').replaceChildren(el('span', { class: 'empty' }, 'no endpoints'));
      return;
    }
    const rows = list.map((e) => {
      const status = e.ejected ? 'ejected' : e.healthy ? 'serving' : 'failing health checks';
      return el('tr', { 'data-endpoint': e.endpoint },
        el('td', {}, e.group), el('td', {}, el('code', {}, e.endpoint)),
        el('td', {}, el('span', { class: 'badge ' + (e.ejected || !e.healthy ? 'bad' : 'good') }, status)),
        el('td', {}, String(e.ejections)));
    });
    $('endpoints').replaceChildren(el('table', { class: 'list' },
      el('tr', {}, ...['group', 'endpoint', 'state', 'ejections so far'].map((h) => el('th', {}, h))), ...rows));
  }

  function weightsText(w) {
    return Object.entries(w || {}).map(([g, v]) => g + '=' + v).join(' ');
  }

  function renderOverrides(list) {
    if (list.length === 0) {
      $('overrides').replaceChildren(el('span', { class: 'empty' }, 'none: every weight is the config\'s'));
      return;
    }
    const rows = [...list].sort((a, b) => b.generation - a.generation).map((o) => el('tr', {},
      el('td', {}, String(o.generation)), el('td', {}, o.route + '/' + o.rule),
      el('td', {}, weightsText(o.weights)), el('td', {}, o.origin)));
    $('overrides').replaceChildren(el('table', { class: 'list' },
      el('tr', {}, ...['generation', 'rule', 'weights', 'by'].map((h) => el('th', {}, h))), ...rows));
  }

  // === actions

  function notice(text) {
    $('notice').textContent = text;
    $('notice').hidden = !text;
  }

  function confirmMove(text) {
    const dialog = $('confirm');
    $('confirm-text').textContent = text;
    return new Promise((resolve) => {
      const done = (ok) => () => {
        $('confirm-ok').removeEventListener('click', yes);
        $('confirm-cancel').removeEventListener('click', no);
        dialog.removeEventListener('cancel', no);
        dialog.close();
        resolve(ok);
      };
      const yes = done(true);
      const no = done(false);
      $('confirm-ok').addEventListener('click', yes);
      $('confirm-cancel').addEventListener('click', no);
      dialog.addEventListener('cancel', no);
      dialog.showModal();
    });
  }

  // Share of all traffic that changes group, in percent.
  function moved(before, after) {
    const names = new Set([...Object.keys(before), ...Object.keys(after)]);
    let sum = 0;
    for (const n of names) sum += Math.abs((after[n] || 0) - (before[n] || 0));
    return sum / 2;
  }

  function shares(weights) {
    const total = Object.values(weights).reduce((s, v) => s + v, 0);
    const out = {};
    for (const [g, w] of Object.entries(weights)) out[g] = total > 0 ? (100 * w) / total : 0;
    return out;
  }

  function liveWeights(route, rule) {
    const r = findRule(route, rule);
    const w = {};
    if (r) for (const g of r.groups) w[g.group] = g.desired;
    return w;
  }

  async function guard(percent, what) {
    if (percent <= 50) return true;
    return confirmMove(what + ' moves ' + Math.round(percent) + '% of the traffic to another version.');
  }

  async function applyWeights(route, rule) {
    const key = ruleKey(route, rule);
    const view = state.views.get(key);
    const since = state.editing.has(key) ? state.editing.get(key) : liveGeneration();
    const next = {};
    for (const r of view.rows) {
      const v = Number(r.number.value);
      if (!Number.isInteger(v) || v < 0) {
        notice('Weight of ' + r.group + ' must be a whole number, 0 or more.');
        return;
      }
      next[r.group] = v;
    }
    const before = shares(liveWeights(route, rule));
    if (!(await guard(moved(before, shares(next)), 'This change'))) return;
    const res = await api('PATCH', 'v1/routes/' + enc(route) + '/rules/' + enc(rule) + '/weights', next, since);
    state.editing.delete(key);
    markEditing(view, false);
    answered(res, since, key + ': weights ' + weightsText(next));
  }

  async function doPromote(route, rule, group) {
    const before = shares(liveWeights(route, rule));
    if (!(await guard(100 - (before[group] || 0), 'Promoting ' + group))) return;
    const since = liveGeneration();
    const res = await api('POST', 'v1/routes/' + enc(route) + '/rules/' + enc(rule) + '/promote', { group }, since);
    answered(res, since, route + '/' + rule + ': ' + group + ' promoted to 100%');
  }

  async function doRollback(route, rule) {
    const ok = await confirmMove('Roll back restores the weights ' + route + '/' + rule +
      ' had before its last change, which may move more than half the traffic.');
    if (!ok) return;
    const since = liveGeneration();
    const res = await api('POST', 'v1/routes/' + enc(route) + '/rules/' + enc(rule) + '/rollback', undefined, since);
    answered(res, since, route + '/' + rule + ': rolled back');
  }

  async function doSwitch(route, group) {
    const r = state.doc.routes.find((x) => x.route === route);
    let most = 0;
    for (const rule of (r ? r.rules : [])) {
      const s = shares(liveWeights(route, rule.rule));
      if (group in s) most = Math.max(most, 100 - s[group]);
    }
    if (!(await guard(most, 'Switching ' + route + ' to ' + group))) return;
    const since = liveGeneration();
    const res = await api('POST', 'v1/routes/' + enc(route) + '/switch', { to: group }, since);
    answered(res, since, route + ': switched to ' + group);
  }

  async function doRollout(route, rule, action) {
    if (action === 'abort') {
      const a = (state.doc.analysis || []).find((x) => x.route === route && x.rule === rule);
      const canary = a && a.weights ? shares(a.weights) : {};
      const name = a && a.groups ? Object.keys(a.groups).find((g) => g !== 'baseline') : null;
      if (!(await guard(name ? canary[name] || 0 : 0, 'Aborting'))) return;
    }
    const since = liveGeneration();
    const res = await api('POST', 'v1/routes/' + enc(route) + '/rules/' + enc(rule) + '/rollout/' + action, undefined, since);
    answered(res, since, route + '/' + rule + ': rollout ' + action);
  }

  async function answered(res, since, what) {
    if (res.status === 200) {
      $('conflict').hidden = true;
      if (res.json && typeof res.json.generation === 'number') {
        state.written = Math.max(state.written, res.json.generation);
      }
      notice('Applied: ' + what + (res.json && res.json.generation ? ' (generation ' + res.json.generation + ')' : '') + '.');
      return;
    }
    if (res.status === 401 || res.status === 403) return;
    const stale = res.status === 409 && res.json && typeof res.json.generation === 'number';
    if (stale) {
      await showConflict(since, res.json.generation, what);
      return;
    }
    notice('Not applied: ' + what + ': ' + ((res.json && res.json.error) || 'status ' + res.status) +
      (res.json && res.json.errors ? ' ' + res.json.errors.map((e) => e.path + ': ' + e.message).join('; ') : ''));
  }

  // Who changed what since the generation the edit started from, then the
  // live values back in the form.
  async function showConflict(since, current, what) {
    const cfg = await api('GET', 'v1/config');
    const lines = [];
    if (cfg.status === 200 && cfg.json) {
      for (const o of cfg.json.overrides || []) {
        if (o.generation > since) {
          lines.push('generation ' + o.generation + ': ' + o.route + '/' + o.rule + ' set to ' +
            weightsText(o.weights) + ' by ' + o.origin);
        }
      }
      if (lines.length === 0) lines.push('the config was replaced or reloaded (' + originText(cfg.json.base_origin) + ')');
    }
    $('conflict-text').textContent = 'You edited generation ' + since + '; the live one is ' + current +
      ' (' + lines.join('; ') + '). "' + what + '" was not applied; the form shows the live values now.';
    $('conflict').hidden = false;
    notice('');
    state.editing.clear();
    for (const v of state.views.values()) markEditing(v, false);
    if (state.doc) render(state.doc);
  }

  // === start

  function start() {
    $('login-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const t = $('token').value.trim();
      if (!t) {
        $('login-error').textContent = 'Enter the token.';
        return;
      }
      sessionStorage.setItem(TOKEN_KEY, t);
      $('token').value = '';
      $('login-error').textContent = '';
      connect();
    });
    $('sign-out').addEventListener('click', () => {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin('');
    });
    $('conflict-close').addEventListener('click', () => { $('conflict').hidden = true; });
    connect();
  }

  start();
})();
