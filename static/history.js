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
// A new epoch does not always mean new messages: in a cluster, a node cut
// off from the others runs a room alone under an epoch of its own and then
// returns it to the cluster's (each time with an unasked `joined`), and the
// history it sends then holds messages this page showed already. So under a
// new epoch, messages are also recognised by what they are: sender, server
// time and text.

/** KEEP is how many recent messages a room remembers by content. */
const KEEP = 500;

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
}
