// Connections on every node: search by id, nick or address, and
// disconnect one (a close frame 1008; the page reconnects, it is no ban).

import { api, enc } from './api.js';
import { byId, confirmAction, h, toast } from './dom.js';
import { bytes, duration, fill } from './format.js';
import { Poller } from './poller.js';

const SEARCH_DEBOUNCE_MS = 250;

export class ConnectionsView {
  #poller;
  #search = byId('conn-search');
  #debounce = 0;
  #readonly = false;

  constructor() {
    this.#poller = new Poller(
      () => api(`connections?q=${encodeURIComponent(this.#search.value.trim())}`),
      (data) => this.#render(data),
      (err) => (byId('connections-summary').textContent = `Connections not loaded: ${err.message}`),
    );
    this.#search.addEventListener('input', () => {
      clearTimeout(this.#debounce);
      this.#debounce = setTimeout(() => this.#poller.now(), SEARCH_DEBOUNCE_MS);
    });
  }

  set readonly(on) {
    this.#readonly = on;
  }

  start() {
    this.#poller.start();
  }

  stop() {
    this.#poller.stop();
  }

  #render(data) {
    const q = this.#search.value.trim();
    let summary = data.total === 0 ? (q ? `No connection matches “${q}”.` : 'No connections.') : `${data.total} ${data.total === 1 ? 'connection' : 'connections'}`;
    if (data.warning) summary += ` (${data.warning})`;
    byId('connections-summary').textContent = summary;
    const rows = data.connections.map((c) =>
      h(
        'tr',
        {},
        h('td', { text: c.nick }),
        h('td', { class: 'mono', text: c.id }),
        h('td', { text: c.node ?? '' }),
        h('td', { class: 'mono', text: c.addr }),
        h('td', { text: c.rooms.length ? c.rooms.join(', ') : '—' }),
        h('td', { text: c.state }),
        h('td', { class: 'num', text: bytes(c.unsent_bytes) }),
        h('td', { class: 'num', text: bytes(c.bytes_out) }),
        h('td', { class: 'num', text: c.frames_in === undefined ? '—' : String(c.frames_in) }),
        h('td', { class: 'num', text: c.frames_out === undefined ? '—' : String(c.frames_out) }),
        h('td', { class: 'num', text: c.age_s === undefined ? '—' : duration(c.age_s) }),
        h('td', { class: 'num', text: duration(c.idle_s) }),
        h('td', {}, h('button', { type: 'button', class: 'small', text: 'Disconnect', 'aria-label': `Disconnect ${c.nick} (${c.id})`, disabled: this.#readonly, onclick: () => this.#disconnect(c) })),
      ),
    );
    fill(byId('connections').tBodies[0], ...rows);
  }

  async #disconnect(c) {
    if (!(await confirmAction(`Disconnect ${c.nick}?`, `Connection ${c.id} from ${c.addr} is closed (1008). A page reconnects by itself: this is no ban.`, 'Disconnect'))) return;
    try {
      await api(`connections/${enc(c.id)}/disconnect`, { method: 'POST' });
      toast(`${c.nick} (${c.id}) disconnected.`, 'info');
    } catch (err) {
      toast(`${c.nick} not disconnected: ${err.message}`);
    }
    this.#poller.now();
  }
}
