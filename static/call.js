// Video calls: a WebRTC mesh, one RTCPeerConnection per other peer in the
// room's call, signalled through the server (PROTOCOL.md `call`, `call_peer`,
// `signal`); or, when the `call` frame says `sfu: true`, one connection to
// the server's forwarding unit instead (sfu.js).
//
// Who offers is fixed, so two peers never offer to each other at once
// ("glare"): the newcomer, who gets `call` with the peers already there,
// offers to each of them; the others only answer, and only to peers the
// server announced (`call` peers, `call_peer` join). `signal.data` is one of
//   {kind:'offer', sdp}  {kind:'answer', sdp}  {kind:'ice', candidate}
//
// Every connection carries exactly one audio and one video transceiver, set
// up before the first offer. Switching camera, sharing the screen and coming
// back are then RTCRtpSender.replaceTrack on the video sender: no
// renegotiation, so no second offer and no glare to avoid.
//
// Each peer announces what it sends with `media` (on joining the call and
// on every change), and the tiles show the others' microphone and camera
// from it. A host's `mute` turns this page's microphone off; only the user
// turns it on again. Through the SFU, the server also says who is speaking
// (`speakers`), and their tiles show it.

import { byId, h, toast } from './dom.js';
import { SFU_ID, SfuConnection, SfuPeer } from './sfu.js';
import { RemoteTile, TileFlags } from './tile.js';

const KINDS = ['audio', 'video'];

/** One other peer in a mesh call: its connection and its tile. */
class Peer {
  constructor(id, nick, iceServers, signal) {
    this.id = id;
    this.pc = new RTCPeerConnection({ iceServers });
    /** senders holds this page's audio and video sender on this connection. */
    this.senders = {};
    /** queue runs signals one at a time, in arrival order: each step awaits the one before. */
    this.queue = Promise.resolve();
    this.remote = new MediaStream();
    this.tile = new RemoteTile(nick);

    this.pc.addEventListener('icecandidate', (e) => {
      if (e.candidate) signal({ kind: 'ice', candidate: e.candidate.toJSON() });
    });
    this.pc.addEventListener('track', (e) => {
      this.remote.addTrack(e.track);
      this.tile.play(this.remote);
    });
    this.pc.addEventListener('connectionstatechange', () => this.tile.setState(this.pc.connectionState));
  }

  /**
   * attach gives this connection its audio and video transceivers, sending
   * the local tracks (or nothing, for a kind the page has no device for). On
   * the answering side the offer already created them; on the offering side
   * they are added here.
   */
  async attach(tracks) {
    for (const kind of KINDS) {
      let transceiver = this.pc.getTransceivers().find((t) => t.receiver.track.kind === kind);
      transceiver ??= this.pc.addTransceiver(kind);
      transceiver.direction = 'sendrecv';
      await transceiver.sender.replaceTrack(tracks[kind] ?? null);
      this.senders[kind] = transceiver.sender;
    }
  }

  rename(nick) {
    this.tile.rename(nick);
  }

  /** setMedia shows what the peer announced it sends: {audio, video, screen}. */
  setMedia({ audio, video, screen }) {
    this.tile.setFlags(audio === false, video === false && screen !== true);
  }

  setSpeaking(on) {
    this.tile.setSpeaking(on);
  }

  close() {
    this.pc.close();
    this.tile.el.remove();
  }
}

export class Call {
  #conn;
  #iceServers = [];
  #callLimit = 6;
  /** room is the room whose call the user is in, or null. It outlives a reconnect. */
  #room = null;
  /** requested is true once `call` join went out on the current connection. */
  #requested = false;
  /** activeRoom is the room shown in the chat view, where Join call acts. */
  #activeRoom = null;
  /** local holds the microphone and camera tracks; the preview plays it muted. */
  #local = new MediaStream();
  #camera = null;
  #mic = null;
  /** screen is the shared screen's track while sharing: sent instead of the camera in a mesh, beside it through the SFU. */
  #screen = null;
  /** peers are the call's other peers by id: mesh Peers, or SfuPeers while #sfu is set. */
  #peers = new Map();
  /** sfu is the connection to the server's forwarding unit while the call goes through it, else null. */
  #sfu = null;
  /** myId is this connection's peer id (hello), to find this page among the speakers. */
  #myId = null;
  /** speaking holds the ids of the latest `speakers` frame. */
  #speaking = new Set();
  /** announced is the last `media` state sent on this call membership ('' for none yet). */
  #announced = '';
  #localFlags = new TileFlags();

  #els = {
    stage: byId('call'),
    title: byId('call-title'),
    grid: byId('call-grid'),
    joinCall: byId('join-call'),
    mute: byId('mute'),
    cameraToggle: byId('camera-toggle'),
    cameraSelect: byId('camera-select'),
    share: byId('share'),
    leaveCall: byId('leave-call'),
  };
  #preview = h('video', { autoplay: true, playsinline: true });
  #localTile = h(
    'figure',
    { class: 'tile local' },
    this.#preview,
    this.#localFlags.el,
    h('figcaption', {}, h('span', { class: 'tile-name', text: 'You' })),
  );

  constructor(conn) {
    this.#conn = conn;
    this.#preview.muted = true; // Never play one's own microphone back.
    const els = this.#els;
    els.joinCall.addEventListener('click', () => this.join(this.#activeRoom));
    els.leaveCall.addEventListener('click', () => this.leave());
    els.mute.addEventListener('click', () => this.#toggle(this.#mic));
    els.cameraToggle.addEventListener('click', () => this.#toggle(this.#camera));
    els.cameraSelect.addEventListener('change', () => this.#switchCamera(els.cameraSelect.value));
    els.share.addEventListener('click', () => (this.#screen ? this.#stopSharing() : this.#share()));
    navigator.mediaDevices?.addEventListener('devicechange', () => this.#listCameras());
    this.#render();
  }

  /** setConfig takes /api/config: the ICE servers and the call size limit. */
  setConfig({ iceServers, callLimit }) {
    if (Array.isArray(iceServers)) this.#iceServers = iceServers;
    if (Number.isInteger(callLimit) && callLimit > 0) this.#callLimit = callLimit;
  }

  /** join opens camera and microphone and joins room's call, leaving any other call first. */
  async join(room) {
    if (!room || room === this.#room) return;
    if (this.#room) this.leave();
    this.#room = room;
    this.#render();
    const stream = await openMedia();
    if (this.#room !== room) {
      // Left while the browser asked for the devices.
      stream?.getTracks().forEach((t) => t.stop());
      return;
    }
    if (stream) {
      this.#mic = stream.getAudioTracks()[0] ?? null;
      this.#camera = stream.getVideoTracks()[0] ?? null;
      this.#local = stream;
      this.#preview.srcObject = stream;
      await this.#listCameras();
    }
    this.#request();
    this.#render();
  }

  /** leave ends this page's part in the call and releases camera and microphone. */
  leave() {
    if (!this.#room) return;
    if (this.#requested) this.#conn.send({ type: 'call', room: this.#room, action: 'leave' });
    this.#end();
  }

  // ---- chat view and connection events ----

  onActive(room) {
    this.#activeRoom = room;
    this.#render();
  }

  /** onRoomLeft ends the call of a room the user left; the server has told the peers. */
  onRoomLeft(room) {
    if (room === this.#room) this.#end();
  }

  /** onStatus drops the peer connections when the server connection is lost: the server ended this call membership. */
  onStatus(status) {
    if (status === 'online') return;
    this.#requested = false;
    this.#announced = '';
    this.#closePeers();
    this.#closeSfu();
    this.#render();
  }

  onHello(frame) {
    this.#myId = frame.id;
  }

  /** onJoined rejoins the call after a reconnect, once the room itself is rejoined. */
  onJoined(frame) {
    if (frame.room === this.#room && !this.#requested) this.#request();
  }

  onPresence(frame) {
    if (frame.event === 'nick' && frame.room === this.#room) this.#peers.get(frame.id)?.rename(frame.nick);
  }

  // ---- call frames ----

  /**
   * onCall: the server let this page in; offer to every peer already there.
   * Or the call goes through the SFU (it did from the start, it just moved
   * there, or it moved to another node's): drop every connection and answer
   * the SFU's offer, which comes next.
   */
  onCall(frame) {
    if (frame.room !== this.#room) return;
    if (frame.sfu === true) {
      this.#startSfu(frame.peers ?? []);
      return;
    }
    this.#closeSfu();
    for (const entry of frame.peers ?? []) {
      const peer = this.#addPeer(entry.id, entry.nick);
      if (typeof entry.audio === 'boolean') peer.setMedia(entry); // Announced before this page came.
      this.#enqueue(peer, async () => {
        await peer.attach(this.#tracks());
        await peer.pc.setLocalDescription(await peer.pc.createOffer());
        this.#signal(peer.id, { kind: 'offer', sdp: peer.pc.localDescription.sdp });
      });
    }
    this.#announced = ''; // A new membership: the peers know nothing of this page's media yet.
    this.#announce();
    this.#render();
  }

  onCallPeer(frame) {
    if (frame.room !== this.#room) return;
    if (frame.event === 'join') {
      if (this.#sfu) this.#addSfuPeer(frame.id, frame.nick);
      else this.#addPeer(frame.id, frame.nick); // It will offer; its tile shows meanwhile.
    } else if (frame.event === 'leave') {
      this.#peers.get(frame.id)?.close();
      this.#peers.delete(frame.id);
    } else if (frame.event === 'media') {
      this.#peers.get(frame.id)?.setMedia(frame);
    }
    this.#render();
  }

  /** onMute: a host turned this page's microphone off. The user may turn it on again. */
  onMute(frame) {
    if (frame.room !== this.#room || this.#mic?.enabled !== true) return;
    this.#mic.enabled = false;
    toast('A host muted your microphone. Unmute to speak again.', 'info');
    this.#render();
    this.#announce();
  }

  /** onSpeakers rings the tiles of the peers the server hears speaking, this page's own included. */
  onSpeakers(frame) {
    if (frame.room !== this.#room || !Array.isArray(frame.ids)) return;
    this.#speaking = new Set(frame.ids);
    for (const peer of this.#peers.values()) peer.setSpeaking(this.#speaking.has(peer.id));
    this.#render();
  }

  onSignal(frame) {
    const data = frame.data;
    if (frame.room !== this.#room || !this.#requested || typeof data !== 'object' || data === null) return;
    if (this.#sfu) {
      // A mesh peer's late candidate, sent before the call moved, has no connection left to go to.
      if (frame.from === SFU_ID) this.#sfu.handle(data);
      return;
    }
    // Only peers the server announced for this call, in `call` or
    // `call_peer`, may reach the camera and microphone: an offer is answered
    // with them. The server relays signals only between call peers and
    // sends `call_peer` before a newcomer's offer (PROTOCOL.md, "Calls: who
    // may signal whom"); anything else is ignored.
    const peer = this.#peers.get(frame.from);
    if (!peer) {
      console.warn('noom: ignored a signal from', frame.from, 'who is not a peer of this call');
      return;
    }
    this.#enqueue(peer, async () => {
      switch (data.kind) {
        case 'offer':
          await peer.pc.setRemoteDescription({ type: 'offer', sdp: data.sdp });
          await peer.attach(this.#tracks());
          await peer.pc.setLocalDescription(await peer.pc.createAnswer());
          this.#signal(peer.id, { kind: 'answer', sdp: peer.pc.localDescription.sdp });
          break;
        case 'answer':
          await peer.pc.setRemoteDescription({ type: 'answer', sdp: data.sdp });
          break;
        case 'ice':
          await peer.pc.addIceCandidate(data.candidate);
          break;
      }
    });
    this.#render();
  }

  onError(frame) {
    if (frame.code === 'call_full' && this.#room) {
      const limit = this.#callLimit;
      toast(`The call in ${this.#room} is full: at most ${limit} ${limit === 1 ? 'person' : 'people'}.`);
      this.#end();
    } else if (frame.ref === 'call') {
      toast(`Could not join the call: ${frame.message || frame.code}`);
      this.#end();
    }
    // A `signal` refused with no_such_member or not_allowed means that peer
    // just left the room or the call; its call_peer leave is on the way. A
    // `media` refused not_allowed was sent as this page left the call.
  }

  // ---- internals ----

  #request() {
    this.#requested = this.#conn.send({ type: 'call', room: this.#room, action: 'join' });
  }

  #signal(to, data) {
    this.#conn.send({ type: 'signal', room: this.#room, to, data });
  }

  /** announce tells the call's peers what this page sends (`media`), if that changed since the last time. */
  #announce() {
    if (!this.#room || !this.#requested) return;
    const media = { audio: this.#mic?.enabled === true, video: this.#camera?.enabled === true, screen: this.#screen !== null };
    const key = JSON.stringify(media);
    if (key !== this.#announced && this.#conn.send({ type: 'media', room: this.#room, ...media })) this.#announced = key;
  }

  #addPeer(id, nick) {
    this.#peers.get(id)?.close(); // A peer that rejoined gets a fresh connection.
    const peer = new Peer(id, nick, this.#iceServers, (data) => this.#signal(id, data));
    this.#peers.set(id, peer);
    this.#els.grid.append(peer.tile.el);
    return peer;
  }

  /**
   * startSfu opens a fresh connection to the SFU for the call of peers,
   * closing the mesh's connections or the previous SFU's (a call that moved
   * to another node). The tiles come from the call list, so a peer that
   * sends nothing still has one; its tracks join it as they arrive.
   */
  #startSfu(peers) {
    this.#closePeers();
    this.#closeSfu();
    this.#sfu = new SfuConnection({
      iceServers: this.#iceServers,
      signal: (data) => this.#signal(SFU_ID, data),
      local: () => ({ audio: this.#mic, camera: this.#camera, screen: this.#screen }),
      // Tracks of a peer not announced yet wait in the connection until its call_peer join.
      onTrack: (id, media, track) => this.#peers.get(id)?.addTrack(media, track),
      onTrackEnd: (id, track) => this.#peers.get(id)?.removeTrack(track),
      onState: (state) => {
        for (const peer of this.#peers.values()) peer.setState(state);
      },
    });
    for (const entry of peers) {
      const peer = this.#addSfuPeer(entry.id, entry.nick);
      if (typeof entry.audio === 'boolean') peer.setMedia(entry);
    }
    this.#announced = ''; // As in a mesh: say again what this page sends.
    this.#announce();
    this.#render();
  }

  #addSfuPeer(id, nick) {
    this.#peers.get(id)?.close(); // A peer that rejoined gets fresh tiles.
    const peer = new SfuPeer(id, nick, () => this.#render());
    this.#peers.set(id, peer);
    this.#els.grid.append(peer.tile.el);
    peer.setState(this.#sfu.state);
    for (const { media, track } of this.#sfu.tracksOf(id)) peer.addTrack(media, track);
    return peer;
  }

  #closeSfu() {
    this.#sfu?.close();
    this.#sfu = null;
    this.#speaking = new Set();
  }

  /** enqueue runs step after the peer's earlier signals; a failed step is reported, not fatal. */
  #enqueue(peer, step) {
    peer.queue = peer.queue.then(step).catch((err) => {
      if (peer.pc.signalingState !== 'closed') console.warn('noom: call signalling with', peer.id, 'failed:', err);
    });
  }

  /** tracks returns what this page sends: the screen instead of the camera while sharing. */
  #tracks() {
    return { audio: this.#mic, video: this.#screen ?? this.#camera };
  }

  /** listCameras fills the Camera select; device labels are only known once access was granted. */
  async #listCameras() {
    if (!this.#room || !navigator.mediaDevices?.enumerateDevices) return;
    const devices = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === 'videoinput');
    const current = this.#camera?.getSettings().deviceId;
    this.#els.cameraSelect.replaceChildren(
      ...devices.map((d, i) => h('option', { value: d.deviceId, selected: d.deviceId === current, text: d.label || `Camera ${i + 1}` })),
    );
    this.#render();
  }

  async #switchCamera(deviceId) {
    if (!this.#camera || deviceId === this.#camera.getSettings().deviceId) return;
    let track;
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ video: { deviceId: { exact: deviceId } } });
      track = stream.getVideoTracks()[0];
    } catch (err) {
      toast(`Could not switch camera: ${err.message || err.name}`);
      this.#listCameras();
      return;
    }
    const old = this.#camera;
    track.enabled = old.enabled;
    this.#local.removeTrack(old);
    this.#local.addTrack(track);
    this.#camera = track;
    if (this.#sfu) await this.#sfu.send('camera', track);
    else if (!this.#screen) await this.#sendVideo(track);
    old.stop();
  }

  async #share() {
    let stream;
    try {
      stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    } catch (err) {
      if (err.name !== 'NotAllowedError') toast(`Could not share the screen: ${err.message || err.name}`);
      return;
    }
    if (!this.#room) {
      stream.getTracks().forEach((t) => t.stop());
      return;
    }
    this.#screen = stream.getVideoTracks()[0];
    // The browser's own "Stop sharing" ends the track without our button.
    this.#screen.addEventListener('ended', () => this.#stopSharing());
    this.#preview.srcObject = stream;
    if (this.#sfu) await this.#sfu.send('screen', this.#screen);
    else await this.#sendVideo(this.#screen);
    this.#render();
    this.#announce();
  }

  async #stopSharing() {
    if (!this.#screen) return;
    this.#screen.stop();
    this.#screen = null;
    this.#preview.srcObject = this.#local;
    if (this.#sfu) await this.#sfu.send('screen', null);
    else await this.#sendVideo(this.#camera);
    this.#render();
    this.#announce();
  }

  /** sendVideo puts track on every connection's video sender, without renegotiating. */
  async #sendVideo(track) {
    await Promise.all([...this.#peers.values()].map((p) => p.senders.video?.replaceTrack(track)));
  }

  #toggle(track) {
    if (!track) return;
    track.enabled = !track.enabled;
    this.#render();
    this.#announce();
  }

  #closePeers() {
    for (const peer of this.#peers.values()) peer.close();
    this.#peers.clear();
  }

  /** end forgets the call: peers closed, devices released, the stage hidden. */
  #end() {
    this.#closePeers();
    this.#closeSfu();
    for (const track of [this.#mic, this.#camera, this.#screen]) track?.stop();
    this.#mic = this.#camera = this.#screen = null;
    this.#local = new MediaStream();
    this.#preview.srcObject = null;
    this.#els.cameraSelect.replaceChildren();
    this.#room = null;
    this.#requested = false;
    this.#announced = '';
    this.#render();
  }

  #render() {
    const els = this.#els;
    const inCall = this.#room !== null;
    els.stage.hidden = !inCall;
    els.stage.dataset.via = this.#sfu ? 'sfu' : 'mesh'; // How the media travels, for the curious and the tests.
    els.joinCall.hidden = !this.#activeRoom || this.#activeRoom === this.#room;
    if (!inCall) return;
    if (!this.#localTile.isConnected) els.grid.prepend(this.#localTile);
    const people = this.#peers.size + 1;
    els.title.textContent = this.#requested
      ? `Call in ${this.#room} · ${people} ${people === 1 ? 'person' : 'people'}`
      : `Call in ${this.#room} · connecting…`;
    els.grid.dataset.tiles = String(els.grid.childElementCount); // Screen tiles count too.
    els.mute.textContent = this.#mic?.enabled === false ? 'Unmute' : 'Mute';
    els.mute.disabled = !this.#mic;
    els.cameraToggle.textContent = this.#camera?.enabled === false ? 'Camera on' : 'Camera off';
    els.cameraToggle.disabled = !this.#camera;
    els.cameraSelect.disabled = !this.#camera || els.cameraSelect.options.length === 0;
    els.share.textContent = this.#screen ? 'Stop sharing' : 'Share screen';
    els.share.disabled = !navigator.mediaDevices?.getDisplayMedia;
    this.#localTile.classList.toggle('mirror', !this.#screen);
    this.#localFlags.set(this.#localTile, this.#mic?.enabled === false, !this.#screen && this.#camera?.enabled !== true);
    this.#localFlags.setSpeaking(this.#localTile, this.#speaking.has(this.#myId));
  }
}

/**
 * openMedia asks for microphone and camera, settling for one of them if the
 * other is missing or refused. It returns null, and says why, if neither can
 * be had: the page then joins the call to watch and listen.
 */
async function openMedia() {
  if (!navigator.mediaDevices?.getUserMedia) {
    toast('Camera and microphone need a secure page (https: or localhost). You can still watch and listen.', 'info');
    return null;
  }
  let failure = null;
  for (const constraints of [{ audio: true, video: true }, { audio: true }, { video: true }]) {
    try {
      return await navigator.mediaDevices.getUserMedia(constraints);
    } catch (err) {
      failure ??= err;
    }
  }
  toast(`No camera or microphone (${failure.message || failure.name}). You can still watch and listen.`, 'info');
  return null;
}
