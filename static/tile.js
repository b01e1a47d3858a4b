// Call tiles: one <figure> per video on the call stage, captioned with whose
// it is. The mesh (call.js) and the SFU (sfu.js) build the same tiles, so
// the stage looks and reads the same whichever way the media travels.

import { h } from './dom.js';

/**
 * TileFlags is a tile's state in words: "Microphone off" shown on the tile,
 * "Camera off" and "Speaking" for screen readers (the tile shows those with
 * its look: the camera-off placeholder, the speaking ring). They sit
 * outside the caption, so the figure's accessible name stays the nickname
 * while the flags change.
 */
export class TileFlags {
  mic = h('span', { class: 'tile-flag', text: 'Microphone off', hidden: true });
  camera = h('span', { class: 'visually-hidden', text: 'Camera off', hidden: true });
  speaking = h('span', { class: 'visually-hidden', text: 'Speaking', hidden: true });
  el = h('p', { class: 'tile-flags' }, this.mic, this.camera, this.speaking);

  /** set shows the state on tile: micOff and cameraOff true for what is off. */
  set(tile, micOff, cameraOff) {
    this.mic.hidden = !micOff;
    this.camera.hidden = !cameraOff;
    tile.classList.toggle('camera-off', cameraOff);
  }

  /** setSpeaking rings tile while the server counts its peer among the speakers. */
  setSpeaking(tile, on) {
    this.speaking.hidden = !on;
    tile.classList.toggle('speaking', on);
  }
}

/** What a remote tile says under the name for each RTCPeerConnection state ('' for none). */
const STATES = { new: 'Connecting…', connecting: 'Connecting…', failed: 'Connection failed', disconnected: 'Connection lost…' };

/** RemoteTile is the tile of another peer's camera (or screen): its video, name, state and flags. */
export class RemoteTile {
  video = h('video', { autoplay: true, playsinline: true });
  flags = new TileFlags();

  /** name is the caption; muted tiles (a screen share) never play sound. */
  constructor(name, { muted = false } = {}) {
    this.video.muted = muted;
    this.caption = h('span', { class: 'tile-name', text: name });
    this.state = h('span', { class: 'tile-state', text: STATES.new });
    this.el = h('figure', { class: 'tile remote' }, this.video, this.flags.el, h('figcaption', {}, this.caption, this.state));
  }

  /** play shows stream, whose tracks may still be coming. */
  play(stream) {
    if (this.video.srcObject !== stream) this.video.srcObject = stream;
    this.video.play().catch((err) => {
      if (err.name === 'NotAllowedError') this.#offerAudio();
    });
  }

  rename(name) {
    this.caption.textContent = name;
  }

  /** setState shows the connection's state (RTCPeerConnection.connectionState). */
  setState(state) {
    this.el.dataset.state = state;
    this.state.textContent = STATES[state] ?? '';
  }

  setFlags(micOff, cameraOff) {
    this.flags.set(this.el, micOff, cameraOff);
  }

  setSpeaking(on) {
    this.flags.setSpeaking(this.el, on);
  }

  /**
   * offerAudio handles a browser that refused to play sound before the user
   * interacted with the page: play the video muted and offer a button.
   */
  #offerAudio() {
    if (this.video.muted) return;
    this.video.muted = true;
    this.video.play().catch(() => {});
    const button = h('button', { type: 'button', class: 'tile-audio', text: 'Play sound' });
    button.addEventListener('click', () => {
      this.video.muted = false;
      button.remove();
    });
    this.el.append(button);
  }
}
