// patchbay.js: the Patchbay browser client. A dependency-free ES module.
//
//   import { Patchbay } from "/patchbay.js";
//   const pb = new Patchbay({ url: "wss://pbx.example.com/ws", token });
//   await pb.connect();
//   const call = await pb.call("600");
//   call.on("answered", () => ...).on("hangup", ({ cause, code }) => ...);
//   pb.on("incoming", (c) => c.answer());
//
//   const room = await pb.join("standup");            // or {ticket}, or {number}
//   room.on("participants", (list) => ...).on("video", ({ participantId, stream }) => ...)
//       .on("audio", ({ stream }) => ...);              // the room's mix, from Asterisk
//   room.mute(true); room.camera(false); room.leave();
//
// The wire protocol is described in docs/signalling.md.

/** Stable error codes the server sends; branch on these, never on the text. */
export const ERROR_CODES = Object.freeze([
  "bad_message", "too_large", "rate_limited", "unauthorized", "token_expired",
  "forbidden_destination", "invalid_number", "unknown_call", "duplicate_call",
  "unsupported_media", "no_audio", "unavailable", "internal", "unknown_room",
]);

/** Q.850 codes of the hangup causes this client itself produces. */
export const CAUSES = Object.freeze({
  normal_clearing: 16, user_busy: 17, no_answer: 19, call_rejected: 21,
  unallocated_number: 1, answered_elsewhere: 26, invalid_number_format: 28,
  bearer_capability_not_available: 58, temporary_failure: 41,
});

// Errors that end the call they name: the server will not carry it further.
const CALL_ENDING = Object.freeze({
  forbidden_destination: "call_rejected",
  invalid_number: "invalid_number_format",
  unknown_call: "temporary_failure",
  duplicate_call: "temporary_failure",
  unsupported_media: "bearer_capability_not_available",
  unknown_room: "unallocated_number",
  no_audio: "temporary_failure",
  unavailable: "temporary_failure",
  internal: "temporary_failure",
});

const DIGITS = /^[0-9*#A-D]{1,32}$/;

/** An error with one of ERROR_CODES in .code. */
export class PatchbayError extends Error {
  constructor(code, message, callId) {
    super(message ? `${code}: ${message}` : code);
    this.name = "PatchbayError";
    this.code = code;
    this.callId = callId || "";
  }
}

function newCallId() {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  const b = new Uint8Array(16);
  if (c && typeof c.getRandomValues === "function") c.getRandomValues(b);
  else for (let i = 0; i < b.length; i++) b[i] = Math.floor(Math.random() * 256);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

// Small shared base: EventTarget plus on()/off() taking plain callbacks that
// receive the event detail.
class Emitter extends EventTarget {
  #wrapped = new Map();
  on(type, fn) {
    const w = (e) => fn(e.detail);
    this.#wrapped.set(fn, w);
    this.addEventListener(type, w);
    return this;
  }
  off(type, fn) {
    const w = this.#wrapped.get(fn);
    if (w) this.removeEventListener(type, w);
    return this;
  }
  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

/**
 * One call. Outgoing calls come from Patchbay.call(); incoming calls arrive
 * with the Patchbay "incoming" event and wait for answer() or reject().
 *
 * state: "incoming" | "connecting" | "ringing" | "answered" | "ended".
 * Events: statechange, ringing, answered, hangup {cause, code, error?, local},
 * dtmf {digits}, track {stream}, error (PatchbayError).
 */
export class PatchbayCall extends Emitter {
  #pb;
  #pc = null;
  #ownsStream = false;
  #sendReady = false; // our offer/answer went out: candidates may follow
  #localCandidates = [];
  #remoteCandidates = [];
  #sdpChain = Promise.resolve(); // remote descriptions are applied one at a time, in arrival order
  #lastOffer = ""; // the server's last renegotiation offer and our answer to it
  #lastAnswer = "";

  constructor(pb, id, direction, peer) {
    super();
    this.#pb = pb;
    this.id = id;
    this.direction = direction;
    this.peer = peer;
    this.peerName = "";
    this.state = direction === "incoming" ? "incoming" : "connecting";
    this.muted = false;
    this.localStream = null;
    this.remoteStream = null;
    this.offer = ""; // the server's offer, for incoming calls
    this.cause = "";
    this.code = 0;
  }

  /** Accept an incoming call. opts.stream: a MediaStream to send (else the microphone). */
  async answer(opts = {}) {
    if (this.direction !== "incoming" || this.state !== "incoming") {
      throw new PatchbayError("bad_message", `cannot answer a call in state ${this.state}`, this.id);
    }
    this.#setState("connecting");
    try {
      if (!(await this._attachStream(opts))) return this;
      const pc = this._createPeerConnection();
      await pc.setRemoteDescription({ type: "offer", sdp: this.offer });
      this.#addTracks(pc, true);
      await this.#flushRemoteCandidates();
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      if (this.state === "ended") return this;
      this.#pb._send({ type: "answer", call_id: this.id, sdp: pc.localDescription.sdp });
      this._sendReady();
      this.#setState("answered");
      this.emit("answered", {});
    } catch (err) {
      this._fail(err);
      throw err;
    }
    return this;
  }

  /** Decline an incoming call. */
  reject() {
    if (this.state !== "incoming") return;
    this.#pb._send({ type: "reject", call_id: this.id });
    this._end("call_rejected", CAUSES.call_rejected, { local: true });
  }

  /** End the call (any state). */
  hangup() {
    if (this.state === "ended") return;
    if (this.direction === "incoming" && !this.#sendReady) { // not answered yet: decline
      this.#pb._send({ type: "reject", call_id: this.id });
      this._end("call_rejected", CAUSES.call_rejected, { local: true });
      return;
    }
    if (this.#sendReady) this.#pb._send({ type: "hangup", call_id: this.id });
    this._end("normal_clearing", CAUSES.normal_clearing, { local: true });
  }

  /** Send DTMF digits (0-9 * # A-D, at most 32) to the far end. */
  dtmf(digits) {
    const d = String(digits);
    if (!DIGITS.test(d)) throw new PatchbayError("bad_message", "digits must be 1-32 of 0-9 * # A-D", this.id);
    if (this.state === "ended") throw new PatchbayError("unknown_call", "call has ended", this.id);
    this.#pb._send({ type: "dtmf", call_id: this.id, digits: d });
  }

  /** Mute (true) or unmute (false) the microphone; the call stays up. */
  mute(on = true) {
    this.muted = Boolean(on);
    if (this.localStream) for (const t of this.localStream.getAudioTracks()) t.enabled = !this.muted;
    this.emit("statechange", { state: this.state, muted: this.muted });
  }

  // --- used by Patchbay ---

  // Returns false when the call ended while the microphone was being opened
  // (the user hung up at the permission prompt); the stream is released then.
  async _attachStream(opts) {
    let stream = opts.stream;
    const owned = !stream;
    if (owned) stream = await this.#pb._getUserMedia(opts.audio);
    if (this.state === "ended") {
      if (owned) for (const t of stream.getTracks()) t.stop();
      return false;
    }
    this.localStream = stream;
    this.#ownsStream = owned;
    if (this.muted) this.mute(true);
    return true;
  }

  _createPeerConnection() {
    const PC = this.#pb._RTCPeerConnection;
    if (!PC) throw new PatchbayError("unsupported_media", "this browser has no RTCPeerConnection");
    if (this.state === "ended") throw new PatchbayError("unknown_call", "call has ended", this.id);
    const pc = new PC({ iceServers: this.#pb.iceServers, bundlePolicy: "max-bundle", rtcpMuxPolicy: "require" });
    this.#pc = pc;
    pc.onicecandidate = (e) => {
      if (this.state === "ended") return;
      const c = e.candidate;
      const msg = { type: "candidate", call_id: this.id, candidate: c ? (c.toJSON ? c.toJSON() : c) : null };
      if (this.#sendReady) this.#pb._send(msg);
      else this.#localCandidates.push(msg);
    };
    pc.ontrack = (e) => {
      const MS = globalThis.MediaStream;
      this.remoteStream = (e.streams && e.streams[0]) || (MS ? new MS([e.track]) : null);
      this.emit("track", { stream: this.remoteStream, track: e.track });
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "failed" && this.state !== "ended") {
        this.emit("error", new PatchbayError("no_audio", "media connection failed (ICE/DTLS)", this.id));
        this.hangup();
      }
    };
    return pc;
  }

  _addLocalTracks() {
    this.#addTracks(this.#pc);
  }

  // Answering, addTrack reuses the offer's audio transceiver; with no track
  // the answer stays receive-only (an answer may not add a section).
  #addTracks(pc, answering = false) {
    const tracks = this.localStream ? this.localStream.getAudioTracks() : [];
    if (tracks.length === 0) {
      if (!answering) pc.addTransceiver("audio", { direction: "recvonly" });
      return;
    }
    for (const t of tracks) pc.addTrack(t, this.localStream);
  }

  _sendReady() {
    this.#sendReady = true;
    for (const m of this.#localCandidates.splice(0)) this.#pb._send(m);
  }

  _onServerAnswer(sdp) {
    return this.#serially(async () => {
      if (!this.#pc || this.state === "ended") return;
      try {
        await this.#pc.setRemoteDescription({ type: "answer", sdp });
        await this.#flushRemoteCandidates();
      } catch (err) {
        this._fail(new PatchbayError("unsupported_media", `answer not accepted: ${err.message || err}`, this.id));
      }
    });
  }

  // A server-initiated offer on the live call (a room adding or removing
  // cameras): apply it and answer. Only the server offers after setup; were
  // an offer of ours in flight, we are the polite peer and roll it back.
  _onServerOffer(sdp) {
    return this.#serially(async () => {
      const pc = this.#pc;
      if (!pc || this.state === "ended") return;
      try {
        // The server sends an offer again when our answer is slow: answer it the same way.
        if (sdp === this.#lastOffer && pc.signalingState === "stable") {
          this.#pb._send({ type: "answer", call_id: this.id, sdp: this.#lastAnswer });
          return;
        }
        if (pc.signalingState === "have-local-offer") await pc.setLocalDescription({ type: "rollback" });
        await pc.setRemoteDescription({ type: "offer", sdp });
        await this.#flushRemoteCandidates();
        await pc.setLocalDescription(await pc.createAnswer());
        if (this.state === "ended") return;
        this.#lastOffer = sdp;
        this.#lastAnswer = pc.localDescription.sdp;
        this.#pb._send({ type: "answer", call_id: this.id, sdp: this.#lastAnswer });
      } catch (err) {
        this.emit("error", new PatchbayError("unsupported_media", `server offer not accepted: ${err.message || err}`, this.id));
      }
    });
  }

  #serially(fn) {
    this.#sdpChain = this.#sdpChain.then(fn, fn);
    return this.#sdpChain;
  }

  /** The peer connection's getStats(), or null before it exists. */
  async getStats() {
    return this.#pc ? this.#pc.getStats() : null;
  }

  async _onServerCandidate(c) {
    if (!c || !c.candidate) return; // end of candidates: nothing to do for ICE-lite
    if (c.sdpMid == null && c.sdpMLineIndex == null) c = { ...c, sdpMLineIndex: 0 }; // all bundled
    if (!this.#pc || !this.#pc.remoteDescription) {
      this.#remoteCandidates.push(c);
      return;
    }
    try {
      await this.#pc.addIceCandidate(c);
    } catch (err) {
      this.emit("error", new PatchbayError("bad_message", `bad candidate from server: ${err.message || err}`, this.id));
    }
  }

  async #flushRemoteCandidates() {
    for (const c of this.#remoteCandidates.splice(0)) {
      try {
        await this.#pc.addIceCandidate(c);
      } catch (err) {
        this.emit("error", new PatchbayError("bad_message", `bad candidate from server: ${err.message || err}`, this.id));
      }
    }
  }

  _onServerMessage(m) {
    switch (m.type) {
      case "ringing":
        if (this.state === "connecting") {
          this.#setState("ringing");
          this.emit("ringing", {});
        }
        break;
      case "answered":
        if (this.state === "connecting" || this.state === "ringing") {
          this.#setState("answered");
          this.emit("answered", {});
        }
        break;
      case "dtmf":
        this.emit("dtmf", { digits: m.digits || "" });
        break;
      case "hangup":
        this._end(m.cause || "normal_clearing", m.code || CAUSES.normal_clearing,
          this._redirectedTo ? { local: false, redirected: true } : { local: false });
        break;
      case "error": {
        const err = new PatchbayError(m.error || "internal", m.message || "", this.id);
        this.emit("error", err);
        const cause = CALL_ENDING[err.code];
        if (cause) this._end(cause, CAUSES[cause] || 41, { error: err.code, local: false });
        break;
      }
    }
  }

  _fail(err) {
    const e = err instanceof PatchbayError ? err : new PatchbayError(
      err && err.name === "NotAllowedError" ? "no_audio" : "internal", String((err && err.message) || err), this.id);
    this.emit("error", e);
    if (this.state !== "ended") {
      if (this.#sendReady) this.#pb._send({ type: "hangup", call_id: this.id });
      else if (this.direction === "incoming") this.#pb._send({ type: "reject", call_id: this.id });
      this._end("temporary_failure", CAUSES.temporary_failure, { error: e.code, local: true });
    }
  }

  _end(cause, code, extra = {}) {
    if (this.state === "ended") return;
    this.cause = cause;
    this.code = code;
    this.#setState("ended");
    if (this.#pc) {
      try { this.#pc.close(); } catch { /* already closed */ }
    }
    if (this.#ownsStream && this.localStream) for (const t of this.localStream.getTracks()) t.stop();
    this.#pb._forget(this);
    this.emit("hangup", { cause, code, ...extra });
  }

  _setState(s) {
    this.#setState(s);
  }

  #setState(s) {
    if (this.state === s) return;
    this.state = s;
    this.emit("statechange", { state: s, muted: this.muted });
  }
}

/**
 * A room membership: the room's mixed audio (from Asterisk) both ways, and
 * the other browsers' cameras through Patchbay's SFU. Made by Patchbay.join().
 *
 * state: "connecting" | "joined" | "ended" (and the PatchbayCall states it
 * passes through). participants: Map id → {id, kind "browser"|"phone", name,
 * caller_id, role, muted, talking, you}. tracks: Map participant id →
 * MediaStream of that participant's camera. localVideo: our camera or null.
 * Events: joined {room, participants, you}, participants (array, after any
 * change), participant {event "joined"|"left"|"updated", participant},
 * video {participantId, stream, track}, videoended {participantId}, audio
 * {stream}, speaking {participantId, talking}, hangup, error, statechange.
 */
export class PatchbayRoom extends PatchbayCall {
  constructor(pb, id, target) {
    super(pb, id, "outgoing", target.room || target.number || "ticket");
    this._patchbay = pb;
    this._ownsVideo = false;
    this.target = target;
    this.room = target.room || "";
    this.participants = new Map();
    this.tracks = new Map();
    this.you = "";
    this.localVideo = null;
    this.cameraOn = false;
    this.audioStream = null;
    this.on("track", ({ track, stream }) => this.#onTrack(track, stream));
  }

  /** Participants as an array, you first, then in joining order. */
  get participantList() {
    return [...this.participants.values()].sort((a, b) => (b.you ? 1 : 0) - (a.you ? 1 : 0));
  }

  /** Leave the room. */
  leave() {
    this.hangup();
  }

  /** Turn our camera off (true: on); the video slot stays, sending black. */
  camera(on = true) {
    this.cameraOn = Boolean(on) && Boolean(this.localVideo);
    if (this.localVideo) for (const t of this.localVideo.getVideoTracks()) t.enabled = this.cameraOn;
    this.emit("statechange", { state: this.state, muted: this.muted, camera: this.cameraOn });
  }

  /**
   * Receive statistics: {video: [{participantId, framesDecoded, framesReceived,
   * bytesReceived, width, height}], audio: {packetsReceived, bytesReceived,
   * audioLevel}}.
   */
  async stats() {
    const out = { video: [], audio: { packetsReceived: 0, bytesReceived: 0, audioLevel: 0 } };
    const report = await this.getStats();
    if (!report) return out;
    const owner = new Map();
    for (const [pid, s] of this.tracks) for (const t of s.getVideoTracks()) owner.set(t.id, pid);
    report.forEach((r) => {
      if (r.type !== "inbound-rtp") return;
      if (r.kind === "video") {
        out.video.push({
          participantId: owner.get(r.trackIdentifier) || "", framesDecoded: r.framesDecoded || 0,
          framesReceived: r.framesReceived || 0, bytesReceived: r.bytesReceived || 0,
          width: r.frameWidth || 0, height: r.frameHeight || 0,
        });
      } else if (r.kind === "audio") {
        out.audio.packetsReceived += r.packetsReceived || 0;
        out.audio.bytesReceived += r.bytesReceived || 0;
        out.audio.audioLevel = Math.max(out.audio.audioLevel, r.audioLevel || 0);
      }
    });
    return out;
  }

  // --- used by Patchbay ---

  async _attachCamera(video) {
    if (video === false) return;
    let stream = video instanceof Object && typeof video.getVideoTracks === "function" ? video : null;
    const owned = !stream;
    if (owned) stream = await this._pb()._getCamera();
    if (!stream || stream.getVideoTracks().length === 0) return;
    if (this.state === "ended") {
      if (owned) for (const t of stream.getTracks()) t.stop();
      return;
    }
    this.localVideo = stream;
    this._ownsVideo = owned;
    this.cameraOn = true;
  }

  // A video section always: our camera both ways, or receive-only.
  _addVideo(pc) {
    const cam = this.localVideo && this.localVideo.getVideoTracks()[0];
    if (cam) pc.addTransceiver(cam, { direction: "sendrecv", streams: [this.localVideo] });
    else pc.addTransceiver("video", { direction: "recvonly" });
  }

  _pb() {
    return this._patchbay;
  }

  _onServerMessage(m) {
    switch (m.type) {
      case "joined": {
        this.room = m.room || this.room;
        this.participants.clear();
        for (const p of m.participants || []) this.participants.set(p.id, { ...p });
        if (m.participant) {
          this.you = m.participant.id;
          this.participants.set(m.participant.id, { ...m.participant, you: true });
        }
        this._setState("joined");
        this.emit("joined", { room: this.room, participants: this.participantList, you: this.you });
        this.emit("participants", this.participantList);
        return;
      }
      case "room": {
        const p = m.participant;
        if (m.event === "ended") {
          this.emit("participant", { event: "ended", participant: null });
          return;
        }
        if (!p || !p.id) return;
        if (m.event === "left") {
          this.participants.delete(p.id);
          this.#dropVideo(p.id);
        } else {
          const before = this.participants.get(p.id);
          this.participants.set(p.id, { ...p, you: p.id === this.you });
          if (!before || before.talking !== p.talking) this.emit("speaking", { participantId: p.id, talking: Boolean(p.talking) });
        }
        this.emit("participant", { event: m.event, participant: p });
        this.emit("participants", this.participantList);
        return;
      }
      case "answered": // a room has no far end to pick up
        return;
    }
    super._onServerMessage(m);
  }

  _end(cause, code, extra = {}) {
    if (this.state === "ended") return;
    if (this._ownsVideo && this.localVideo) for (const t of this.localVideo.getTracks()) t.stop();
    for (const id of [...this.tracks.keys()]) this.#dropVideo(id);
    super._end(cause, code, extra);
  }

  #onTrack(track, stream) {
    if (track.kind === "audio") {
      this.audioStream = stream;
      this.emit("audio", { stream });
      return;
    }
    // The SFU names each forwarded camera's stream after its participant.
    const pid = stream && stream.id;
    if (!pid || pid === this.you) return;
    this.tracks.set(pid, stream);
    stream.onremovetrack = () => {
      if (this.tracks.get(pid) === stream && stream.getVideoTracks().length === 0) this.#dropVideo(pid);
    };
    this.emit("video", { participantId: pid, stream, track });
  }

  #dropVideo(pid) {
    if (!this.tracks.has(pid)) return;
    this.tracks.delete(pid);
    this.emit("videoended", { participantId: pid });
  }
}

/**
 * A connection to Patchbay.
 *
 * options: url (wss://host/ws), token (JWT), audio (getUserMedia audio
 * constraints, e.g. {echoCancellation:false}), iceServers (override those from
 * the server), pingInterval (ms, default 20000). For tests: WebSocket,
 * RTCPeerConnection and getUserMedia replace the browser's.
 *
 * status: "idle" | "connecting" | "connected" | "closed".
 * Events: statechange {status}, connected (authed message), incoming
 * (PatchbayCall), error (PatchbayError), close {code, reason}.
 */
export class Patchbay extends Emitter {
  #ws = null;
  #calls = new Map();
  #pingTimer = null;
  #awaitingPong = false;
  #lastErrorCode = "";
  #iceOverride = false;

  constructor(options = {}) {
    super();
    if (!options.url) throw new PatchbayError("bad_message", "Patchbay needs a url (wss://host/ws)");
    this.url = options.url;
    this.token = options.token || "";
    this.audio = options.audio || { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
    this.iceServers = options.iceServers || [];
    this.#iceOverride = Boolean(options.iceServers);
    this.pingInterval = options.pingInterval ?? 20000;
    this.status = "idle";
    this.user = "";
    this.display = "";
    this.session = "";
    this._WebSocket = options.WebSocket || globalThis.WebSocket;
    this._RTCPeerConnection = options.RTCPeerConnection || globalThis.RTCPeerConnection;
    this._gum = options.getUserMedia || null;
  }

  /** Live calls by id. */
  get calls() {
    return new Map(this.#calls);
  }

  /** Open the socket and authenticate. Resolves with the server's "authed" message. */
  connect() {
    if (this.status === "connecting" || this.status === "connected") {
      return Promise.reject(new PatchbayError("bad_message", `already ${this.status}`));
    }
    if (!this._WebSocket) return Promise.reject(new PatchbayError("unavailable", "this browser has no WebSocket"));
    if (!this.token) return Promise.reject(new PatchbayError("unauthorized", "no token"));
    this.#setStatus("connecting");
    this.#lastErrorCode = "";
    return new Promise((resolve, reject) => {
      let settled = false;
      let ws;
      try {
        ws = new this._WebSocket(this.url);
      } catch (err) {
        this.#setStatus("closed");
        reject(new PatchbayError("unavailable", `cannot open ${this.url}: ${err.message || err}`));
        return;
      }
      this.#ws = ws;
      ws.onopen = () => ws.send(JSON.stringify({ type: "auth", token: this.token }));
      ws.onmessage = (ev) => {
        let m;
        try {
          m = JSON.parse(ev.data);
        } catch {
          m = null;
        }
        if (!m || typeof m !== "object" || typeof m.type !== "string") {
          this.emit("error", new PatchbayError("bad_message", "server sent a frame that is not a message"));
          return;
        }
        if (!settled && m.type === "authed") {
          settled = true;
          this.user = m.user || "";
          this.display = m.display || "";
          this.session = m.session || "";
          if (!this.#iceOverride) this.iceServers = m.ice_servers || [];
          this.#setStatus("connected");
          this.#startPing();
          this.emit("connected", m);
          resolve(m);
          return;
        }
        if (!settled && m.type === "error") {
          settled = true;
          this.#lastErrorCode = m.error || "";
          const err = new PatchbayError(m.error || "unauthorized", m.message || "");
          this.emit("error", err);
          reject(err);
          return;
        }
        this.#onMessage(m);
      };
      ws.onclose = (ev) => {
        if (this.#ws !== ws) return;
        this.#closed(ev.code, ev.reason || "");
        if (!settled) {
          settled = true;
          reject(new PatchbayError(ev.reason || this.#lastErrorCode || "unavailable",
            `connection closed (${ev.code}) before authentication`));
        }
      };
      ws.onerror = () => { /* onclose follows with the details */ };
    });
  }

  /**
   * Place a call. opts.stream: a MediaStream to send (else the microphone with
   * this.audio constraints, or opts.audio); opts.callerId: one of the token's
   * caller_ids (E.164) to present on an outside call. Resolves once the offer is sent.
   */
  async call(to, opts = {}) {
    if (this.status !== "connected") throw new PatchbayError("unavailable", "not connected");
    const dest = String(to || "").trim();
    if (!dest || dest.length > 64) throw new PatchbayError("invalid_number", "enter a number of at most 64 characters");
    const call = new PatchbayCall(this, newCallId(), "outgoing", dest);
    this.#calls.set(call.id, call);
    try {
      if (!(await call._attachStream(opts))) return call;
      const pc = call._createPeerConnection();
      call._addLocalTracks();
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      if (call.state === "ended") return call; // hung up meanwhile; _end closed pc
      const msg = { type: "call", call_id: call.id, to: dest, sdp: pc.localDescription.sdp };
      if (opts.callerId) msg.caller_id = String(opts.callerId);
      this._send(msg);
      call._sendReady();
    } catch (err) {
      call._fail(err);
      throw err;
    }
    return call;
  }

  /**
   * Join a room: target is a room name, or { room }, { ticket } or
   * { number }. opts.stream: a MediaStream whose audio goes to the room (else
   * the microphone); opts.video: false for no camera, a MediaStream to send,
   * or true (default) to open the camera, falling back to receive-only video.
   * Resolves with the PatchbayRoom once the join is sent; "joined" follows.
   */
  async join(target, opts = {}) {
    if (this.status !== "connected") throw new PatchbayError("unavailable", "not connected");
    const t = typeof target === "string" ? { room: target } : { ...(target || {}) };
    const fields = {};
    for (const k of ["room", "ticket", "number"]) if (t[k]) fields[k] = String(t[k]).trim();
    if (Object.keys(fields).length !== 1) throw new PatchbayError("bad_message", "join needs exactly one of room, ticket or number");
    const room = new PatchbayRoom(this, newCallId(), fields);
    this.#calls.set(room.id, room);
    try {
      if (!(await room._attachStream(opts))) return room;
      await room._attachCamera(opts.video ?? true);
      if (room.state === "ended") return room;
      const pc = room._createPeerConnection();
      room._addLocalTracks();
      room._addVideo(pc);
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      if (room.state === "ended") return room;
      this._send({ type: "join", call_id: room.id, ...fields, sdp: pc.localDescription.sdp });
      room._sendReady();
    } catch (err) {
      room._fail(err);
      throw err;
    }
    return room;
  }

  /** Hang up every call and close the connection. */
  close() {
    for (const c of this.#calls.values()) c.hangup();
    const ws = this.#ws;
    if (ws) {
      try { ws.close(1000); } catch { /* already closing */ }
    }
    this.#closed(1000, "");
  }

  // --- internals shared with PatchbayCall ---

  _send(msg) {
    const ws = this.#ws;
    if (!ws || ws.readyState !== 1) return false;
    ws.send(JSON.stringify(msg));
    return true;
  }

  async _getCamera() {
    const constraints = { audio: false, video: { width: { ideal: 640 }, height: { ideal: 360 } } };
    if (this._gum) return this._gum(constraints);
    const md = globalThis.navigator && globalThis.navigator.mediaDevices;
    if (!md || !md.getUserMedia) return null;
    try {
      return await md.getUserMedia(constraints);
    } catch {
      return null; // no camera or no permission: the room is still seen and heard
    }
  }

  async _getUserMedia(audio) {
    const constraints = { audio: audio || this.audio, video: false };
    if (this._gum) return this._gum(constraints);
    const md = globalThis.navigator && globalThis.navigator.mediaDevices;
    if (!md || !md.getUserMedia) throw new PatchbayError("no_audio", "no microphone access here (needs https)");
    try {
      return await md.getUserMedia(constraints);
    } catch (err) {
      throw new PatchbayError("no_audio", `microphone not available: ${err.name || err}`);
    }
  }

  _forget(call) {
    this.#calls.delete(call.id);
  }

  #onMessage(m) {
    if (m.type === "pong") {
      this.#awaitingPong = false;
      return;
    }
    if (m.type === "incoming") {
      if (!m.call_id || this.#calls.has(m.call_id)) return;
      const call = new PatchbayCall(this, m.call_id, "incoming", m.from || "");
      call.peerName = m.from_name || "";
      call.offer = m.sdp || "";
      this.#calls.set(call.id, call);
      this.emit("incoming", call);
      return;
    }
    if (m.type === "redirect") {
      this.#followRedirect(m);
      return;
    }
    const call = m.call_id ? this.#calls.get(m.call_id) : null;
    if (m.type === "error") {
      this.#lastErrorCode = m.error || "";
      const err = new PatchbayError(m.error || "internal", m.message || "", m.call_id);
      if (call) call._onServerMessage(m);
      else this.emit("error", err);
      return;
    }
    if (!call) return; // a late message for a call that already ended
    switch (m.type) {
      case "answer":
        call._onServerAnswer(m.sdp || "");
        break;
      case "offer":
        call._onServerOffer(m.sdp || "");
        break;
      case "candidate":
        call._onServerCandidate(m.candidate);
        break;
      default:
        call._onServerMessage(m);
    }
  }

  // A room lives on one node of a cluster (docs/cluster.md); the node this page reached names the one holding it.
  // The join moves there: a second Patchbay to m.url, with the same token, joins again (with the fresh one-time
  // ticket the redirect carries, if any). The old room ends (the hangup that follows has redirected: true); its
  // "redirect" event, and this Patchbay's, hand over {url, room, patchbay}: the new PatchbayRoom and its
  // connection (room null when joining there failed). This connection stays, for calls.
  async #followRedirect(m) {
    const old = this.#calls.get(m.call_id);
    if (!(old instanceof PatchbayRoom) || old.state === "ended" || !m.url) return;
    old._redirectedTo = m.url;
    try {
      const next = new Patchbay({
        url: m.url, token: this.token, audio: this.audio, pingInterval: this.pingInterval,
        iceServers: this.#iceOverride ? this.iceServers : undefined,
        WebSocket: this._WebSocket, RTCPeerConnection: this._RTCPeerConnection, getUserMedia: this._gum || undefined,
      });
      await next.connect();
      const room = await next.join(m.ticket ? { ticket: m.ticket } : old.target, { video: Boolean(old.localVideo) });
      const detail = { url: m.url, room, patchbay: next };
      old.emit("redirect", detail);
      this.emit("redirect", detail);
    } catch (err) {
      old.emit("error", err instanceof PatchbayError ? err
        : new PatchbayError("unavailable", `could not join the room on ${m.url}: ${err.message || err}`, old.id));
      old.emit("redirect", { url: m.url, room: null, patchbay: null });
    }
  }

  #startPing() {
    this.#stopPing();
    if (!this.pingInterval) return;
    this.#pingTimer = setInterval(() => {
      if (this.#awaitingPong) { // a whole interval without a pong: the path is dead
        this.emit("error", new PatchbayError("unavailable", "no pong from the server"));
        try { this.#ws.close(1000); } catch { /* closing anyway */ }
        this.#closed(1006, "unavailable");
        return;
      }
      this.#awaitingPong = this._send({ type: "ping" });
    }, this.pingInterval);
  }

  #stopPing() {
    if (this.#pingTimer) clearInterval(this.#pingTimer);
    this.#pingTimer = null;
    this.#awaitingPong = false;
  }

  #closed(code, reason) {
    if (this.status === "closed") return;
    this.#stopPing();
    this.#ws = null;
    const why = reason || this.#lastErrorCode;
    for (const c of this.#calls.values()) {
      c._end("temporary_failure", CAUSES.temporary_failure, { error: why || "unavailable", local: true });
    }
    this.#setStatus("closed");
    this.emit("close", { code, reason: why });
  }

  #setStatus(s) {
    this.status = s;
    this.emit("statechange", { status: s });
  }
}

export default Patchbay;
