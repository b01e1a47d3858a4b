// Links to rooms. A link names its room in the URL's fragment,
// `#room=NAME`, with the passcode beside it only when the host chose to
// include it: `#room=NAME&passcode=CODE`. The fragment never leaves the
// browser, so neither reaches a server's or a proxy's logs. A link never
// holds the host key (access.js keeps that one to itself).
//
// The address bar follows the room on show, as `#room=NAME` without the
// passcode, so a reload opens the same room again and a passcode from a
// link does not stay in the bar or the browser's history.

/** readLink returns {room, passcode} from a location's fragment, or null if it names no room. */
export function readLink(location) {
  const params = new URLSearchParams(location.hash.replace(/^#/, ''));
  const room = params.get('room');
  if (!room) return null;
  return { room, passcode: params.get('passcode') ?? '' };
}

/** inviteURL is the link to room on this page's address, with passcode if one is given. */
export function inviteURL(location, room, passcode = '') {
  const url = new URL(location.href);
  url.search = ''; // The page's own query, if any, is the sender's, not the room's.
  const params = new URLSearchParams({ room });
  if (passcode) params.set('passcode', passcode);
  url.hash = params.toString();
  return url.href;
}

/** showRoom puts room (or, for null, nothing) in the address bar's fragment, without a history entry. */
export function showRoom(room) {
  const url = new URL(location.href);
  url.hash = room ? new URLSearchParams({ room }).toString() : '';
  // An empty hash leaves a bare "#" in href; drop it.
  const href = room ? url.href : url.href.replace(/#$/, '');
  if (href !== location.href) history.replaceState(history.state, '', href);
}
