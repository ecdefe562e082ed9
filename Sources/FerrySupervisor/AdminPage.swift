/// The admin listener's status page (`GET /`): one self-contained HTML document (inline CSS and
/// script, no external request; a Content-Security-Policy limits it to its own origin) for the
/// operator. It shows the master (pid, uptime, generation, configuration file, last reload), alerts
/// (failed reload, unserved slots, backends or servers not up, draining generations, certificates
/// close to expiry), totals (requests/s, 5xx/s, client connections, WebSockets) with sparklines of
/// the kept history, routes (rates now, sparklines, upgrades, open tunnels), workers grouped by
/// generation with draining generations and what they still carry, backends, servers and their
/// active health, connection pools (reuse ratio, close reasons), certificates and recent events.
///
/// It polls `status.json` (the document of `ferry status --json`) and `history.json?since=T` (only
/// the samples after the last one it has, so a fresh page gets the minutes before it was opened)
/// once a second, with relative URLs so it works behind a path prefix; a failed poll marks the page
/// stale with the time of the last good update. Every string from the JSON reaches the DOM as text,
/// never as markup. Stable attributes for tests: `data-route`/`data-rps`/`data-eps` on route rows,
/// `data-backend`/`data-state` on backend rows, `data-worker`/`data-generation`/`data-state` on
/// worker rows, `data-draining-generation`/`data-connections-left` on a draining generation,
/// `data-ok` on the header (`id="updated"`), `data-points` on sparklines (`svg.spark`).
enum AdminPage {
    static let html = #"""
    <!doctype html>
    <html lang="en">
    <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <meta http-equiv="Content-Security-Policy" content="default-src 'none'; connect-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:">
    <link rel="icon" href="data:,">
    <title>Ferry</title>
    <style>
    :root{color-scheme:dark;--bg:#0b0f14;--panel:#131a23;--line:#2b3645;--row:#1c2530;--fg:#edf2f7;--mute:#a9b6c6;--ok:#3fcf5a;--warn:#f5b82e;--bad:#ff6b61;--okbg:#0f2a17;--warnbg:#33260a;--badbg:#3a1212}
    *{box-sizing:border-box}
    body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif}
    header{position:sticky;top:0;z-index:2;background:#0f151d;border-bottom:3px solid var(--ok);padding:10px 20px;display:flex;flex-wrap:wrap;gap:6px 28px;align-items:baseline}
    header[data-ok=false]{border-bottom-color:var(--bad);background:#2a0d0d}
    header h1{margin:0;font-size:26px;letter-spacing:.02em}
    header .kv{color:var(--mute)}header .kv b{color:var(--fg);font-weight:600}
    #live{margin-left:auto;font-weight:800;font-size:17px}
    #live .b{font-size:15px;padding:2px 12px}
    #reload{flex-basis:100%;color:var(--mute)}
    main{padding:12px 20px 40px;max-width:1500px}
    body.stale main{opacity:.55}
    section{background:var(--panel);border:1px solid var(--line);border-radius:8px;padding:10px 14px;margin:12px 0;overflow-x:auto}
    h2{font-size:14px;text-transform:uppercase;letter-spacing:.08em;color:var(--mute);margin:0 0 8px}
    h3{font-size:13px;color:var(--mute);margin:12px 0 4px;font-weight:600}
    #alerts{padding:0;background:none;border:0}
    .al{padding:7px 12px;border-radius:6px;margin:4px 0;font-weight:600;border-left:6px solid}
    .al.ok{background:var(--okbg);border-color:var(--ok)}.al.warn{background:var(--warnbg);border-color:var(--warn)}.al.bad{background:var(--badbg);border-color:var(--bad)}
    #totals{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:12px;background:none;border:0;padding:0}
    .card{background:var(--panel);border:1px solid var(--line);border-radius:8px;padding:10px 14px}
    .card .lab{color:var(--mute);font-size:13px;text-transform:uppercase;letter-spacing:.06em}
    .card .val{font-size:34px;font-weight:700;font-variant-numeric:tabular-nums;line-height:1.15}
    .card .sub{color:var(--mute);font-size:12px}
    .card.hot{border-color:var(--bad)}.card.hot .val{color:var(--bad)}
    table{border-collapse:collapse;width:100%}
    th{color:var(--mute);font-weight:600;text-align:left;font-size:12px;text-transform:uppercase;letter-spacing:.04em;border-bottom:1px solid var(--line);padding:4px 8px;white-space:nowrap}
    td{padding:5px 8px;border-bottom:1px solid var(--row);vertical-align:middle}
    .n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
    .m{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:14px}
    .mute{color:var(--mute)}.red{color:var(--bad);font-weight:700}.amb{color:var(--warn);font-weight:700}.grn{color:var(--ok);font-weight:700}
    .b{display:inline-block;padding:0 9px;border-radius:10px;font-weight:700;font-size:13px;color:#0b0f14;white-space:nowrap}
    .b.ok{background:var(--ok)}.b.warn{background:var(--warn)}.b.bad{background:var(--bad)}.b.mute{background:#3a4758;color:var(--fg)}
    .chip{display:inline-block;border:1px solid var(--line);border-radius:4px;padding:0 6px;margin:1px 4px 1px 0;font-size:13px;white-space:nowrap}
    .chip b{font-variant-numeric:tabular-nums}.chip.bad{border-color:var(--bad);color:var(--bad)}.chip.warn{border-color:var(--warn);color:var(--warn)}
    svg.spark{display:block;overflow:visible}
    svg.spark .l{fill:none;stroke-width:1.6;vector-effect:non-scaling-stroke}
    .sr{color:#5fb3ff}.se{color:var(--bad)}.sc{color:#c99bff}.st{color:#4fd1c5}
    svg.spark path.l{stroke:currentColor}svg.spark path.a{fill:currentColor;opacity:.18;stroke:none}
    tbody.gen tr.gh td{background:#18212c;font-weight:700;border-top:2px solid var(--line)}
    tbody.gen.drain tr.gh td{background:var(--warnbg);color:var(--warn);border-top:2px solid var(--warn);font-size:16px}
    tbody.gen.drain td:first-child{border-left:5px solid var(--warn)}
    .empty{color:var(--mute);font-style:italic;padding:4px 0}
    .msg{white-space:pre-wrap;word-break:break-word}
    </style>
    </head>
    <body>
    <header id="updated" data-ok="false">
    <h1>Ferry</h1>
    <span class="kv">master pid <b id="pid">–</b></span>
    <span class="kv">up <b id="uptime">–</b></span>
    <span class="kv">generation <b id="gen">–</b></span>
    <span class="kv">config <b id="cfg" class="m">–</b></span>
    <span id="live"><span class="b mute">CONNECTING…</span></span>
    <div id="reload"></div>
    </header>
    <main>
    <section id="alerts"></section>
    <section id="totals">
    <div class="card" id="t-req"><div class="lab">Requests / s</div><div class="val">–</div><div class="sp"></div><div class="sub"></div></div>
    <div class="card" id="t-err"><div class="lab">5xx errors / s</div><div class="val">–</div><div class="sp"></div><div class="sub"></div></div>
    <div class="card" id="t-con"><div class="lab">Client connections</div><div class="val">–</div><div class="sp"></div><div class="sub"></div></div>
    <div class="card" id="t-tun"><div class="lab">WebSockets open</div><div class="val">–</div><div class="sp"></div><div class="sub"></div></div>
    </section>
    <section><h2>Routes</h2><div id="routes"></div></section>
    <section><h2>Workers</h2><div id="workers"></div></section>
    <section><h2>Backends</h2><div id="backends"></div></section>
    <section><h2>Connection pools <span class="mute">(current generation)</span></h2><div id="pools"></div></section>
    <section id="certs-s" hidden><h2>Certificates</h2><div id="certs"></div></section>
    <section id="events-s" hidden><h2>Recent events</h2><div id="events"></div></section>
    </main>
    <script>
    (() => {
    'use strict';
    // (not indented: the whole script is this function, to keep its names off window)
    const $ = (id) => document.getElementById(id);
    const SVG = 'http://www.w3.org/2000/svg';
    // Elements are built with createElement and text nodes only: no string from the JSON is parsed as HTML.
    function h(tag, attrs, ...kids) {
      const e = document.createElement(tag);
      setAttrs(e, attrs);
      for (const c of kids.flat()) if (c != null && c !== false) e.append(c instanceof Node ? c : String(c));
      return e;
    }
    function setAttrs(e, attrs) {
      for (const k in attrs || {}) {
        const v = attrs[k];
        if (v == null || v === false) continue;
        if (k === 'cls') e.setAttribute('class', v); else e.setAttribute(k, String(v));
      }
    }
    function s(tag, attrs) { const e = document.createElementNS(SVG, tag); setAttrs(e, attrs); return e; }
    const num = (x) => (typeof x === 'number' && isFinite(x) ? x : 0);
    const arr = (x) => (Array.isArray(x) ? x : []);
    const str = (x) => (x == null ? '' : String(x));
    function r1(x) { const v = Math.round(num(x) * 10) / 10; return String(v === 0 ? 0 : v); }
    function int(x) { return Math.round(num(x)).toLocaleString('en-US'); }
    const pad = (n) => String(n).padStart(2, '0');
    function clock(sec) { const d = new Date(sec * 1000); return pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds()); }
    function day(sec) { const d = new Date(sec * 1000); return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()); }
    function when(sec) { return (day(sec) === day(Date.now() / 1000) ? '' : day(sec) + ' ') + clock(sec); }
    function dur(x) {
      let t = Math.max(0, Math.floor(num(x)));
      const d = Math.floor(t / 86400), hh = Math.floor(t / 3600) % 24, m = Math.floor(t / 60) % 60, ss = t % 60;
      return d ? d + 'd ' + hh + 'h ' + m + 'm' : hh ? hh + 'h ' + m + 'm' : m ? m + 'm ' + ss + 's' : ss + 's';
    }
    function ago(sec) { return dur(Date.now() / 1000 - sec) + ' ago'; }
    const badge = (cls, text) => h('span', { cls: 'b ' + cls }, text);
    const OK = { backend: 'ready external', worker: 'ready standby', server: 'up', health: 'up' };
    const WARN = { backend: 'starting restarting backoff', worker: 'starting draining', server: 'draining starting backoff', health: '' };
    const cls = (kind, st) => (OK[kind].split(' ').includes(st) ? 'ok' : WARN[kind].split(' ').includes(st) ? 'warn' : 'bad');
    // Column titles starting with # are numeric (right-aligned).
    const thead = (heads) => h('thead', null, h('tr', null, heads.map((x) => h('th', { cls: x[0] === '#' ? 'n' : null }, x.replace('#', '')))));
    function table(heads, rows, empty) {
      return rows.length ? h('table', null, thead(heads), h('tbody', null, rows)) : h('div', { cls: 'empty' }, empty || 'none');
    }
    const td = (x, c) => h('td', { cls: c }, x);
    const tn = (x, c) => h('td', { cls: 'n' + (c ? ' ' + c : '') }, x);

    // History: samples oldest first, at most `capacity`.
    let samples = [], capacity = 600, interval = 1, lastT = 0;
    let status = null, lastGood = 0, failure = null;
    const routeMaps = new WeakMap();
    function routesOf(sample) {
      let m = routeMaps.get(sample);
      if (!m) {
        m = new Map();
        for (const r of arr(sample.routes)) {
          const p = str(r.path), o = m.get(p) || { req: 0, err: 0 };
          o.req += num(r.requests); o.err += num(r.errors); m.set(p, o);
          if (r.backend != null && !o.backend) o.backend = str(r.backend);
        }
        routeMaps.set(sample, m);
      }
      return m;
    }
    function ingest(hist) {
      if (!hist || typeof hist !== 'object') return;
      if (num(hist.capacity) > 0) capacity = hist.capacity;
      if (num(hist.intervalSeconds) > 0) interval = hist.intervalSeconds;
      const fresh = arr(hist.samples).filter((x) => x && typeof x.t === 'number' && x.t > lastT).sort((a, b) => a.t - b.t);
      if (fresh.length) { samples = samples.concat(fresh); lastT = fresh[fresh.length - 1].t; }
      if (samples.length > capacity) samples = samples.slice(samples.length - capacity);
    }

    // A sparkline over the kept window (time on x, gaps left open), scaled to its own maximum.
    function spark(values, color, w, hgt, full) {
      const span = Math.max(capacity * interval, 60), end = lastT;
      const svg = s('svg', { cls: 'spark ' + color, 'data-points': values.length, viewBox: '0 0 ' + w + ' ' + hgt, preserveAspectRatio: 'none', width: full ? '100%' : w, height: hgt });
      let max = 0;
      for (const v of values) max = Math.max(max, num(v));
      const y = (v) => (hgt - 1.5 - (max ? (num(v) / max) * (hgt - 4) : 0)).toFixed(1);
      let line = '', area = '', prevT = null, segStart = null, lastX = null;
      values.forEach((v, i) => {
        const t = samples[samples.length - values.length + i].t, x = (w - ((end - t) / span) * w).toFixed(1);
        if (prevT == null || t - prevT > interval * 2.5) {
          if (segStart != null) area += 'L' + lastX + ' ' + hgt + 'L' + segStart + ' ' + hgt + 'Z';
          line += 'M' + x + ' ' + y(v); area += 'M' + x + ' ' + y(v); segStart = x;
        } else { line += 'L' + x + ' ' + y(v); area += 'L' + x + ' ' + y(v); }
        prevT = t; lastX = x;
      });
      if (segStart != null) area += 'L' + lastX + ' ' + hgt + 'L' + segStart + ' ' + hgt + 'Z';
      if (values.length) { svg.append(s('path', { cls: 'a', d: area }), s('path', { cls: 'l', d: line })); }
      const title = s('title'); title.textContent = 'last ' + dur(samples.length ? end - samples[samples.length - values.length].t : 0) + ', max ' + r1(max);
      svg.append(title);
      return svg;
    }

    // Sections whose data did not change are left alone (so text can be selected).
    const drawn = {};
    function put(id, key, build) {
      const k = JSON.stringify(key);
      if (drawn[id] === k) return;
      drawn[id] = k;
      $(id).replaceChildren(...[].concat(build()));
    }

    function header(st, ok) {
      const hd = $('updated');
      hd.setAttribute('data-ok', ok ? 'true' : 'false');
      document.body.classList.toggle('stale', !ok && !!st);
      const now = Date.now() / 1000;
      if (ok) {
        $('live').replaceChildren(badge('ok', 'LIVE'), h('span', { cls: 'mute' }, '  updated ' + clock(lastGood / 1000)));
      } else {
        $('live').replaceChildren(badge('bad', st ? 'STALE' : 'NO DATA'), h('span', { cls: 'red' }, '  ' + failure),
          h('span', { cls: 'mute' }, lastGood ? '  · last good update ' + clock(lastGood / 1000) + ' (' + dur(now - lastGood / 1000) + ' ago)' : '  · no answer yet'));
      }
      document.title = (ok ? '' : 'STALE · ') + 'Ferry' + (st ? ' · pid ' + st.masterPID : '');
      if (!st) return;
      $('pid').textContent = str(st.masterPID);
      $('uptime').textContent = dur(num(st.uptimeSeconds) + (ok ? 0 : now - lastGood / 1000));
      $('gen').textContent = str(st.generation);
      $('cfg').textContent = str(st.configFile);
      const r = st.lastReload;
      put('reload', r || null, () => r
        ? ['last reload: ', badge(r.ok ? 'ok' : 'bad', r.ok ? 'ok' : 'FAILED'), ' ', h('span', { cls: r.ok ? null : 'red' }, str(r.message).split('\n')[0]), h('span', { cls: 'mute' }, ' · ' + when(num(r.at)) + ' (' + ago(num(r.at)) + ')')]
        : [h('span', { cls: 'mute' }, 'no reload since start')]);
    }

    function drainingGens(st) {
      const all = arr(st.workers).concat(arr(st.standby)), gens = new Map();
      for (const w of all) { const g = num(w.generation); if (!gens.has(g)) gens.set(g, []); gens.get(g).push(w); }
      const out = new Map();
      for (const [g, ws] of gens) {
        const dr = ws.filter((w) => w.state === 'draining');
        if (dr.length && (g !== st.generation || dr.length === ws.length)) {
          const c = dr.reduce((a, w) => a + num(w.stats && w.stats.connectionsOpen), 0), t = dr.reduce((a, w) => a + num(w.stats && w.stats.activeTunnels), 0);
          out.set(g, { workers: dr.length, conns: c, tunnels: t });
        }
      }
      return { gens, out };
    }

    function alerts(st) {
      const list = [], add = (c, t) => list.push(h('div', { cls: 'al ' + c }, t));
      if (st.lastReload && !st.lastReload.ok) add('bad', 'Last reload FAILED (' + ago(num(st.lastReload.at)) + '): ' + str(st.lastReload.message).split('\n')[0]);
      for (const u of arr(st.unservedSlots)) add('bad', 'Slot ' + u.slot + ' has NO WORKER (it could not boot): ' + str(u.reason).split('\n')[0]);
      for (const w of arr(st.workers)) if (w.state === 'failed') add('bad', 'Worker ' + w.pid + ' (slot ' + w.slot + ') failed');
      for (const b of arr(st.backends)) { const c = cls('backend', b.state); if (c !== 'ok') add(c, 'Backend ' + b.name + ': ' + b.state); }
      for (const x of arr(st.servers)) { const c = cls('server', x.state); if (c !== 'ok') add(c, 'Server ' + x.server + ' of ' + x.backend + ': ' + x.state); }
      for (const [g, d] of drainingGens(st).out) add('warn', 'Generation ' + g + ' draining: ' + (d.conns + d.tunnels) + ' left (' + d.conns + ' connections + ' + d.tunnels + ' WebSockets) on ' + d.workers + ' worker' + (d.workers === 1 ? '' : 's'));
      for (const c of arr(st.certificates)) if (num(c.daysLeft) < 14) add(num(c.daysLeft) < 7 ? 'bad' : 'warn', 'Certificate ' + arr(c.names).join(', ') + ' (' + c.listener + ') ' + (num(c.daysLeft) < 0 ? 'EXPIRED' : 'expires in ' + Math.floor(num(c.daysLeft)) + ' days'));
      if (!list.length) add('ok', 'All workers and backends are up');
      return list;
    }

    function totals() {
      const last = samples[samples.length - 1] || {};
      const defs = [['t-req', 'requests', 'sr', r1], ['t-err', 'errors', 'se', r1], ['t-con', 'connections', 'sc', int], ['t-tun', 'tunnels', 'st', int]];
      for (const [id, key, color, f] of defs) {
        const card = $(id), vals = samples.map((x) => num(x[key]));
        card.querySelector('.val').textContent = samples.length ? f(last[key]) : '–';
        card.querySelector('.sp').replaceChildren(spark(vals, color, 300, 44, true));
        card.querySelector('.sub').textContent = samples.length ? 'max ' + f(Math.max(...vals)) + ' over ' + dur(lastT - samples[0].t) : 'no history yet';
        if (key === 'errors') card.classList.toggle('hot', num(last.errors) > 0);
      }
    }

    function routes(st) {
      const agg = new Map();
      for (const w of arr(st.workers)) {
        if (w.generation !== st.generation || !w.stats) continue;
        for (const r of arr(w.stats.routes)) {
          const p = str(r.path), o = agg.get(p) || { backends: [], upgrades: 0, tunnels: 0 };
          if (r.backend != null && !o.backends.includes(str(r.backend))) o.backends.push(str(r.backend));
          o.upgrades += num(r.upgrades); o.tunnels += num(r.activeTunnels); agg.set(p, o);
        }
      }
      const last = samples.length ? routesOf(samples[samples.length - 1]) : new Map();
      const paths = [...agg.keys()];
      for (const p of last.keys()) if (!agg.has(p)) paths.push(p);
      const rows = paths.map((p) => {
        const a = agg.get(p) || { backends: [], upgrades: 0, tunnels: 0 }, l = last.get(p) || { req: 0, err: 0 };
        const backend = a.backends.length ? a.backends.join(', ') : l.backend || '';
        const req = samples.map((x) => (routesOf(x).get(p) || {}).req || 0), err = samples.map((x) => (routesOf(x).get(p) || {}).err || 0);
        return h('tr', { 'data-route': p, 'data-rps': r1(l.req), 'data-eps': r1(l.err) },
          td(p, 'm'), td(backend || '–', backend ? null : 'mute'), tn(r1(l.req)), tn(r1(l.err), l.err > 0 ? 'red' : 'mute'),
          td(spark(req, 'sr', 160, 26)), td(spark(err, 'se', 160, 26)), tn(int(a.upgrades)), tn(int(a.tunnels)));
      });
      $('routes').replaceChildren(table(['Path', 'Backend', '#req/s', '#5xx/s', 'Requests (10 min)', '5xx (10 min)', '#Upgrades', '#Tunnels'], rows, 'no routes reported yet'));
    }

    function workers(st) {
      const { gens, out } = drainingGens(st);
      const key = [...gens].map(([g, ws]) => [g, ws.map((w) => [w.pid, w.slot, w.state, w.restarts, w.accepting, w.stats && [w.stats.connectionsOpen, w.stats.activeTunnels, w.stats.requests, w.stats.connectionLimit]])]);
      put('workers', [st.generation, key], () => {
        if (!gens.size) return h('div', { cls: 'empty' }, 'no workers');
        const t = h('table', null, thead(['PID', 'Slot', 'State', 'Accepting', '#Restarts', '#Connections', '#WebSockets', '#Requests', '#Limit']));
        for (const g of [...gens.keys()].sort((a, b) => b - a)) {
          const ws = gens.get(g), d = out.get(g);
          const title = d
            ? 'Generation ' + g + ' — DRAINING: ' + (d.conns + d.tunnels) + ' left (' + d.conns + ' connections + ' + d.tunnels + ' WebSockets)'
            : 'Generation ' + g + (g === st.generation ? ' — current' : ' — old') + ' · ' + ws.length + ' worker' + (ws.length === 1 ? '' : 's');
          const body = h('tbody', { cls: 'gen' + (d ? ' drain' : ''), 'data-draining-generation': d ? g : null, 'data-connections-left': d ? d.conns + d.tunnels : null },
            h('tr', { cls: 'gh' }, h('td', { colspan: 9 }, title)));
          for (const w of ws.slice().sort((a, b) => (num(a.slot) < 0) - (num(b.slot) < 0) || num(a.slot) - num(b.slot))) {
            const x = w.stats || {};
            body.append(h('tr', { 'data-worker': w.pid, 'data-generation': w.generation, 'data-state': w.state },
              td(w.pid, 'm'), td(num(w.slot) < 0 ? 'standby' : str(w.slot)), td(badge(cls('worker', w.state), w.state)),
              td(w.accepting == null || w.slot < 0 ? '–' : w.accepting ? 'yes' : 'not yet', w.accepting === false && w.slot >= 0 ? 'amb' : 'mute'),
              tn(int(w.restarts), num(w.restarts) > 0 ? 'amb' : null), tn(w.stats ? int(x.connectionsOpen) : '–'), tn(w.stats ? int(x.activeTunnels) : '–'),
              tn(w.stats ? int(x.requests) : '–'), tn(num(x.connectionLimit) ? int(x.connectionLimit) : '–', 'mute')));
          }
          t.append(body);
        }
        return t;
      });
    }

    function backends(st) {
      const bs = arr(st.backends), sv = st.servers, hl = st.health;
      put('backends', [bs, sv, hl && hl.map((x) => [x.backend, x.server, x.state, x.lastResult, x.latencyMilliseconds])], () => {
        const out = [table(['Name', 'Address', 'State', 'PID', '#Restarts', 'Kind'], bs.map((b) =>
          h('tr', { 'data-backend': b.name, 'data-state': b.state }, td(b.name, 'm'), td(b.address, 'm'), td(badge(cls('backend', b.state), b.state)),
            td(b.pid == null ? '–' : str(b.pid), 'm'), tn(int(b.restarts), num(b.restarts) > 0 ? 'amb' : null), td(b.supervised ? 'supervised' : 'external', 'mute'))), 'no supervised backends')];
        if (Array.isArray(sv)) {
          out.push(h('h3', null, 'Servers'), table(['Backend', 'Server', 'State', '#Weight', '#Active', '#Tunnels', '#Retries'], sv.map((x) =>
            h('tr', { 'data-server': x.server, 'data-server-backend': x.backend, 'data-state': x.state }, td(x.backend, 'm'), td(x.server, 'm'), td(badge(cls('server', x.state), x.state)),
              tn(int(x.weight)), tn(int(x.active)), tn(int(x.tunnels)), tn(int(x.retries), num(x.retries) > 0 ? 'amb' : null)))));
        }
        if (Array.isArray(hl)) {
          out.push(h('h3', null, 'Active health checks'), table(['Backend', 'Server', 'Health', 'Last result', '#Latency', 'Checked'], hl.map((x) =>
            h('tr', { 'data-health': x.server, 'data-state': x.state }, td(x.backend, 'm'), td(x.server, 'm'), td(badge(cls('health', x.state), x.state)),
              td(x.lastResult, x.state === 'up' ? null : 'red'), tn(x.latencyMilliseconds == null ? '–' : num(x.latencyMilliseconds).toFixed(1) + ' ms'),
              td(x.lastCheck == null ? '–' : clock(num(x.lastCheck)), 'mute')))));
        }
        return out;
      });
    }

    const badReasons = ['error', 'unexpected_data'], warnReasons = ['descriptor_limit', 'pool_full', 'idle_timeout'];
    function pools(st) {
      const ps = arr(st.pools);
      put('pools', ps, () => table(['Backend', 'Server', 'Protocol', '#Opened', '#Reused', '#Reuse', '#Idle', '#Active', '#Tunnels', '#Retries', 'Closed (by reason)'], ps.map((p) => {
        const tot = num(p.opened) + num(p.reused), ratio = tot ? num(p.reused) / tot : 0;
        let reuse;
        if (p.protocol === 'websocket') reuse = tn('n/a (never pooled)', 'mute');
        else if (!tot) reuse = tn('–', 'mute');
        else reuse = tn((ratio * 100).toFixed(ratio >= 0.995 || ratio < 0.1 ? 0 : 1) + ' %', ratio >= 0.5 ? 'grn' : ratio >= 0.1 ? 'amb' : 'red');
        const closed = Object.entries(p.closed || {}).filter((e) => num(e[1]) > 0).sort((a, b) => num(b[1]) - num(a[1]) || (a[0] < b[0] ? -1 : 1));
        return h('tr', { 'data-pool': p.backend, 'data-protocol': p.protocol },
          td(p.backend, 'm'), td(p.server == null ? '–' : str(p.server), p.server == null ? 'mute' : 'm'), td(p.protocol),
          tn(int(p.opened)), tn(int(p.reused)), reuse, tn(int(p.idle)), tn(p.active == null ? '–' : int(p.active)), tn(p.tunnels == null ? '–' : int(p.tunnels)),
          tn(int(p.retries), num(p.retries) > 0 ? 'amb' : null),
          td(closed.length ? closed.map(([k, v]) => h('span', { cls: 'chip' + (badReasons.includes(k) ? ' bad' : warnReasons.includes(k) ? ' warn' : '') }, k + ' ', h('b', null, int(v)))) : h('span', { cls: 'mute' }, '–')));
      }), 'no pools yet'));
    }

    // Sections for fields older masters do not send: hidden when absent.
    function opt(id, data, build) {
      $(id + '-s').hidden = !Array.isArray(data);
      if (Array.isArray(data)) put(id, data, build);
    }
    function certs(cs) {
      opt('certs', cs, () => table(['Listener', 'Names', 'Issuer', 'Not after', '#Days left', 'Source'], cs.slice().sort((a, b) => num(a.daysLeft) - num(b.daysLeft)).map((c) => {
        const dl = num(c.daysLeft), col = dl < 7 ? 'bad' : dl < 14 || c.source === 'self-signed' ? 'warn' : 'ok';
        return h('tr', { 'data-certificate': c.listener, 'data-days-left': Math.floor(dl), title: c.path },
          td(c.listener, 'm'), td(arr(c.names).join(', '), 'm'), td(c.issuer), td(when(num(c.notAfter))),
          tn(badge(col, dl < 0 ? 'expired' : String(Math.floor(dl)))), td(c.source, c.source === 'self-signed' ? 'amb' : null));
      }), 'no certificates'));
    }

    const LEVEL = { info: 'mute', notice: 'ok', warning: 'warn', error: 'bad' };
    function events(es) {
      opt('events', es, () => table(['Time', 'Level', 'Message'], es.slice().reverse().map((e) =>
        h('tr', { 'data-level': e.level }, td(when(num(e.at)), 'm'), td(badge(LEVEL[e.level] || 'mute', e.level)), td(e.message, 'msg'))), 'no events'));
    }

    function render() {
      const ok = !failure && !!status;
      header(status, ok);
      if (!status) return;
      const al = alerts(status);
      put('alerts', al.map((x) => x.className + x.textContent), () => al);
      totals(); routes(status); workers(status); backends(status); pools(status); certs(status.certificates); events(status.events);
    }

    async function getJSON(url) {
      const ac = new AbortController(), timer = setTimeout(() => ac.abort(), 3000);
      try {
        const r = await fetch(url, { cache: 'no-store', signal: ac.signal });
        if (!r.ok) throw new Error('HTTP ' + r.status + ' from ' + url.split('?')[0]);
        return await r.json();
      } finally { clearTimeout(timer); }
    }

    async function poll() {
      const started = Date.now();
      try {
        const [st, hist] = await Promise.all([getJSON('status.json'), getJSON('history.json?since=' + lastT)]);
        if (!st || typeof st !== 'object') throw new Error('status.json is not an object');
        ingest(hist); status = st; lastGood = Date.now(); failure = null;
      } catch (e) {
        failure = 'master unreachable: ' + (e && e.name === 'AbortError' ? 'no answer within 3 s' : str(e && e.message || e));
      }
      try { render(); } catch (e) { console.error('render failed', e); }
      setTimeout(poll, Math.max(200, 1000 - (Date.now() - started)));
    }
    poll();
    })();
    </script>
    </body>
    </html>
    """#
}
