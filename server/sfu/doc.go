// Package sfu forwards a call's media through the server (a selective
// forwarding unit) on pion/webrtc v4: each peer sends its audio, camera
// and screen once, and the server sends them on to every other peer of
// the call.
//
// # One peer connection per participant, the server the only offerer
//
// Each participant has one peer connection to the server, used both ways,
// and only the server ever makes an offer. One connection rather than a
// publish/subscribe pair (LiveKit, ion-sfu) halves the ICE and DTLS
// handshakes, the ports and pion's goroutines per participant, and keeps
// the page's code what it is in the mesh: one RTCPeerConnection per
// remote, answering offers. Two connections exist elsewhere to avoid glare
// when both sides offer; here the page never offers: it publishes into
// transceivers the server created up front, and starts or stops its media
// with replaceTrack, which needs no negotiation. Glare cannot happen, and
// no rollback is needed.
//
// # Signalling (signal frames between the page and peer id "sfu")
//
// data is JSON, in the shapes the mesh uses:
//
//	{"kind":"offer","sdp":"...","tracks":{"3":{"id":"b7","media":"camera"}, ...}}   server → page
//	{"kind":"answer","sdp":"..."}                                                    page → server
//	{"kind":"ice","candidate":{"candidate":"...","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"..."}}   both ways
//
// Candidates trickle both ways (RTCIceCandidate.toJSON on the page,
// ICECandidate.ToJSON here); a null candidate is ignored. Offers for one
// peer are serialised (the next waits for the answer to the previous)
// and debounced by negotiateDelay, so a burst of joins is one
// renegotiation per peer connection. A page must answer every offer, at
// once, and within answerTimeout, or its peer is dropped.
//
// # Transceivers
//
// The first offer starts with three recvonly transceivers on the server's
// side, in this order, which are the page's to send on:
//
//	mid "0"  audio    the microphone
//	mid "1"  video    the camera
//	mid "2"  video    the screen share
//
// On the first offer the page calls setRemoteDescription, then for each of
// these three transceivers sets direction = "sendonly" (or calls addTrack
// audio, camera, screen in that order, which takes them in order), then
// answers. From then on it starts, switches and stops its media with
// transceiver.sender.replaceTrack(track or null). A transceiver sending
// nothing costs nothing; the server forwards a track from its first
// packet on. The server never stops forwarding a track while its peer is
// in the call; the page learns from the media frames (PROTOCOL.md)
// whether a peer's camera or screen is on.
//
// Every other transceiver (mids "3" and up) is sendonly from the server:
// one forwarded track each. Its msid is "<publisher id> <media>": the
// stream id is the publishing peer's id, the track id is "audio",
// "camera" or "screen". Because browsers do not all take a remote track's
// id from msid, every offer also lists, in "tracks", each forwarded
// track's publisher and media by the mid of its transceiver; a page
// should read event.transceiver.mid in ontrack and look it up there. When
// a publisher leaves, its tracks' transceivers go inactive in the next
// offer (the page's remote tracks end; their streams fire removetrack);
// pion cannot reuse or reject them, so they stay in the SDP as inactive
// m-sections.
//
// # Forwarding
//
// Each published track is read once by its forwarder goroutine, which
// strips the header extensions (their ids and meaning belong to the
// publisher's connection) and writes the packet to one
// TrackLocalStaticRTP per subscriber (each with its own SSRC and payload
// type, rewritten by pion). Host mute (Peer.SetAudioMuted) drops a peer's
// audio there. Sequence numbers and timestamps are the publisher's, so one
// retransmission buffer per published video track (rtxSlots packets)
// answers every subscriber's NACKs; pion's NACK responder, which keeps a
// buffer per subscriber and per track, is not used. Picture-loss requests
// and FIRs from subscribers reach the publisher, throttled to one per
// keyframeGap per track; a new subscriber triggers one too.
//
// # Speakers
//
// The RFC 6464 audio level header extension is negotiated for audio; each
// published audio track's levels are judged every speakerInterval
// (LiveKit's rule: active when at least 40 % of the packets are at or
// louder than −35 dBov), and Call's onSpeakers gets the ids of the peers
// speaking, loudest first, when the list changes. A host-muted peer is
// never a speaker.
//
// # Locks
//
// SFU.mu, then Call.mu. Peer.negMu is taken before Call.mu (a negotiation
// reads the call's tracks). Peer.schedMu, Peer.outMu, upTrack.downMu and
// upTrack.kfMu are leaves. The forwarding path takes no lock but pion's
// own and the retransmission buffer's; send and onSpeakers are called
// with no lock held.
package sfu
