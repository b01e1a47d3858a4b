// The console page's entry point: the session (log in, log out, a 401
// sends back to the login), and the views, chosen by the URL's hash:
// #/overview, #/rooms, #/rooms/NAME, #/connections. Only the view on show
// asks the server for anything.

import { api, onUnauthorized, setSession } from './api.js';
import { ConnectionsView } from './connections.js';
import { byId, toast } from './dom.js';
import { Overview } from './overview.js';
import { RoomView, RoomsView } from './rooms.js';

const views = {
  overview: new Overview(),
  rooms: new RoomsView(),
  room: new RoomView(),
  connections: new ConnectionsView(),
};
let loggedIn = false;

function showOnly(id) {
  for (const section of document.querySelectorAll('main > section')) section.hidden = section.id !== `view-${id}`;
}

function stopAll() {
  for (const v of Object.values(views)) v.stop();
}

/** route shows the view the hash names. */
function route() {
  if (!loggedIn) return;
  stopAll();
  const [, view = 'overview', arg] = location.hash.match(/^#\/([a-z]+)(?:\/(.+))?$/) ?? [];
  const name = views[view] ? view : 'overview';
  if (name === 'rooms' && arg !== undefined) {
    showOnly('room');
    views.room.show(decodeURIComponent(arg));
  } else {
    showOnly(name);
    views[name].start();
  }
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.view === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

function enter(session) {
  setSession(session);
  loggedIn = true;
  const ro = !!session.readonly;
  for (const v of [views.overview, views.room, views.connections]) v.readonly = ro;
  byId('readonly').hidden = !ro;
  byId('who').textContent = session.who ?? '';
  byId('nav').hidden = false;
  byId('logout').hidden = false;
  route();
}

function leave(why) {
  loggedIn = false;
  setSession(null);
  stopAll();
  byId('nav').hidden = true;
  byId('logout').hidden = true;
  byId('readonly').hidden = true;
  byId('who').textContent = '';
  byId('login-error').textContent = why ?? '';
  showOnly('login');
  byId('password').focus();
}

byId('login-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const field = byId('password');
  try {
    const session = await api('login', { method: 'POST', body: { password: field.value } });
    field.value = '';
    byId('login-error').textContent = '';
    enter(session);
  } catch (err) {
    byId('login-error').textContent = err.message;
    field.select();
  }
});

byId('logout').addEventListener('click', async () => {
  try {
    await api('logout', { method: 'POST' });
  } catch (err) {
    if (err.status !== 401) toast(`Not logged out: ${err.message}`);
    if (err.status !== 401) return;
  }
  leave('Logged out.');
});

onUnauthorized(() => {
  if (loggedIn) leave('The session ended: log in again.');
});
window.addEventListener('hashchange', route);

api('session')
  .then(enter)
  .catch((err) => leave(err.status === 401 ? '' : `The console is out of reach: ${err.message}`));
