// The sidebar's Open rooms list (PROTOCOL.md `rooms`): the server pushes it
// to connections in no room; while the page is in rooms it is polled, and
// asked for again shortly after each join or leave. Clicking a room joins it.

import { byId, h, hash, plural } from './dom.js';

/**
 * ROOMS_REFRESH_MS is how often the open-rooms list is asked for while the
 * page is in a room: the server pushes it only to connections in no room.
 */
const ROOMS_REFRESH_MS = 5000;
/**
 * ROOMS_SETTLE_MS is how long after a join or a leave the list is asked
 * for: the server rebuilds it once a second, so a list asked for at once
 * may not show the change yet.
 */
const ROOMS_SETTLE_MS = 1200;

export class RoomList {
  #conn;
  #onPick;
  #openRooms = [];
  #refreshTimer = 0;
  #settleTimer = 0;
  #els = { list: byId('room-list'), empty: byId('room-list-empty') };

  /** onPick(name) is called when the user picks a room from the list. */
  constructor(conn, onPick) {
    this.#conn = conn;
    this.#onPick = onPick;
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden) this.request();
    });
  }

  /** onRooms keeps a `rooms` frame's list; render shows it. */
  onRooms(frame) {
    this.#openRooms = Array.isArray(frame.rooms) ? frame.rooms : [];
  }

  request() {
    this.#conn.send({ type: 'rooms' });
  }

  /** requestSoon asks for the list once the server's next rebuild has seen a change. */
  requestSoon() {
    clearTimeout(this.#settleTimer);
    this.#settleTimer = setTimeout(() => this.request(), ROOMS_SETTLE_MS);
  }

  /** poll asks for the list every few seconds while on is true (the page is in a room). */
  poll(on) {
    if (on && !this.#refreshTimer) {
      this.#refreshTimer = setInterval(() => {
        if (!document.hidden) this.request();
      }, ROOMS_REFRESH_MS);
    } else if (!on && this.#refreshTimer) {
      clearInterval(this.#refreshTimer);
      this.#refreshTimer = 0;
    }
  }

  /** render shows the list; joined maps the page's rooms to their Room, active is the one on show. */
  render(joined, active) {
    const items = this.#openRooms.map(({ room: name, count }) => {
      const room = joined.get(name);
      // In a joined room the live count is fresher than the last list.
      const n = room && !room.waiting ? room.count : count;
      return h(
        'li',
        {},
        h(
          'button',
          {
            type: 'button',
            class: `room-item${room ? ' joined' : ''}`,
            // Shown as "# lobby   3", read out as "lobby, 3 members".
            'aria-label': `${name}, ${plural(n, 'member')}`,
            'aria-current': name === active ? 'true' : undefined,
            onclick: () => this.#onPick(name),
          },
          h('span', { class: 'room-name' }, hash(), name),
          h('span', { class: 'room-count', text: String(n) }),
        ),
      );
    });
    this.#els.list.replaceChildren(...items);
    this.#els.empty.hidden = items.length > 0;
  }
}
