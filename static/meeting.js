// A room's roles and host controls (PROTOCOL.md, "Rooms that belong to
// someone"): the members list with role badges and, for hosts and cohosts,
// a menu per member (make cohost, make host, mute, remove); the lobby list
// with Admit and Deny; the room settings panel; the invite link; End for
// everyone. ChatView (chat.js) owns the rooms and calls render whenever the
// room on show changes; this file keeps each Room's meeting state up to
// date from the frames and decides which controls it shows.
//
// Controls the user's role may not use are not shown at all. That is for
// the user, not for safety: the server checks every request's role.

import { byId, confirmAction, h, nickClass, toast } from './dom.js';
import { hostKeys } from './access.js';
import { inviteURL } from './invite.js';

/** MEMBER_LIMIT bounds each room's member list; the rest shows as "and N more". */
export const MEMBER_LIMIT = 500;

/** DEFAULT_SETTINGS are a room's settings until the server says otherwise: a public room. */
export const DEFAULT_SETTINGS = Object.freeze({ passcode: false, lobby: false, locked: false, listed: true });

/** isMod reports whether role may use the host controls. */
export const isMod = (role) => role === 'host' || role === 'cohost';

/** Members are listed host first, then cohosts, then by nickname. */
const RANK = { host: 0, cohost: 1, member: 2 };

export class Meeting {
  #conn;
  /** room is the Room on show (null for none); myId this connection's id. */
  #room = null;
  #myId = null;
  /** menuFor is the id of the member whose action menu is open, or null. */
  #menuFor = null;
  #settingsOpen = false;
  /** inviteFor is the room the "Include passcode" box was last ticked for: it does not carry over. */
  #inviteFor = null;

  #els = {
    flags: byId('room-flags'),
    invitePasscodeLabel: byId('invite-passcode-label'),
    invitePasscode: byId('invite-passcode'),
    inviteHint: byId('invite-hint'),
    copyInvite: byId('copy-invite'),
    inviteLink: byId('invite-link'),
    settingsToggle: byId('settings-toggle'),
    endRoom: byId('end-room'),
    settings: byId('room-settings'),
    passcodeForm: byId('passcode-form'),
    newPasscode: byId('new-passcode'),
    removePasscode: byId('remove-passcode'),
    passcodeState: byId('passcode-state'),
    lobby: byId('set-lobby'),
    locked: byId('set-locked'),
    listed: byId('set-listed'),
    listedHint: byId('listed-hint'),
    lobbySection: byId('lobby'),
    lobbyList: byId('lobby-list'),
    members: byId('members'),
  };

  constructor(conn) {
    this.#conn = conn;
    const els = this.#els;
    els.copyInvite.addEventListener('click', () => this.#copyInvite());
    els.settingsToggle.addEventListener('click', () => {
      this.#settingsOpen = !this.#settingsOpen;
      this.#renderControls();
    });
    els.endRoom.addEventListener('click', () => this.#end());
    els.passcodeForm.addEventListener('submit', (e) => {
      e.preventDefault();
      this.#setPasscode(els.newPasscode.value);
    });
    els.newPasscode.addEventListener('input', () => els.newPasscode.setCustomValidity(''));
    els.removePasscode.addEventListener('click', () => this.#setPasscode(''));
    for (const key of ['lobby', 'locked', 'listed']) {
      els[key].addEventListener('change', () => this.#settings({ [key]: els[key].checked }));
    }
    // A click anywhere but in the open menu closes it, as menus do.
    document.addEventListener('click', (e) => {
      if (this.#menuFor !== null && !e.target.closest?.('.member-actions')) this.#closeMenu(false);
    });
  }

  // ---- state from the server's frames ----

  /** onJoined takes the role, the settings and, for the creator, the host key from `joined`. */
  onJoined(room, frame) {
    room.role = frame.role ?? 'member';
    room.settings = { ...DEFAULT_SETTINGS, ...frame.settings };
    room.roles = new Map();
    for (const m of frame.members ?? []) if (isMod(m.role)) room.roles.set(m.id, m.role);
    if (typeof frame.host_key === 'string' && frame.host_key !== '') hostKeys.set(room.name, frame.host_key);
    // A join as host brings a knock for everyone waiting: the old list would double them.
    room.lobby.clear();
    if (!room.settings.passcode) room.passcode = '';
  }

  /** onRoom takes a `room` frame: the settings and all hosts and cohosts (everyone else is a member). */
  onRoom(room, frame, myId) {
    room.settings = { ...DEFAULT_SETTINGS, ...frame.settings };
    room.roles = new Map();
    for (const { id, role } of frame.roles ?? []) if (isMod(role)) room.roles.set(id, role);
    room.role = room.roles.get(myId) ?? 'member';
    // Turning the lobby off lets everyone in; a member sees no lobby.
    if (!isMod(room.role) || !room.settings.lobby) room.lobby.clear();
    if (!room.settings.passcode) room.passcode = '';
  }

  /** onKnock lists someone waiting in the lobby (the server caps a lobby at a hundred). */
  onKnock(room, frame) {
    if (isMod(room.role)) room.lobby.set(frame.id, String(frame.nick));
  }

  /** onPresence: one admitted is no longer waiting, and one gone holds no role. */
  onPresence(room, frame) {
    room.lobby.delete(frame.id);
    if (frame.event === 'leave') room.roles.delete(frame.id);
  }

  // ---- rendering ----

  /** render shows room's members and the controls room.role may use; room is null for none. */
  render(room, myId) {
    if (room !== this.#room) {
      this.#menuFor = null;
      this.#els.inviteLink.hidden = true;
    }
    this.#room = room;
    this.#myId = myId;
    this.#renderControls();
    this.#renderLobby();
    this.#renderMembers();
  }

  #renderControls() {
    const els = this.#els;
    const room = this.#room?.waiting ? null : this.#room;
    const role = room?.role ?? 'member';
    const mod = isMod(role);
    const s = room?.settings ?? DEFAULT_SETTINGS;
    if (room?.name !== this.#inviteFor) {
      this.#inviteFor = room?.name ?? null;
      els.invitePasscode.checked = false;
    }
    // Everyone sees how the room is kept, so nobody is surprised by who can come in.
    const flags = room ? [s.passcode && 'Passcode', s.lobby && 'Lobby', s.locked && 'Locked'].filter(Boolean) : [];
    els.flags.replaceChildren(...flags.map((text) => h('span', { class: 'room-flag', text })));
    // Only a passcode this page knows can go in a link: the server never sends it back.
    const known = mod && s.passcode && room.passcode !== '';
    els.invitePasscodeLabel.hidden = !known;
    els.inviteHint.textContent = !s.passcode
      ? 'Copy invite link names the room; anyone with the link can join.'
      : known
        ? 'With it ticked, Copy invite link puts the passcode in the link: whoever has the link gets in without typing it.'
        : 'The link names the room only. To put the passcode in it, set the passcode again on this page.';
    els.copyInvite.hidden = !room;
    els.endRoom.hidden = role !== 'host';
    els.settingsToggle.hidden = !mod;
    els.settingsToggle.setAttribute('aria-expanded', String(mod && this.#settingsOpen));
    els.settings.hidden = !(mod && this.#settingsOpen);
    els.passcodeState.textContent = s.passcode
      ? 'A passcode is set: people need it to join.'
      : 'No passcode: anyone who knows the room name can join.';
    els.removePasscode.hidden = !s.passcode;
    els.lobby.checked = s.lobby;
    els.locked.checked = s.locked;
    els.listed.checked = s.listed && !s.passcode;
    els.listed.disabled = s.passcode;
    els.listedHint.hidden = !s.passcode;
  }

  #renderLobby() {
    const room = this.#room;
    const waiting = room && !room.waiting && isMod(room.role) ? [...room.lobby] : [];
    this.#els.lobbySection.hidden = waiting.length === 0;
    this.#els.lobbyList.replaceChildren(
      ...waiting.map(([id, nick]) =>
        h(
          'li',
          { class: 'member knock' },
          h('span', { class: `avatar ${nickClass(nick)}`, 'aria-hidden': 'true', text: initial(nick) }),
          h('span', { class: 'member-nick', text: nick }),
          h('button', { type: 'button', class: 'small primary', 'aria-label': `Admit ${nick}`, text: 'Admit', onclick: () => this.#answer(id, true) }),
          h('button', { type: 'button', class: 'small', 'aria-label': `Deny ${nick}`, text: 'Deny', onclick: () => this.#answer(id, false) }),
        ),
      ),
    );
  }

  #renderMembers() {
    const list = this.#els.members;
    const room = this.#room;
    if (!room || room.waiting) {
      list.replaceChildren();
      return;
    }
    // The list is rebuilt on every change; the focus, if it was in it, goes back to the same control.
    const focused = list.contains(document.activeElement) ? document.activeElement.dataset.focus : undefined;
    const roleOf = (id) => room.roles.get(id) ?? 'member';
    const sorted = [...room.members].sort(([a, an], [b, bn]) => RANK[roleOf(a)] - RANK[roleOf(b)] || an.localeCompare(bn));
    const items = sorted.map(([id, nick], i) => this.#member(room, id, nick, roleOf(id), i));
    const more = room.count - room.members.size;
    if (more > 0) items.push(h('li', { class: 'member more', text: `and ${more} more` }));
    list.replaceChildren(...items);
    if (focused) list.querySelector(`[data-focus="${CSS.escape(focused)}"]`)?.focus();
  }

  #member(room, id, nick, role, index) {
    const item = h(
      'li',
      { class: 'member' },
      h('span', { class: `avatar ${nickClass(nick)}`, 'aria-hidden': 'true', text: initial(nick) }),
      h('span', { class: 'member-nick', text: nick }),
      isMod(role) ? h('span', { class: `role-badge role-${role}`, text: role }) : '',
      id === this.#myId ? h('span', { class: 'you', text: '(you)' }) : '',
    );
    const actions = id === this.#myId ? [] : this.#actions(room, id, role);
    if (actions.length > 0) item.append(this.#menu(id, nick, actions, `member-menu-${index}`));
    return item;
  }

  /** actions lists what room.role may do to member id, who holds role, as [label, request]. */
  #actions(room, id, role) {
    const mine = room.role;
    if (!isMod(mine)) return [];
    const out = [];
    if (role === 'member') out.push(['Make cohost', { type: 'role', id, role: 'cohost' }]);
    if (mine === 'host' && role === 'cohost') out.push(['Make member', { type: 'role', id, role: 'member' }]);
    if (mine === 'host') out.push(['Make host', { type: 'role', id, role: 'host' }]);
    out.push(['Mute', { type: 'mute', id }]);
    if (mine === 'host' || role !== 'host') out.push(['Remove', { type: 'remove', id }]);
    return out;
  }

  /**
   * menu is the member's action button and its menu, following the ARIA
   * menu button pattern: the button opens it, the arrow keys, Home and End
   * move through it, Escape closes it and gives the focus back.
   */
  #menu(id, nick, actions, menuId) {
    const open = this.#menuFor === id;
    const button = h('button', {
      type: 'button',
      class: 'member-menu-button',
      'aria-label': `Actions for ${nick}`,
      'aria-haspopup': 'menu',
      'aria-expanded': String(open),
      'aria-controls': menuId,
      'data-focus': `menu:${id}`,
      text: '⋯',
      onclick: () => (open ? this.#closeMenu(true) : this.#openMenu(id, 0)),
      onkeydown: (e) => {
        if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
          e.preventDefault();
          this.#openMenu(id, e.key === 'ArrowDown' ? 0 : -1);
        }
      },
    });
    const items = actions.map(([label, request]) =>
      h('button', {
        type: 'button',
        role: 'menuitem',
        tabindex: -1,
        class: request.type === 'remove' ? 'menu-danger' : undefined,
        'data-focus': `item:${id}:${label}`,
        text: label,
        onclick: () => {
          this.#closeMenu(true);
          this.#send({ ...request, room: this.#room.name });
        },
      }),
    );
    const menu = h('div', { role: 'menu', id: menuId, class: 'member-menu', 'aria-label': `Actions for ${nick}`, hidden: !open }, ...items);
    menu.addEventListener('keydown', (e) => {
      const at = items.indexOf(document.activeElement);
      const to = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: items.length - 1 }[e.key];
      if (to !== undefined) {
        e.preventDefault();
        items[(to + items.length) % items.length].focus();
      } else if (e.key === 'Escape') {
        e.preventDefault();
        this.#closeMenu(true);
      } else if (e.key === 'Tab') {
        this.#closeMenu(false);
      }
    });
    return h('div', { class: 'member-actions' }, button, menu);
  }

  /** openMenu opens id's menu and focuses its item at index (-1: the last). */
  #openMenu(id, index) {
    this.#menuFor = id;
    this.#renderMembers();
    const items = this.#els.members.querySelectorAll('[role="menu"]:not([hidden]) [role="menuitem"]');
    items[(index + items.length) % items.length]?.focus();
  }

  /** closeMenu closes the open menu; with refocus its button gets the focus back. */
  #closeMenu(refocus) {
    const id = this.#menuFor;
    if (id === null) return;
    this.#menuFor = null;
    this.#renderMembers();
    if (refocus) this.#els.members.querySelector(`[data-focus="${CSS.escape(`menu:${id}`)}"]`)?.focus();
  }

  // ---- requests ----

  #send(frame) {
    if (this.#conn.send(frame)) return true;
    toast('Not connected: try again once the page is online.');
    return false;
  }

  #settings(change) {
    if (!this.#room || !this.#send({ type: 'settings', room: this.#room.name, ...change })) this.#renderControls();
  }

  #setPasscode(passcode) {
    const input = this.#els.newPasscode;
    if (passcode !== '' && passcode.trim() === '') {
      input.setCustomValidity('A passcode needs more than spaces.');
      input.reportValidity();
      return;
    }
    if (!this.#room || !this.#send({ type: 'settings', room: this.#room.name, passcode })) return;
    // The page remembers the passcode it set, for invite links; the server never tells it.
    this.#room.passcode = passcode;
    input.value = '';
    toast(passcode ? 'Passcode set.' : 'Passcode removed.', 'info');
  }

  #answer(id, admit) {
    const room = this.#room;
    if (!this.#send({ type: admit ? 'admit' : 'deny', room: room.name, id })) return;
    room.lobby.delete(id);
    this.#renderLobby();
  }

  async #end() {
    const room = this.#room;
    if (!room) return;
    const yes = await confirmAction(
      `End the meeting in ${room.name}?`,
      'Everyone, you too, leaves the room and its call at once. The room keeps its messages and settings.',
      'End for everyone',
    );
    if (yes) this.#send({ type: 'end', room: room.name });
  }

  /**
   * copyInvite copies the room's link: the passcode in it only if the box
   * is ticked. Where the clipboard is refused, the link shows in a field
   * to copy by hand.
   */
  async #copyInvite() {
    const room = this.#room;
    if (!room) return;
    const withPasscode = this.#els.invitePasscode.checked && !this.#els.invitePasscodeLabel.hidden;
    const url = inviteURL(location, room.name, withPasscode ? room.passcode : '');
    const field = this.#els.inviteLink;
    try {
      await navigator.clipboard.writeText(url);
      field.hidden = true;
      toast(withPasscode ? 'Invite link copied, with the passcode.' : 'Invite link copied.', 'info');
    } catch {
      field.value = url;
      field.hidden = false;
      field.select();
      toast('Copy the invite link from the field beside the button.', 'info');
    }
  }
}

function initial(nick) {
  return ([...nick.trim()][0] ?? '?').toUpperCase();
}
