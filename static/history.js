// Which of a room's messages this page has already shown.
//
// A room numbers its messages with `seq`, strictly increasing within one
// lifetime of the room, named by `epoch`: when the room empties or the server
// restarts, seq starts again at 1 under a new epoch. After a reconnect the page
// rejoins with the epoch and last seq it saw; the server answers with the
// messages after it (same epoch) or the room's whole history (new epoch). This
// class turns those answers, and the live `msg` frames, into "show this once".
// It touches no DOM, so node's test runner checks it directly.
//
// It also pages back: the `history` request asks for the messages before the
// oldest one the page shows, and this class says when there may be any, and
// which of a reply's messages belong above the log.
//
// A new epoch does not always mean new messages: in a cluster, a node cut
// off from the others runs a room alone under an epoch of its own and then
// returns it to the cluster's (each time with an unasked `joined`), and the
// history it sends then holds messages this page showed already. So under a
// new epoch, messages are also recognised by what they are: sender, server
// time and text.

/** KEEP is how many recent messages a room remembers by content. */
const KEEP = 500;

/** PAGE is how many older messages one `history` request asks for (the protocol's default). */
export const PAGE = 50;

/** contentKey identifies a message across epochs. */
const contentKey = (m) => `${m.from}\u0000${m.ts}\u0000${m.text}`;

export class RoomHistory {
  /** joined becomes true with the first `joined` frame; before it there is nothing to resume. */
  joined = false;
  /** epoch of the room lifetime lastSeq belongs to (undefined if the server sends none). */
  epoch = undefined;
  /** lastSeq is the highest seq shown in this epoch; 0 before any. */
  lastSeq = 0;
  /** the content keys of the last KEEP messages shown, oldest first in #order. */
  #seen = new Set();
  #order = [];
  /** joins counts `joined` frames, asked for or not, to tell a stale `history` reply. */
  #joins = 0;
  /** pending is #joins when the open `history` request was sent, or -1 when none is open. */
  #pending = -1;
  /** start is {epoch, seq} once a reply said nothing before seq is kept in that epoch. */
  #start = null;

  /**
   * joinFrame returns the `join` request for room: a plain join the first
   * time, and on a rejoin one that asks for what came after lastSeq.
   */
  joinFrame(room) {
    const frame = { type: 'join', room };
    if (this.joined) {
      frame.since = this.lastSeq;
      if (typeof this.epoch === 'string') frame.epoch = this.epoch;
    }
    return frame;
  }

  /**
   * onJoined takes a `joined` frame and returns the history messages that are
   * new to this page, oldest first. `resumed` is true on a rejoin, and
   * `complete` is false when the server could not vouch that nothing was lost
   * in between (`recovered:false`, or the room started a new life).
   */
  onJoined(frame) {
    const resumed = this.joined;
    const sameEpoch = resumed && frame.epoch === this.epoch;
    if (!sameEpoch) {
      // A new lifetime: every seq in it is new to this page, even ones at or
      // below the old lastSeq.
      this.epoch = frame.epoch;
      this.lastSeq = 0;
    }
    this.joined = true;
    this.#joins++;
    const fresh = (frame.history ?? []).filter((m) => {
      const shownBefore = !sameEpoch && this.#seen.has(contentKey(m));
      return this.accept(m) && !shownBefore;
    });
    return { messages: fresh, resumed, complete: sameEpoch && frame.recovered !== false };
  }

  /**
   * accept reports whether a message (live `msg` or history entry) is new,
   * and records it as shown. A seq at or below lastSeq is a duplicate.
   */
  accept(msg) {
    if (!Number.isSafeInteger(msg.seq) || msg.seq <= this.lastSeq) return false;
    this.lastSeq = msg.seq;
    const key = contentKey(msg);
    if (!this.#seen.has(key)) {
      this.#seen.add(key);
      this.#order.push(key);
      if (this.#order.length > KEEP) this.#seen.delete(this.#order.shift());
    }
    return true;
  }

  // ---- paging back ----
  //
  // `oldest` below is {seq, epoch} of the topmost message the page shows (the
  // epoch it was shown under), or null when it shows none.

  /**
   * canLoadOlder reports whether the room may keep messages older than
   * oldest: it is of the current epoch (a seq of another lifetime names
   * nothing the server can page from), above seq 1, and no reply has said
   * that nothing before it is kept. A server that names no epoch predates
   * kept history and the `history` request.
   */
  canLoadOlder(oldest) {
    if (!oldest || typeof this.epoch !== 'string' || oldest.epoch !== this.epoch || oldest.seq <= 1) return false;
    return !(this.#start?.epoch === this.epoch && oldest.seq <= this.#start.seq);
  }

  /** loadingOlder is true while a `history` request is sent and not answered. */
  get loadingOlder() {
    return this.#pending >= 0;
  }

  /**
   * olderFrame returns the `history` request for the page before oldest, of
   * at most limit messages, or null when there is nothing to ask (see
   * canLoadOlder) or a request is open already. Call olderSent once it is sent.
   */
  olderFrame(room, oldest, limit = PAGE) {
    if (this.loadingOlder || !this.canLoadOlder(oldest) || limit < 1) return null;
    return { type: 'history', room, before: oldest.seq, limit: Math.min(limit, 100) };
  }

  olderSent() {
    this.#pending = this.#joins;
  }

  /**
   * olderFailed closes the open request without an answer: it was refused
   * (`error` with ref `history`) or its connection is gone.
   */
  olderFailed() {
    this.#pending = -1;
  }

  /**
   * onOlder takes a `history` reply and returns the messages to show above
   * oldest, oldest first: those of this epoch below oldest.seq, each seq
   * once. They are not recorded as shown by content: that memory is of the
   * newest messages, the ones a rejoin under a new epoch may repeat.
   * It returns null for a reply nobody waits for, or one sent before a
   * `joined` that came in meanwhile (it may be of another epoch).
   */
  onOlder(frame, oldest) {
    if (this.#pending < 0) return null;
    const stale = this.#pending !== this.#joins;
    this.#pending = -1;
    if (stale || !oldest || oldest.epoch !== this.epoch) return null;
    const list = Array.isArray(frame.messages) ? frame.messages : [];
    const fresh = list
      .filter((m) => typeof m === 'object' && m !== null && Number.isSafeInteger(m.seq) && m.seq >= 1 && m.seq < oldest.seq)
      .sort((a, b) => a.seq - b.seq)
      .filter((m, i, all) => i === 0 || m.seq !== all[i - 1].seq);
    if (frame.more === false) this.#start = { epoch: this.epoch, seq: fresh[0]?.seq ?? oldest.seq };
    return fresh;
  }
}
