// The WebSocket to the server, kept open across server restarts and network
// drops.
//
// Events (all CustomEvent):
//   status  detail: 'connecting' | 'online' | 'reconnecting'
//   frame   detail: one decoded server frame (including `hello`)
// The status turns 'online' when `hello` arrives, just before that frame is
// dispatched, so a `hello` listener may send its rejoin requests at once.

/** Reconnect delays: the first retry waits up to BASE_MS, doubling per failure up to CAP_MS. */
export const BASE_MS = 500;
export const CAP_MS = 10_000;
/**
 * HELLO_MS bounds the wait for `hello` after opening a socket: a handshake
 * stuck on a half-dead network is abandoned and retried instead.
 */
const HELLO_MS = 10_000;

/**
 * backoffDelay returns how long to wait before reconnect attempt number
 * `attempt` (0 for the first retry): "full jitter", a uniform draw from
 * [0, min(cap, base·2^attempt)). Spreading the retries over the whole window,
 * rather than around its end, keeps a thousand pages that lost the same
 * server from coming back in one burst when it restarts.
 */
export function backoffDelay(attempt, random = Math.random, base = BASE_MS, cap = CAP_MS) {
  const window = Math.min(cap, base * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * window);
}

/**
 * wsURL derives the WebSocket address from the page's own: ws: beside http:,
 * wss: beside https:, same host and path prefix, so the page works behind
 * TLS and under a reverse proxy's sub-path. nick, when set, is passed as
 * ?nick= so the server knows it before the first join.
 */
export function wsURL(location, nick) {
  const url = new URL('ws', location.href);
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  url.search = '';
  url.hash = '';
  if (nick) url.searchParams.set('nick', nick);
  return url.href;
}

export class Connection extends EventTarget {
  #urlFor;
  #ws = null;
  #attempt = 0;
  #timer = 0;
  #status = 'connecting';

  /** urlFor is called before every attempt, so a nickname changed while offline is used. */
  constructor(urlFor) {
    super();
    this.#urlFor = urlFor;
  }

  /** start opens the first connection; afterwards the connection looks after itself. */
  start() {
    // The browser knows before we do when the network is back: skip the rest
    // of the backoff then.
    window.addEventListener('online', () => {
      if (this.#ws !== null) return;
      clearTimeout(this.#timer);
      this.#open();
    });
    this.#open();
  }

  /**
   * send writes one frame and returns true, or returns false when there is
   * no open connection. Nothing is queued: what a frame meant may be stale by
   * the time a new connection exists, and the rejoin after `hello` restores
   * the state that matters.
   */
  send(frame) {
    if (this.#status !== 'online' || this.#ws?.readyState !== WebSocket.OPEN) return false;
    this.#ws.send(JSON.stringify(frame));
    return true;
  }

  #open() {
    const ws = new WebSocket(this.#urlFor());
    this.#ws = ws;
    const helloTimer = setTimeout(() => ws.close(), HELLO_MS);
    ws.addEventListener('message', (event) => {
      if (this.#ws !== ws || typeof event.data !== 'string') return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return; // The protocol promises JSON objects; a broken frame is not worth a reconnect.
      }
      if (typeof frame !== 'object' || frame === null) return;
      if (frame.type === 'hello') {
        clearTimeout(helloTimer);
        this.#attempt = 0;
        this.#setStatus('online');
      }
      this.dispatchEvent(new CustomEvent('frame', { detail: frame }));
    });
    // 'error' is always followed by 'close', so close alone drives the retry.
    ws.addEventListener('close', () => {
      clearTimeout(helloTimer);
      if (this.#ws !== ws) return;
      this.#ws = null;
      this.#setStatus('reconnecting');
      this.#timer = setTimeout(() => this.#open(), backoffDelay(this.#attempt++));
    });
  }

  #setStatus(status) {
    if (status === this.#status) return;
    this.#status = status;
    this.dispatchEvent(new CustomEvent('status', { detail: status }));
  }
}
