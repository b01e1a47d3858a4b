// The page's entry point: one connection, the chat view and the call, wired
// together. Each server frame goes to the part of the page it concerns.

import { Call } from './call.js';
import { ChatView } from './chat.js';
import { Connection, wsURL } from './connection.js';
import { byId, toast } from './dom.js';

const conn = new Connection(() => wsURL(location, chat.nick));
const chat = new ChatView(conn);
const call = new Call(conn);

chat.addEventListener('active', (e) => call.onActive(e.detail));
chat.addEventListener('leave', (e) => call.onRoomLeft(e.detail));

const statusEl = byId('status');
const statusText = byId('status-text');
conn.addEventListener('status', ({ detail: status }) => {
  statusEl.dataset.state = status;
  statusText.textContent = status;
  chat.onStatus(status);
  call.onStatus(status);
});

conn.addEventListener('frame', ({ detail: frame }) => {
  switch (frame.type) {
    case 'hello':
      chat.onHello(frame);
      call.onHello(frame);
      break;
    case 'nick':
      chat.onNick(frame);
      break;
    case 'joined':
      chat.onJoined(frame);
      call.onJoined(frame);
      break;
    case 'msg':
      chat.onMsg(frame);
      break;
    case 'history':
      chat.onHistory(frame);
      break;
    case 'presence':
      chat.onPresence(frame);
      call.onPresence(frame);
      break;
    case 'count':
      chat.onCount(frame);
      break;
    case 'rooms':
      chat.onRooms(frame);
      break;
    case 'waiting':
      chat.onWaiting(frame);
      break;
    case 'room':
      chat.onRoom(frame);
      break;
    case 'knock':
      chat.onKnock(frame);
      break;
    case 'removed':
    case 'ended':
      chat.onOut(frame); // Its `leave` event ends the page's part in the call.
      break;
    case 'mute':
      call.onMute(frame);
      chat.onMute(frame);
      break;
    case 'call':
      call.onCall(frame);
      break;
    case 'call_peer':
      call.onCallPeer(frame);
      break;
    case 'signal':
      call.onSignal(frame);
      break;
    case 'speakers':
      call.onSpeakers(frame);
      break;
    case 'error':
      if (frame.ref === 'call' || frame.ref === 'signal' || frame.ref === 'media') call.onError(frame);
      else chat.onError(frame);
      break;
    case 'left':
      // An answer to the user's Leave finds the tab closed already; any
      // other means the server took this page out of the room.
      chat.onLeft(frame);
      break;
  }
});

// The call works without the config (no ICE servers: host candidates, which
// is enough on one LAN), so a failed fetch is only reported.
fetch('api/config')
  .then((res) => (res.ok ? res.json() : Promise.reject(new Error(`HTTP ${res.status}`))))
  .then((config) => call.setConfig(config))
  .catch((err) => toast(`Could not load the call settings (${err.message}); calls use defaults.`, 'info'));

// A link to a room (invite.js) opens it; the join goes out after `hello`.
chat.openLink();
conn.start();
