// The console's JSON API (server/console): GETs to look, POSTs to act,
// the latter with the session's CSRF token. The session itself is an
// HttpOnly cookie this script never sees.

let csrf = '';

/** setSession keeps the CSRF token a login or GET api/session handed out. */
export function setSession(session) {
  csrf = session?.csrf ?? '';
}

/** APIError is a refused request: status is the HTTP status, message the server's words. */
export class APIError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/**
 * unauthorized is called on every 401: the session ended (expired, logged
 * out elsewhere, or the server restarted with a new key).
 */
let unauthorized = () => {};
export function onUnauthorized(f) {
  unauthorized = f;
}

/**
 * api calls path under /admin/api/ and returns the decoded answer, or
 * throws an APIError. body, if given, is sent as JSON.
 */
export async function api(path, { method = 'GET', body } = {}) {
  const headers = {};
  if (method !== 'GET') headers['X-CSRF-Token'] = csrf;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(`api/${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch (err) {
    throw new APIError(0, `the server is out of reach (${err.message})`);
  }
  let data = null;
  try {
    data = await res.json();
  } catch {
    // Not JSON: a proxy's error page, or the console turned off.
  }
  if (!res.ok) {
    if (res.status === 401 && path !== 'login') unauthorized();
    throw new APIError(res.status, data?.error ?? `HTTP ${res.status}`);
  }
  return data;
}

/** enc escapes one path segment: a room name or a connection id. */
export function enc(s) {
  return encodeURIComponent(s);
}
