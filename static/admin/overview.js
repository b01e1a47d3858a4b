// The overview: every node of the cluster and their total, as a table and
// as charts of the last ten minutes, asked for once a second. The first
// answer carries the whole ten minutes (the server keeps them); each later
// one only the samples after the last one this page has.

import { api } from './api.js';
import { NODE_COLORS, drawChart } from './charts.js';
import { byId, confirmAction, h, toast } from './dom.js';
import { bytes, duration, fill, num, pct } from './format.js';

const POLL_MS = 1000;
const WINDOW_MS = 10 * 60 * 1000;

/** CHARTS are the charted series (server/console/series.go) with their titles and units. */
const CHARTS = [
  { key: 'connections', title: 'Connections', fmt: num },
  { key: 'rooms', title: 'Rooms', fmt: num },
  { key: 'calls', title: 'Calls', fmt: num },
  { key: 'deliveries', title: 'Deliveries/s', fmt: num },
  { key: 'frames_in', title: 'Frames in/s', fmt: num },
  { key: 'frames_out', title: 'Frames out/s', fmt: num },
  { key: 'bytes_out', title: 'Bytes out/s', fmt: bytes, binary: true },
  { key: 'slow_closes', title: 'Slow-consumer closes/s', fmt: num },
  { key: 'errors', title: 'Error frames/s', fmt: num },
  { key: 'cpu', title: 'CPU', fmt: pct },
  { key: 'rss', title: 'Resident memory', fmt: bytes, binary: true },
  { key: 'goroutines', title: 'Goroutines', fmt: num },
];

export class Overview {
  #timer = 0;
  #running = false;
  /** t are the sample times (Unix ms); nodes maps a node's name to its series, total is theirs. */
  #t = [];
  #nodes = new Map();
  #total = {};
  #last = 0;
  #charts = new Map();
  #readonly = false;

  constructor() {
    const grid = byId('charts');
    for (const c of CHARTS) {
      const canvas = h('canvas', { role: 'img', 'aria-label': c.title });
      const now = h('span', { class: 'chart-now' });
      grid.append(h('figure', { class: 'chart' }, h('figcaption', {}, h('span', { text: c.title }), now), canvas));
      this.#charts.set(c.key, { ...c, canvas, now });
    }
    byId('drain').addEventListener('click', () => this.#drain());
    window.addEventListener('resize', () => this.#draw());
  }

  set readonly(on) {
    this.#readonly = on;
    byId('drain').disabled = on;
  }

  start() {
    if (this.#running) return;
    this.#running = true;
    this.#poll();
  }

  stop() {
    this.#running = false;
    clearTimeout(this.#timer);
  }

  async #poll() {
    clearTimeout(this.#timer);
    try {
      const data = await api(`nodes${this.#last ? `?since=${this.#last}` : ''}`);
      if (!this.#running) return;
      this.#merge(data.series, data.now);
      this.#table(data);
      this.#draw(data.now);
      byId('overview-updated').textContent = `updated ${new Date(data.now).toLocaleTimeString()}`;
    } catch (err) {
      if (err.status !== 401) byId('overview-updated').textContent = `not updated: ${err.message}`;
    }
    if (this.#running) this.#timer = setTimeout(() => this.#poll(), POLL_MS);
  }

  /** merge appends the answer's samples to the page's, and drops those older than the window. */
  #merge(series, now) {
    const before = this.#t.length;
    const added = series.t.length;
    if (added === 0) return;
    this.#t.push(...series.t);
    for (const [name, s] of this.#nodes) {
      const got = series.nodes[name];
      for (const c of CHARTS) s[c.key].push(...(got ? got[c.key] : new Array(added).fill(null)));
    }
    for (const [name, got] of Object.entries(series.nodes)) {
      if (this.#nodes.has(name)) continue;
      const s = {};
      for (const c of CHARTS) s[c.key] = [...new Array(before).fill(null), ...got[c.key]];
      this.#nodes.set(name, s);
    }
    for (const c of CHARTS) this.#total[c.key] = [...(this.#total[c.key] ?? new Array(before).fill(null)), ...series.total[c.key]];
    this.#last = series.t[added - 1];
    let drop = 0;
    while (drop < this.#t.length && this.#t[drop] < now - WINDOW_MS) drop++;
    if (drop > 0) {
      this.#t.splice(0, drop);
      for (const s of [...this.#nodes.values(), this.#total]) for (const c of CHARTS) s[c.key].splice(0, drop);
    }
    for (const [name, s] of this.#nodes) {
      if (s.connections.every((v) => v === null)) this.#nodes.delete(name); // gone for the whole window
    }
  }

  #colors() {
    const names = [...this.#nodes.keys()].sort();
    return new Map(names.map((name, i) => [name, NODE_COLORS[i % NODE_COLORS.length]]));
  }

  #draw(now = Date.now()) {
    const colors = this.#colors();
    const text = getComputedStyle(document.documentElement).getPropertyValue('--text').trim() || '#000';
    const several = colors.size > 1;
    for (const c of this.#charts.values()) {
      const lines = [];
      for (const [name, color] of colors) lines.push({ values: this.#nodes.get(name)[c.key], color, width: several ? 1.25 : 2 });
      if (several) lines.push({ values: this.#total[c.key] ?? [], color: text, width: 2.25 });
      drawChart(c.canvas, this.#t, lines, c.fmt, now, WINDOW_MS, c.binary);
      const values = this.#total[c.key] ?? [];
      const latest = values.length ? values[values.length - 1] : null;
      c.now.textContent = c.fmt(latest);
      c.canvas.setAttribute('aria-label', `${c.title} over the last ten minutes; now ${c.fmt(latest)}${several ? ' in total' : ''}`);
    }
    const legend = [...colors].map(([name, color]) => h('span', { class: 'legend-item' }, swatch(color), name));
    if (several) legend.push(h('span', { class: 'legend-item' }, h('span', { class: 'swatch swatch-total' }), 'total'));
    fill(byId('legend'), ...legend);
  }

  #table(data) {
    const colors = this.#colors();
    const rows = data.nodes.map((n) => {
      const name = h('td', {}, swatch(colors.get(n.name) ?? 'transparent'), n.name);
      if (n.self) name.append(' ', h('span', { class: 'badge', text: 'this node' }));
      if (n.missing) {
        return h('tr', { class: 'missing' }, name, h('td', { colspan: 2, text: '—' }), h('td', {}, badge('missing', 'bad', 'did not answer in time')), h('td', { colspan: 12, class: 'muted', text: 'no answer' }));
      }
      return h('tr', {}, name, h('td', { text: n.version }), h('td', { text: duration(n.uptime_s) }), h('td', {}, status(n)), ...cells(n));
    });
    fill(byId('nodes').tBodies[0], ...rows);
    const t = data.total;
    const label = `Total: ${t.nodes} ${t.nodes === 1 ? 'node' : 'nodes'}${t.missing ? `, ${t.missing} missing` : ''}`;
    fill(byId('nodes').tFoot, h('tr', {}, h('th', { scope: 'row', colspan: 4, text: label }), ...cells(t)));
  }

  async #drain() {
    if (this.#readonly) return;
    const ok = await confirmAction(
      'Drain this node?',
      'It stops taking connections (/healthz answers 503), and closes every connection with 1001 so that pages reconnect to another node. It keeps running until you stop it; only a restart brings it back.',
      'Drain this node',
    );
    if (!ok) return;
    try {
      await api('drain', { method: 'POST' });
      toast('Draining: this node takes no more connections.', 'info');
    } catch (err) {
      toast(`Not drained: ${err.message}`);
    }
  }
}

/** swatch is a node's colour. Set through the CSSOM: the page's CSP refuses style attributes. */
function swatch(color) {
  const el = h('span', { class: 'swatch' });
  el.style.background = color;
  return el;
}

function badge(text, kind, title) {
  return h('span', { class: `badge badge-${kind}`, text, title });
}

function status(n) {
  if (n.draining) return badge('draining', 'warn', 'refuses connections; /healthz answers 503');
  if (n.degraded) return badge('degraded', 'bad', 'NATS out of reach: serving its own members alone');
  return badge('ok', 'ok');
}

/** cells are the numbers of a node or of the total. */
function cells(n) {
  const r = n.rates ?? {};
  const errors = Object.entries(n.errors_total ?? {}).filter(([, v]) => v > 0);
  return [
    h('td', { class: 'num', text: num(n.connections) }),
    h('td', { class: 'num', text: num(n.rooms) }),
    h('td', { class: 'num', text: num(n.calls), title: `${n.call_peers} peers` }),
    h('td', { class: 'num', text: num(r.deliveries) }),
    h('td', { class: 'num', text: num(r.frames_in) }),
    h('td', { class: 'num', text: num(r.frames_out) }),
    h('td', { class: 'num', text: r.bytes_out === null || r.bytes_out === undefined ? '—' : `${bytes(r.bytes_out)}/s` }),
    h('td', { class: 'num', text: num(n.slow_closes_total) }),
    h('td', { class: 'errors', text: errors.length ? errors.map(([code, v]) => `${code} ${num(v)}`).join(' · ') : 'none' }),
    h('td', { class: 'num', text: pct(r.cpu) }),
    h('td', { class: 'num', text: bytes(n.rss_bytes) }),
    h('td', { class: 'num', text: num(n.goroutines) }),
  ];
}
