// Calls through the server's selective forwarding unit (server/sfu/doc.go;
// PROTOCOL.md, "Calls: who may signal whom"): one RTCPeerConnection to the
// reserved peer "sfu", which carries this page's media up and every other
// peer's down.
//
// The server is the only offerer, so there is no glare to avoid: the page
// answers each offer, one at a time. The first offer has three transceivers
// for the page to send on, mids "0" audio, "1" camera, "2" screen; the page
// takes them as sendonly and from then on only swaps what they carry with
// replaceTrack, which needs no negotiation. Every later mid is one forwarded
// track, and the offer's `tracks` map says whose and which: {mid: {id, media}}.
//
// Tiles: each remote peer has its camera tile (its microphone plays there)
// and, while it shares its screen, a second tile beside it captioned
// "<nick> (screen)". The server forwards camera and screen as two tracks,
// so both can be seen at once: a slide and the face presenting it.

import { RemoteTile } from './tile.js';

/** SFU_ID is the peer id signals to and from the server's side of the call carry. */
export const SFU_ID = 'sfu';

/** SEND_MIDS are the mids of the first offer's transceivers this page sends on, by media. */
const SEND_MIDS = { audio: '0', camera: '1', screen: '2' };

/**
 * SfuConnection is this page's peer connection to the SFU.
 *
 * options: iceServers (from /api/config); signal(data) sends to "sfu";
 * local() returns what the page sends, {audio, camera, screen} (tracks or
 * null), read when the first offer is answered; onTrack(id, media, track)
 * and onTrackEnd(id, track) report the forwarded tracks as they come and
 * go; onState(connectionState) the connection's state.
 */
export class SfuConnection {
  #pc;
  #opts;
  /** queue runs signals and sends one at a time, in order: each step awaits the one before. */
  #queue = Promise.resolve();
  /** senders are this page's audio, camera and screen senders, once the first offer is in. */
  #senders = null;
  /** offered is the latest offer's tracks map, which ontrack reads during setRemoteDescription. */
  #offered = {};
  /** remote holds the forwarded tracks by mid: {id, media, track}. */
  #remote = new Map();

  constructor(opts) {
    this.#opts = opts;
    const pc = new RTCPeerConnection({ iceServers: opts.iceServers });
    this.#pc = pc;
    pc.addEventListener('icecandidate', (e) => {
      if (e.candidate) opts.signal({ kind: 'ice', candidate: e.candidate.toJSON() });
    });
    pc.addEventListener('track', (e) => {
      const mid = e.transceiver.mid;
      const info = this.#offered[mid];
      if (!info || typeof info.id !== 'string' || this.#remote.get(mid)?.track === e.track) return;
      this.#remote.set(mid, { id: info.id, media: info.media, track: e.track });
      opts.onTrack(info.id, info.media, e.track);
    });
    pc.addEventListener('connectionstatechange', () => opts.onState(pc.connectionState));
  }

  /** state is the connection's state, for tiles made after it changed. */
  get state() {
    return this.#pc.connectionState;
  }

  /** tracksOf lists the forwarded tracks of peer id that are live: [{media, track}]. */
  tracksOf(id) {
    return [...this.#remote.values()].filter((r) => r.id === id);
  }

  /** handle takes a signal from "sfu": an offer or an ICE candidate. */
  handle(data) {
    this.#enqueue(async () => {
      if (data.kind === 'offer' && typeof data.sdp === 'string') await this.#answer(data);
      else if (data.kind === 'ice' && data.candidate) await this.#pc.addIceCandidate(data.candidate);
    });
  }

  /**
   * send puts track (or null: nothing) on the sender of media ('audio',
   * 'camera', 'screen'). Before the first offer there is no sender yet, and
   * the answer to it reads local() instead. It resolves once the track
   * goes out (or the step failed, which is reported).
   */
  send(media, track) {
    return this.#enqueue(async () => {
      await this.#senders?.[media].replaceTrack(track);
    });
  }

  close() {
    this.#pc.close();
  }

  async #answer({ sdp, tracks }) {
    const pc = this.#pc;
    this.#offered = tracks && typeof tracks === 'object' ? tracks : {};
    await pc.setRemoteDescription({ type: 'offer', sdp });
    if (!this.#senders) {
      const local = this.#opts.local();
      const senders = {};
      for (const [media, mid] of Object.entries(SEND_MIDS)) {
        const transceiver = pc.getTransceivers().find((t) => t.mid === mid);
        if (!transceiver) throw new Error(`the SFU's first offer has no mid ${mid} for the ${media}`);
        transceiver.direction = 'sendonly';
        await transceiver.sender.replaceTrack(local[media] ?? null);
        senders[media] = transceiver.sender;
      }
      this.#senders = senders;
    }
    // A track the offer no longer lists went inactive: its publisher left.
    // The map says so whatever the browser does with the ended m-section.
    for (const [mid, r] of this.#remote) {
      if (!(mid in this.#offered)) {
        this.#remote.delete(mid);
        this.#opts.onTrackEnd(r.id, r.track);
      }
    }
    await pc.setLocalDescription(await pc.createAnswer());
    this.#opts.signal({ kind: 'answer', sdp: pc.localDescription.sdp });
  }

  /** enqueue runs step after the earlier ones; a failed step is reported, not fatal. */
  #enqueue(step) {
    this.#queue = this.#queue.then(step).catch((err) => {
      if (this.#pc.signalingState !== 'closed') console.warn('noom: signalling with the SFU failed:', err);
    });
    return this.#queue;
  }
}

/**
 * SfuPeer is another peer of a call through the SFU: its camera tile, which
 * also plays its microphone, and its screen tile while it shares. It has
 * the mesh Peer's methods that Call uses (rename, setMedia, setSpeaking,
 * close, tile), and takes its tracks from the SfuConnection.
 */
export class SfuPeer {
  #main = new MediaStream();
  #screen = new MediaStream();
  /** sharing is the peer's last announced `screen` (undefined: not announced yet). */
  #sharing;
  #onLayout;

  /** onLayout is called when the screen tile comes or goes. */
  constructor(id, nick, onLayout) {
    this.id = id;
    this.#onLayout = onLayout;
    this.tile = new RemoteTile(nick);
    this.screenTile = new RemoteTile(screenName(nick), { muted: true });
  }

  addTrack(media, track) {
    const stream = media === 'screen' ? this.#screen : this.#main;
    // One track per media: a newer one (the peer came back) replaces it.
    for (const old of stream.getTracks()) {
      if (old.kind === track.kind) stream.removeTrack(old);
    }
    stream.addTrack(track);
    if (media !== 'screen') this.tile.play(this.#main);
    this.#layout();
  }

  removeTrack(track) {
    this.#main.removeTrack(track);
    this.#screen.removeTrack(track);
    this.#layout();
  }

  rename(nick) {
    this.tile.rename(nick);
    this.screenTile.rename(screenName(nick));
  }

  /**
   * setMedia shows what the peer announced: {audio, video, screen}. Its
   * camera goes on while it shares (the screen has a tile of its own), so
   * the camera tile says "Camera off" only for the camera.
   */
  setMedia({ audio, video, screen }) {
    this.tile.setFlags(audio === false, video === false);
    this.#sharing = screen;
    this.#layout();
  }

  setSpeaking(on) {
    this.tile.setSpeaking(on);
  }

  setState(state) {
    this.tile.setState(state);
    this.screenTile.setState(state);
  }

  close() {
    this.tile.el.remove();
    this.screenTile.el.remove();
  }

  /**
   * layout shows the screen tile, after the camera tile, while there is a
   * screen track and the peer has not said it stopped sharing: the server
   * keeps forwarding the track after the share ends (nothing is on it), so
   * the track alone cannot tell.
   */
  #layout() {
    const show = this.#screen.getTracks().length > 0 && this.#sharing !== false && this.tile.el.isConnected;
    if (show === this.screenTile.el.isConnected) return;
    if (show) {
      this.tile.el.after(this.screenTile.el);
      this.screenTile.play(this.#screen);
    } else {
      this.screenTile.el.remove();
    }
    this.#onLayout();
  }
}

function screenName(nick) {
  return `${nick} (screen)`;
}
