// Rooms: the list (search, most members first) and a room's page with its
// members, call, lobby, settings and newest messages, and the actions on
// it. Both are asked for again every second while shown (poller.js), so
// counts move as people come and go.

import { api, enc } from './api.js';
import { byId, confirmAction, h, toast } from './dom.js';
import { fill, num } from './format.js';
import { Poller } from './poller.js';

const SEARCH_DEBOUNCE_MS = 250;

export class RoomsView {
  #poller;
  #search = byId('room-search');
  #debounce = 0;

  constructor() {
    this.#poller = new Poller(
      () => api(`rooms?q=${encodeURIComponent(this.#search.value.trim())}`),
      (data) => this.#render(data),
      (err) => (byId('rooms-summary').textContent = `Rooms not loaded: ${err.message}`),
    );
    this.#search.addEventListener('input', () => {
      clearTimeout(this.#debounce);
      this.#debounce = setTimeout(() => this.#poller.now(), SEARCH_DEBOUNCE_MS);
    });
  }

  start() {
    this.#poller.start();
  }

  stop() {
    this.#poller.stop();
  }

  #render(data) {
    const q = this.#search.value.trim();
    byId('rooms-summary').textContent =
      data.total === 0 ? (q ? `No room matches “${q}”.` : 'No room has members.') : `${data.total} ${data.total === 1 ? 'room' : 'rooms'}${data.total > data.rooms.length ? `, the ${data.rooms.length} largest shown` : ''}`;
    const rows = data.rooms.map((r) =>
      h(
        'tr',
        {},
        h('td', {}, h('a', { href: `#/rooms/${enc(r.room)}`, text: r.room, 'aria-label': `Open room ${r.room}` })),
        h('td', { class: 'num', text: num(r.members), 'data-room': r.room }),
        h('td', { text: Object.entries(r.nodes ?? {}).map(([n, c]) => `${n}: ${c}`).join(', ') }),
        h('td', { class: 'num', text: num(r.call_peers) }),
      ),
    );
    fill(byId('rooms').tBodies[0], ...rows);
  }
}

export class RoomView {
  #poller;
  #name = '';
  #readonly = false;

  constructor() {
    this.#poller = new Poller(
      () => api(`rooms/${enc(this.#name)}`),
      (data) => this.#render(data),
      (err) => {
        byId('room-summary').textContent = err.status === 404 ? 'Nobody is in this room now.' : `Not loaded: ${err.message}`;
        if (err.status === 404) this.#clear();
      },
    );
    byId('lock-room').addEventListener('click', () => this.#lock());
    byId('end-room').addEventListener('click', () => this.#end());
  }

  set readonly(on) {
    this.#readonly = on;
    byId('lock-room').disabled = on;
    byId('end-room').disabled = on;
  }

  show(name) {
    if (name !== this.#name) this.#clear();
    this.#name = name;
    byId('room-title').textContent = `Room ${name}`;
    byId('lock-room').setAttribute('aria-label', `Lock room ${name}`);
    byId('end-room').setAttribute('aria-label', `End room ${name}`);
    this.#poller.start();
  }

  stop() {
    this.#poller.stop();
  }

  #clear() {
    for (const id of ['room-messages', 'room-call', 'room-lobby', 'room-settings']) fill(byId(id));
    fill(byId('room-members').tBodies[0]);
    byId('room-media').textContent = '';
  }

  #render(d) {
    const total = d.members_total;
    byId('room-summary').textContent = `${total} ${total === 1 ? 'member' : 'members'}${d.locked ? ' · locked' : ''} · seq ${d.seq}`;
    const rows = d.members.map((m) =>
      h(
        'tr',
        {},
        h('td', { text: m.nick }),
        h('td', { class: 'mono', text: m.id }),
        h('td', { text: m.role || 'member' }),
        h('td', { text: m.node ?? '' }),
        h('td', {}, h('button', { type: 'button', class: 'small', text: 'Remove', 'aria-label': `Remove ${m.nick} from ${d.room}`, disabled: this.#readonly, onclick: () => this.#remove(m) })),
      ),
    );
    if (d.members.length < total) rows.push(h('tr', {}, h('td', { colspan: 5, class: 'muted', text: `and ${total - d.members.length} more` })));
    fill(byId('room-members').tBodies[0], ...rows);
    fill(
      byId('room-messages'),
      ...(d.messages.length
        ? d.messages.map((m) => h('li', {}, h('span', { class: 'msg-meta', text: `#${m.seq} ${new Date(m.ts).toLocaleTimeString()} ` }), h('strong', { text: m.nick }), ' ', h('span', { text: m.text })))
        : [h('li', { class: 'muted', text: 'No messages kept.' })]),
    );
    byId('room-media').textContent = d.call.length ? d.media : 'No call.';
    fill(byId('room-call'), ...d.call.map((p) => h('li', { text: `${p.nick} (${p.id}${p.node ? ` on ${p.node}` : ''})` })));
    fill(byId('room-lobby'), ...(d.lobby.length ? d.lobby.map((p) => h('li', { text: `${p.nick} (${p.id})` })) : [h('li', { class: 'muted', text: 'Nobody waiting: rooms have no lobby yet.' })]));
    const settings = Object.entries(d.settings ?? {});
    fill(byId('room-settings'), ...(settings.length ? settings.flatMap(([k, v]) => [h('dt', { text: k }), h('dd', { text: JSON.stringify(v) })]) : [h('dt', { class: 'muted', text: 'No settings: rooms have none yet.' })]));
  }

  async #remove(m) {
    const room = this.#name;
    if (!(await confirmAction(`Remove ${m.nick}?`, `${m.nick} (${m.id}) leaves room ${room}, as if they had left. They may join again.`, 'Remove'))) return;
    try {
      await api(`rooms/${enc(room)}/members/${enc(m.id)}/remove`, { method: 'POST' });
      toast(`${m.nick} removed from ${room}.`, 'info');
    } catch (err) {
      toast(`${m.nick} not removed: ${err.message}`);
    }
    this.#poller.now();
  }

  async #lock() {
    const room = this.#name;
    if (!(await confirmAction(`Lock room ${room}?`, 'Nobody else may join it until it is unlocked.', 'Lock room'))) return;
    try {
      await api(`rooms/${enc(room)}/lock`, { method: 'POST', body: { locked: true } });
      toast(`Room ${room} locked.`, 'info');
    } catch (err) {
      toast(`Room ${room} not locked: ${err.message}`);
    }
    this.#poller.now();
  }

  async #end() {
    const room = this.#name;
    if (!(await confirmAction(`End room ${room}?`, 'Every member, on every node, leaves the room now.', 'End room'))) return;
    try {
      const ans = await api(`rooms/${enc(room)}/end`, { method: 'POST' });
      toast(`Room ${room} ended: ${ans.left} ${ans.left === 1 ? 'member' : 'members'} left.`, 'info');
    } catch (err) {
      toast(`Room ${room} not ended: ${err.message}`);
    }
    this.#poller.now();
  }
}

