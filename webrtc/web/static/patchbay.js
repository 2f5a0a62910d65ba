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
  "bad_message", "too_large", "rate_limited", "unauthorized", "token_expired", "too_many_connections",
  "forbidden_destination", "invalid_number", "unknown_call", "duplicate_call",
  "unsupported_media", "no_audio", "unavailable", "internal", "unknown_room", "invalid_ticket", "share_busy",
  "call_rate_limited", "too_many_calls", "budget_exhausted", "max_duration", "forbidden_caller_id", "not_allowed", "transfer_failed",
]);

/**
 * Codes this client makes itself (never sent by the server): turn_refused (the TURN server refused the
 * credentials, e.g. they expired) and no_path (no network path to Patchbay or the relay worked).
 */
export const CLIENT_CODES = Object.freeze(["turn_refused", "no_path"]);

/** Q.850 codes of the hangup causes this client itself produces. */
export const CAUSES = Object.freeze({
  normal_clearing: 16, user_busy: 17, no_answer: 19, call_rejected: 21,
  unallocated_number: 1, answered_elsewhere: 26, invalid_number_format: 28,
  bearer_capability_not_available: 58, temporary_failure: 41, incompatible_destination: 88,
  recovery_on_timer_expire: 102, media_timeout: 41, signalling_lost: 41,
});

/**
 * Errors that end the call they name, with the hangup cause the server sends right after them (docs/signalling.md,
 * "Errors that end a call"; the same table as wire.CauseForCode). The server also marks them "final": true.
 */
export const FINAL_CODES = Object.freeze({
  forbidden_destination: "call_rejected",
  invalid_number: "invalid_number_format",
  unsupported_media: "incompatible_destination",
  no_audio: "media_timeout",
  unavailable: "temporary_failure",
  internal: "temporary_failure",
  call_rate_limited: "call_rejected",
  too_many_calls: "call_rejected",
  budget_exhausted: "call_rejected",
  max_duration: "recovery_on_timer_expire",
  forbidden_caller_id: "call_rejected",
  unknown_room: "unallocated_number",
  invalid_ticket: "call_rejected",
  token_expired: "normal_clearing",
});

// The server no longer knows a call we think is live: it is over for us too. Not duplicate_call: that refuses a
// second offer under a live call's id, and the live call goes on (docs/signalling.md).
const LOST_CODES = Object.freeze({ unknown_call: "temporary_failure" });

// Close reasons after which reconnecting cannot help.
const FATAL_CLOSE = new Set(["unauthorized", "token_expired", "too_large", "rate_limited", "too_many_connections"]);

// TURN REST usernames are "EXPIRY:USER": the expiry in ms, or 0.
function turnExpiry(servers) {
  let min = 0;
  for (const s of servers || []) {
    const e = Number(String(s.username || "").split(":")[0]) * 1000;
    if (e > 0 && (!min || e < min)) min = e;
  }
  return min;
}

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

// Our offers name Opus first and G.711 second, and nothing else: the server answers Opus when the far end
// is another browser or a room, and G.711 untouched for phones (docs/signalling.md, "Codecs").
const CODEC_ORDER = ["audio/opus", "audio/PCMU", "audio/PCMA"];
function preferCodecs(pc) {
  const caps = globalThis.RTCRtpReceiver && RTCRtpReceiver.getCapabilities && RTCRtpReceiver.getCapabilities("audio");
  if (!caps) return;
  const codecs = [];
  for (const mime of CODEC_ORDER) {
    for (const c of caps.codecs) if (c.mimeType.toLowerCase() === mime.toLowerCase()) codecs.push(c);
  }
  for (const t of pc.getTransceivers()) {
    const kind = t.receiver && t.receiver.track && t.receiver.track.kind;
    if (kind !== "audio" || !t.setCodecPreferences || codecs.length === 0) continue;
    try {
      t.setCodecPreferences(codecs);
    } catch (_) { /* keep the browser's own order */ }
  }
}

// The codec a call carries, from the server's SDP ("opus/48000", "PCMU/8000"), for the call panel.
export function sdpCodec(sdp) {
  const audio = String(sdp || "").split("m=audio")[1];
  if (!audio) return "";
  const pt = (audio.split("\r\n")[0] || "").trim().split(/\s+/)[2]; // " 9 UDP/TLS/RTP/SAVPF 111"
  const m = audio.match(new RegExp("a=rtpmap:" + pt + " ([^/\\s]+)/(\\d+)"));
  if (m) return m[1] + "/" + m[2];
  return pt === "0" ? "PCMU/8000" : pt === "8" ? "PCMA/8000" : "";
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
  #opts = {}; // per-call options: iceServers, iceTransportPolicy, answerFilter
  #restartTimer = null; // ICE restart scheduled after "disconnected"
  #restartDeadline = 0; // give up on the media path after this (ms since epoch)
  #restartPending = false; // restart once signalling is back
  #restarting = false;
  #mediaUp = false;

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
    this.iceErrors = []; // icecandidateerror events: {errorCode, errorText, url}
    this.restarts = 0; // ICE restarts sent
    this.network = "ok"; // "ok" | "reconnecting": media or signalling is being restored
    this.codec = ""; // what the server's SDP carries: "opus/48000" or "PCMU/8000"
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
      this.codec = sdpCodec(this.offer);
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

  // --- contact center: hold, transfer, recording, supervision (docs/signalling.md "Contact center") ---

  /** Put the far party on hold (it hears music on hold); the microphone pauses until resume(). */
  hold() {
    this.#cti("hold");
    this.#pauseMic(true);
  }

  /** Take the far party off hold. */
  resume() {
    this.#cti("resume");
    this.#pauseMic(false);
  }

  /** Blind transfer to a number or user (to: string), or attended: join with your other call (to: a PatchbayCall). */
  transfer(to, opts = {}) {
    if (to instanceof PatchbayCall) return this.#cti("transfer", { target: to.id });
    const msg = { to: String(to || "").trim() };
    if (opts.callerId) msg.caller_id = String(opts.callerId);
    return this.#cti("transfer", msg);
  }

  /** Start (true) or stop (false) recording the call (agents). */
  record(on = true) {
    return this.#cti("record", { action: on ? "start" : "stop" });
  }

  /** On a supervision (Patchbay.supervise): switch to "listen", "whisper" or "barge". */
  supervise(mode) {
    this.mode = mode;
    return this.#cti("supervise", { mode });
  }

  #cti(type, fields = {}) {
    if (this.state === "ended") throw new PatchbayError("unknown_call", "call has ended", this.id);
    this.#pb._send({ type, call_id: this.id, ...fields });
  }

  #pauseMic(paused) {
    if (this.localStream) for (const t of this.localStream.getAudioTracks()) t.enabled = !paused && !this.muted;
  }

  // held/resumed/transferred/recording from the server: state on the call, and an event of the same name.
  _onCTIMessage(m) {
    switch (m.type) {
      case "held":
      case "resumed": {
        const on = m.type === "held";
        if (m.by === "far") this.heldByFar = on;
        else this.held = on;
        this.emit(m.type, { by: m.by || "you" });
        return true;
      }
      case "transferred":
        this.emit("transferred", { by: m.by || "you", to: m.to || "" });
        return true;
      case "recording":
        this.recording = m.event === "started";
        this.emit("recording", { recording: this.recording });
        return true;
    }
    return false;
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

  _createPeerConnection(opts = {}) {
    const PC = this.#pb._RTCPeerConnection;
    if (!PC) throw new PatchbayError("unsupported_media", "this browser has no RTCPeerConnection");
    if (this.state === "ended") throw new PatchbayError("unknown_call", "call has ended", this.id);
    this.#opts = opts;
    let gathered = 0; // local candidates so far
    const config = { iceServers: opts.iceServers || this.#pb.iceServers, bundlePolicy: "max-bundle", rtcpMuxPolicy: "require" };
    if (opts.iceTransportPolicy) config.iceTransportPolicy = opts.iceTransportPolicy;
    const pc = new PC(config);
    this.#pc = pc;
    pc.onicecandidateerror = (e) => {
      const err = { errorCode: e.errorCode || 0, errorText: e.errorText || "", url: e.url || "" };
      this.iceErrors.push(err);
      this.emit("iceerror", err);
      // Relay only and the relay refuses our credentials: nothing else can work; say so now rather than when
      // the media timers run out (other TURN URLs get a second to answer first).
      if ((err.errorCode === 401 || err.errorCode === 403) && opts.iceTransportPolicy === "relay") {
        setTimeout(() => {
          if (this.state !== "ended" && !this.#mediaUp && gathered === 0) this.#mediaFailed();
        }, 1000);
      }
    };
    pc.oniceconnectionstatechange = () => this.#onICEState(pc);
    pc.onicecandidate = (e) => {
      if (this.state === "ended") return;
      const c = e.candidate;
      if (c && c.candidate) gathered++;
      // Relay only and the relay gave us nothing (refused credentials, blocked ports): no path can ever work.
      if (!c && gathered === 0 && opts.iceTransportPolicy === "relay" && !this.#mediaUp) {
        setTimeout(() => this.state !== "ended" && !this.#mediaUp && this.#mediaFailed(), 0);
      }
      const msg = { type: "candidate", call_id: this.id, candidate: c ? (c.toJSON ? c.toJSON() : c) : null };
      if (this.#sendReady) this.#pb._send(msg);
      else this.#localCandidates.push(msg);
    };
    pc.ontrack = (e) => {
      const MS = globalThis.MediaStream;
      this.remoteStream = (e.streams && e.streams[0]) || (MS ? new MS([e.track]) : null);
      this.emit("track", { stream: this.remoteStream, track: e.track, streams: e.streams ? [...e.streams] : [] });
    };
    return pc;
  }

  // ICE restarts: "disconnected" for 2 s or "failed" sends a restart offer (new ufrag/pwd) over signalling; the
  // server answers and media moves to whatever path works now. DTLS and the call stay. Without a working path by
  // the deadline the call ends with no_audio (or turn_refused when the relay refused our credentials).
  #onICEState(pc) {
    if (pc !== this.#pc || this.state === "ended") return;
    const s = pc.iceConnectionState;
    if (s === "connected" || s === "completed") {
      clearTimeout(this.#restartTimer);
      this.#restartTimer = null;
      this.#restartDeadline = 0;
      this.#mediaUp = true;
      if (this.network !== "ok") {
        this.network = "ok";
        this.#restarting = false;
        this.emit("reconnected", { restarts: this.restarts });
      }
      return;
    }
    if (s === "disconnected" || s === "failed") {
      if (!this.#restartDeadline) this.#restartDeadline = Date.now() + this.#pb.restartTimeout;
      if (this.network === "ok") {
        this.network = "reconnecting";
        this.emit("reconnecting", { reason: "media", state: s });
      }
      if (s === "failed") this.#restartIce();
      else if (!this.#restartTimer) this.#restartTimer = setTimeout(() => this.#restartIce(), 2000);
    }
  }

  async #restartIce() {
    clearTimeout(this.#restartTimer);
    this.#restartTimer = null;
    const pc = this.#pc;
    if (!pc || this.state === "ended" || !pc.remoteDescription) return;
    const st = pc.iceConnectionState;
    if (st === "connected" || st === "completed") return;
    if (this.#restartDeadline && Date.now() > this.#restartDeadline) {
      this.#mediaFailed();
      return;
    }
    // Retry every 5 s until the deadline; a restart needs signalling, so it waits for a resume.
    this.#restartTimer = setTimeout(() => this.#restartIce(), 5000);
    // A restart needs the server's answer; over a socket that is itself cut (the link is down) both would sit in
    // TCP retransmission and outlast the outage, while the old path comes back by itself. So restart only once a
    // ping proves the socket alive; a dead socket is reconnected (ping timeout) and resumed, then we restart.
    if (this.#pb.status !== "connected" || !(await this.#pb._alive(1500))) {
      this.#restartPending = true;
      return;
    }
    if (this.state === "ended") return;
    const now = pc.iceConnectionState;
    if (now === "connected" || now === "completed") return; // the old path came back meanwhile
    this.#restartPending = false;
    await this.#serially(async () => {
      if (this.state === "ended") return;
      try {
        // Our last restart offer got no answer (signalling dropped after it): take it back and offer again.
        if (pc.signalingState === "have-local-offer" && this.#restarting) await pc.setLocalDescription({ type: "rollback" });
        if (pc.signalingState !== "stable") return;
        this.#restarting = true;
        if (!this.#opts.iceServers && typeof pc.setConfiguration === "function") {
          // Fresh TURN credentials for the new allocation.
          try { pc.setConfiguration({ ...pc.getConfiguration(), iceServers: this.#pb.iceServers }); } catch { /* keep the old ones */ }
        }
        const offer = await pc.createOffer({ iceRestart: true });
        await pc.setLocalDescription(offer);
        if (this.state === "ended") return;
        this.restarts++;
        this.#pb._send({ type: "offer", call_id: this.id, sdp: pc.localDescription.sdp });
        this.emit("icerestart", { restarts: this.restarts });
      } catch (err) {
        this.emit("error", new PatchbayError("internal", `ICE restart failed: ${err.message || err}`, this.id));
      }
    });
  }

  #mediaFailed() {
    const refused = this.iceErrors.find((e) => e.errorCode === 401 || e.errorCode === 403 || e.errorCode === 701 && /auth/i.test(e.errorText));
    const exp = turnExpiry(this.#opts.iceServers || this.#pb.iceServers);
    let err;
    if (refused || (this.#opts.iceTransportPolicy === "relay" && exp && exp < Date.now())) {
      err = new PatchbayError("turn_refused", refused
        ? `the TURN server refused our credentials (${refused.errorCode} ${refused.errorText})${exp && exp < Date.now() ? ": they expired" : ""}`
        : `the TURN credentials expired at ${new Date(exp).toISOString()}`, this.id);
    } else {
      err = new PatchbayError(this.#mediaUp ? "no_audio" : "no_path",
        this.#mediaUp ? "the media connection was lost and could not be restored" : "no network path to Patchbay worked (UDP, TCP and relay)", this.id);
    }
    this.emit("error", err);
    this.hangup();
  }

  // Signalling came back after a drop (the server gave this call back): restart ICE if the media path broke
  // meanwhile.
  _resumed() {
    this.emit("resumed", {});
    const pc = this.#pc;
    if (!pc) return;
    const s = pc.iceConnectionState;
    if (this.#restartPending || s === "disconnected" || s === "failed") this.#restartIce();
    else if (this.network !== "ok" && (s === "connected" || s === "completed")) {
      this.network = "ok";
      this.emit("reconnected", { restarts: this.restarts });
    }
  }

  // Signalling dropped: the server holds the call for the resume grace.
  _signallingLost() {
    if (this.network === "ok") {
      this.network = "reconnecting";
      this.emit("reconnecting", { reason: "signalling" });
    }
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
    } else {
      for (const t of tracks) pc.addTrack(t, this.localStream);
    }
    if (!answering) preferCodecs(pc);
  }

  _sendReady() {
    this.#sendReady = true;
    for (const m of this.#localCandidates.splice(0)) this.#pb._send(m);
  }

  _onServerAnswer(sdp) {
    return this.#serially(async () => {
      if (!this.#pc || this.state === "ended") return;
      const ss = this.#pc.signalingState;
      if (ss && ss !== "have-local-offer") return; // a late duplicate: nothing to apply
      if (this.#opts.answerFilter) sdp = this.#opts.answerFilter(sdp);
      try {
        await this.#pc.setRemoteDescription({ type: "answer", sdp });
        this.codec = sdpCodec(sdp);
        this.emit("statechange", { state: this.state, muted: this.muted, codec: this.codec });
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
    if (this._onCTIMessage(m)) return;
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
        // The server gave up on media that never came: if the relay refused us, that is the reason to show.
        if (!this.#mediaUp && this.iceErrors.some((e) => e.errorCode === 401 || e.errorCode === 403)) {
          this.emit("error", new PatchbayError("turn_refused", "the TURN server refused our credentials", this.id));
        }
        this._end(m.cause || "normal_clearing", m.code || CAUSES.normal_clearing,
          this._redirectedTo ? { local: false, redirected: true } : { local: false });
        break;
      case "error": {
        const err = new PatchbayError(m.error || "internal", m.message || "", this.id);
        this.emit("error", err);
        // Final: the call is over (a hangup follows, and is ignored); stop trickling at once so the server
        // never answers our candidates with unknown_call. Only "final" says so: a refused transfer or hold
        // carries a call-ending code (forbidden_destination, invalid_number) about a call that goes on.
        const cause = m.final ? (FINAL_CODES[err.code] || "temporary_failure") : LOST_CODES[err.code];
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
    clearTimeout(this.#restartTimer);
    this.#restartTimer = null;
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
 * {stream}, speaking {participantId, talking}, screen {participantId, stream,
 * track} (a participant's screen share arrived), screenended {participantId},
 * sharing {sharing} (our own share started or stopped), hangup, error,
 * statechange.
 *
 * Screen sharing: shareScreen() sends the screen on the second video section
 * the join offer reserved, once the room made us its one sharer; stopShare()
 * ends it; stopShareOf(id) is a moderator's stop of another's. screens: Map
 * participant id → MediaStream of that participant's screen.
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
    // Screen sharing: screens maps a participant id to the MediaStream of its screen share; sharing says our
    // own screen is being sent (screenStream); _screenTx is the video transceiver our join offer reserved for it.
    this.screens = new Map();
    this.sharing = false;
    this.screenStream = null;
    this._screenTx = null;
    this._shareClaim = null; // {resolve, reject, timer} while a "share" "start" awaits the room's word
    this.on("track", ({ track, stream, streams }) => this.#onTrack(track, stream, streams));
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
   * Receive statistics: {video: [{participantId, screen, framesDecoded, framesReceived,
   * bytesReceived, width, height, codec}], audio: {packetsReceived, bytesReceived,
   * audioLevel}}. screen: the entry is that participant's screen share, not its
   * camera; codec: the decoded codec's MIME type ("video/VP8").
   */
  async stats() {
    const out = { video: [], audio: { packetsReceived: 0, bytesReceived: 0, audioLevel: 0 } };
    const report = await this.getStats();
    if (!report) return out;
    const owner = new Map();
    for (const [pid, s] of this.tracks) for (const t of s.getVideoTracks()) owner.set(t.id, { pid, screen: false });
    for (const [pid, s] of this.screens) for (const t of s.getVideoTracks()) owner.set(t.id, { pid, screen: true });
    report.forEach((r) => {
      if (r.type !== "inbound-rtp") return;
      if (r.kind === "video") {
        const o = owner.get(r.trackIdentifier) || { pid: "", screen: false };
        const codec = r.codecId && report.get(r.codecId);
        out.video.push({
          participantId: o.pid, screen: o.screen, framesDecoded: r.framesDecoded || 0,
          framesReceived: r.framesReceived || 0, bytesReceived: r.bytesReceived || 0,
          width: r.frameWidth || 0, height: r.frameHeight || 0, codec: (codec && codec.mimeType) || "",
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

  // A video section always: our camera both ways, or receive-only. Where the browser can capture its screen, a
  // second one, reserved for a screen share: a share then starts on it without a new offer. It is sendrecv, not
  // sendonly: the server may forward another participant's video on it like on any free section.
  _addVideo(pc) {
    const cam = this.localVideo && this.localVideo.getVideoTracks()[0];
    if (cam) pc.addTransceiver(cam, { direction: "sendrecv", streams: [this.localVideo] });
    else pc.addTransceiver("video", { direction: "recvonly" });
    const md = globalThis.navigator && globalThis.navigator.mediaDevices;
    if (md && typeof md.getDisplayMedia === "function") this._screenTx = pc.addTransceiver("video", { direction: "sendrecv" });
  }

  // --- screen sharing ---

  /**
   * Share the screen (opts.stream: a MediaStream to share instead of asking the browser for one; call this from a
   * click, as browsers only capture a screen on a user gesture). Resolves once the room has made us its sharer
   * and the screen is being sent; rejects with share_busy when someone else shares (the capture is then stopped).
   */
  async shareScreen(opts = {}) {
    if (this.sharing) return;
    if (!this._screenTx || this.state === "ended") {
      throw new PatchbayError("unsupported_media", "this room call cannot share a screen (no screen section; join again from a browser that can share)", this.id);
    }
    let stream = opts.stream;
    const owned = !stream;
    if (owned) {
      stream = await globalThis.navigator.mediaDevices.getDisplayMedia({
        video: { width: { ideal: 1920 }, height: { ideal: 1080 }, frameRate: { ideal: 15 } }, audio: false,
      });
    }
    const track = stream.getVideoTracks()[0];
    const release = () => { if (owned) for (const t of stream.getTracks()) t.stop(); };
    if (!track) {
      release();
      throw new PatchbayError("unsupported_media", "the shared stream has no video track", this.id);
    }
    // Text and slides: keep the resolution and let the frame rate drop when the link is short.
    if ("contentHint" in track) track.contentHint = "detail";
    let claimed = false;
    try {
      await this.#claimShare();
      claimed = true;
      await this._screenTx.sender.replaceTrack(track);
    } catch (err) {
      release();
      // The room made us its sharer but the screen cannot go out: give the share back.
      if (claimed && this.state !== "ended") this._pb()._send({ type: "share", call_id: this.id, action: "stop" });
      throw err;
    }
    this.screenStream = stream;
    this._ownsScreen = owned;
    this.sharing = true;
    track.addEventListener("ended", () => this.stopShare()); // the browser's own "Stop sharing"
    this.emit("sharing", { sharing: true });
  }

  /** Stop sharing our screen. */
  stopShare() {
    if (!this.sharing) return;
    if (this.state !== "ended") this._pb()._send({ type: "share", call_id: this.id, action: "stop" });
    this.#endCapture();
  }

  /** Moderators: stop participant participantId's screen share (others get a not_allowed error). */
  stopShareOf(participantId) {
    if (this.state === "ended") throw new PatchbayError("unknown_call", "call has ended", this.id);
    this._pb()._send({ type: "moderate", call_id: this.id, action: "stop_share", target: String(participantId) });
  }

  // Asks the room for the share: our own participant's "sharing" flag says yes, an error no.
  #claimShare() {
    if (this._shareClaim) return Promise.reject(new PatchbayError("bad_message", "a screen share is already being started", this.id));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.#settleClaim(new PatchbayError("unavailable", "the room did not answer the screen share", this.id)), 10000);
      this._shareClaim = { resolve, reject, timer };
      this._pb()._send({ type: "share", call_id: this.id, action: "start" });
    });
  }

  #settleClaim(err) {
    const c = this._shareClaim;
    if (!c) return;
    this._shareClaim = null;
    clearTimeout(c.timer);
    if (err) c.reject(err);
    else c.resolve();
  }

  #endCapture() {
    if (!this.sharing) return;
    this.sharing = false;
    if (this._screenTx && this.state !== "ended") this._screenTx.sender.replaceTrack(null).catch(() => { /* the call is ending */ });
    if (this.screenStream && this._ownsScreen) for (const t of this.screenStream.getTracks()) t.stop();
    this.screenStream = null;
    this.emit("sharing", { sharing: false });
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
          this.#dropScreen(p.id);
        } else {
          const before = this.participants.get(p.id);
          // Room events arrive in order, so only a change of "sharing" is news (an older "talking" update
          // still says false).
          const stopped = Boolean(before && before.sharing) && !p.sharing;
          if (p.id === this.you) {
            if (p.sharing) this.#settleClaim(null);
            else if (stopped && this.sharing) this.#endCapture(); // a moderator stopped our share
          } else if (stopped) {
            this.#dropScreen(p.id);
          }
          this.participants.set(p.id, { ...p, you: p.id === this.you });
          if (!before || before.talking !== p.talking) this.emit("speaking", { participantId: p.id, talking: Boolean(p.talking) });
        }
        this.emit("participant", { event: m.event, participant: p });
        this.emit("participants", this.participantList);
        return;
      }
      case "answered": // a room has no far end to pick up
        return;
      case "error":
        // A refused share (someone else shares; no screen section) leaves the call as it was.
        if (this._shareClaim && !m.final) this.#settleClaim(new PatchbayError(m.error || "internal", m.message || "", this.id));
        break;
    }
    super._onServerMessage(m);
  }

  _end(cause, code, extra = {}) {
    if (this.state === "ended") return;
    if (this._ownsVideo && this.localVideo) for (const t of this.localVideo.getTracks()) t.stop();
    for (const id of [...this.tracks.keys()]) this.#dropVideo(id);
    for (const id of [...this.screens.keys()]) this.#dropScreen(id);
    this.#settleClaim(new PatchbayError("unknown_call", "the room call ended", this.id));
    this.#endCapture();
    super._end(cause, code, extra);
  }

  #onTrack(track, stream, streams = []) {
    if (track.kind === "audio") {
      this.audioStream = stream;
      this.emit("audio", { stream });
      return;
    }
    // The SFU names each forwarded camera's stream after its participant, and a screen share "screen-" + id. A
    // camera is in the room audio's stream too (the browser synchronises the audio and video of one stream): that
    // one names no participant.
    const audioId = this.audioStream ? this.audioStream.id : "";
    stream = streams.find((s) => s.id !== audioId && !s.id.startsWith("patchbay-")) || stream;
    const sid = (stream && stream.id) || "";
    if (sid.startsWith("screen-")) {
      this.#onScreen(sid.slice("screen-".length), stream, track);
      return;
    }
    const pid = sid;
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

  #onScreen(pid, stream, track) {
    if (!pid || pid === this.you) return;
    this.screens.set(pid, stream);
    stream.onremovetrack = () => {
      if (this.screens.get(pid) === stream && stream.getVideoTracks().length === 0) this.#dropScreen(pid);
    };
    this.emit("screen", { participantId: pid, stream, track });
  }

  #dropScreen(pid) {
    if (!this.screens.has(pid)) return;
    this.screens.delete(pid);
    this.emit("screenended", { participantId: pid });
  }
}

/**
 * A connection to Patchbay.
 *
 * options: url (wss://host/ws), token (JWT), audio (getUserMedia audio
 * constraints, e.g. {echoCancellation:false}), iceServers (override those from
 * the server), pingInterval (ms, default 20000), reconnect (default true),
 * reconnectBase / reconnectMax (ms, backoff 500 → 8000, with jitter),
 * restartTimeout (ms a call may be without media before it ends, default 30000).
 * For tests: WebSocket, RTCPeerConnection and getUserMedia replace the browser's.
 *
 * status: "idle" | "connecting" | "connected" | "reconnecting" | "closed".
 * Events: statechange {status}, connected (authed message), incoming
 * (PatchbayCall), error (PatchbayError), close {code, reason},
 * reconnecting {code, reason} (the socket dropped; calls are held by the
 * server for resume_grace), reconnect {attempt, delay}, resumed {calls}
 * (call ids given back), refresh {iceServers} (fresh TURN credentials).
 */
export class Patchbay extends Emitter {
  #ws = null;
  #calls = new Map();
  #pingTimer = null;
  #awaitingPong = false;
  #lastErrorCode = "";
  #iceOverride = false;
  #closing = false; // close() was called: no reconnect
  #awayUntil = 0; // _dropForTest: no network until then
  #ended = new Set(); // ids of calls that ended lately: late errors about them are not news
  #pongWaiters = []; // _alive() callers waiting for the next pong
  #attempt = 0;
  #reconnectTimer = null;
  #graceTimer = null;

  constructor(options = {}) {
    super();
    if (!options.url) throw new PatchbayError("bad_message", "Patchbay needs a url (wss://host/ws)");
    this.url = options.url;
    this.token = options.token || "";
    this.audio = options.audio || { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
    this.iceServers = options.iceServers || [];
    this.#iceOverride = Boolean(options.iceServers);
    this.pingInterval = options.pingInterval ?? 20000;
    this.reconnect = options.reconnect ?? true;
    this.reconnectBase = options.reconnectBase ?? 500;
    this.reconnectMax = options.reconnectMax ?? 8000;
    this.restartTimeout = options.restartTimeout ?? 30000;
    this.resumeToken = "";
    this.resumeGrace = 0; // ms
    this.resumes = 0;
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
    this.#closing = false;
    return this.#open("");
  }

  // Opens the socket and authenticates, with a resume token after a drop.
  #open(resume) {
    return new Promise((resolve, reject) => {
      let settled = false;
      let ws;
      try {
        if (Date.now() < this.#awayUntil) throw new Error("network down (test)");
        ws = new this._WebSocket(this.url);
      } catch (err) {
        if (this.status === "reconnecting") this.#dropped(1006, ""); // try again later
        else this.#setStatus("closed");
        reject(new PatchbayError("unavailable", `cannot open ${this.url}: ${err.message || err}`));
        return;
      }
      this.#ws = ws;
      ws.onopen = () => ws.send(JSON.stringify(resume ? { type: "auth", token: this.token, resume } : { type: "auth", token: this.token }));
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
          this.#authed(m, Boolean(resume));
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
        this.#dropped(ev.code, ev.reason || "");
        if (!settled) {
          settled = true;
          reject(new PatchbayError(ev.reason || this.#lastErrorCode || "unavailable",
            `connection closed (${ev.code}) before authentication`));
        }
      };
      ws.onerror = () => { /* onclose follows with the details */ };
    });
  }

  #authed(m, resumed) {
    this.user = m.user || "";
    this.display = m.display || "";
    this.session = m.session || "";
    this.#applyRefresh(m);
    this.#attempt = 0;
    clearTimeout(this.#graceTimer);
    this.#graceTimer = null;
    this.#setStatus("connected");
    this.#startPing();
    if (resumed) {
      const back = new Set(m.resumed || []);
      this.resumes++;
      for (const c of [...this.#calls.values()]) {
        if (back.has(c.id)) c._resumed();
        else c._end("signalling_lost", CAUSES.signalling_lost, { error: "unavailable", local: false });
      }
      this.emit("resumed", { calls: [...back], session: this.session });
    }
    this.emit("connected", m);
  }

  #applyRefresh(m) {
    if (!this.#iceOverride && Array.isArray(m.ice_servers)) this.iceServers = m.ice_servers;
    if (m.resume_token) this.resumeToken = m.resume_token;
    if (m.resume_grace) this.resumeGrace = m.resume_grace * 1000;
    this.emit("refresh", { iceServers: this.iceServers });
  }

  /**
   * Place a call. opts.stream: a MediaStream to send (else the microphone with
   * this.audio constraints, or opts.audio); opts.callerId: one of the token's
   * caller_ids (E.164) to present on an outside call; opts.iceServers and
   * opts.iceTransportPolicy ("relay") override the connection's for this call.
   * Resolves once the offer is sent.
   */
  async call(to, opts = {}) {
    if (this.status !== "connected") throw new PatchbayError("unavailable", "not connected");
    const dest = String(to || "").trim();
    if (!dest || dest.length > 64) throw new PatchbayError("invalid_number", "enter a number of at most 64 characters");
    const call = new PatchbayCall(this, newCallId(), "outgoing", dest);
    this.#calls.set(call.id, call);
    try {
      if (!(await call._attachStream(opts))) return call;
      const pc = call._createPeerConnection({
        iceServers: opts.iceServers, iceTransportPolicy: opts.iceTransportPolicy, answerFilter: opts.answerFilter,
      });
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

  /**
   * The pre-call check (what /check shows): microphone level, which network paths work (UDP and ICE-TCP straight
   * to Patchbay, TURN over UDP, TCP and TLS), and a test call of opts.duration ms (default 10000) to the echo
   * extension opts.echo (default "600") measuring round-trip time, loss and jitter. opts.onStep({step, status,
   * detail}) follows progress. Resolves with {microphone, paths, call, verdict, ok}; never rejects.
   */
  async check(opts = {}) {
    const echo = opts.echo || "600";
    const duration = opts.duration ?? 10000;
    const step = (name, status, detail = {}) => { try { opts.onStep?.({ step: name, status, detail }); } catch { /* page bug */ } };
    const report = { microphone: { ok: false, level: null, error: "" }, paths: {}, call: { ok: false }, verdict: "", ok: false };

    step("microphone", "running");
    let stream = opts.stream || null;
    try {
      if (!stream) stream = await this._getUserMedia(this.audio);
      report.microphone.ok = stream.getAudioTracks().length > 0;
      report.microphone.level = await micLevel(stream, 1000);
    } catch (err) {
      report.microphone.error = err.code || String(err.message || err);
    }
    step("microphone", report.microphone.ok ? "ok" : "failed", report.microphone);

    // TURN: each transport alone, relay only: a relay candidate means an allocation succeeded.
    const kinds = { turnUdp: (u) => /^turn:/.test(u) && !/transport=tcp/.test(u), turnTcp: (u) => /^turn:/.test(u) && /transport=tcp/.test(u), turnTls: (u) => /^turns:/.test(u) };
    await Promise.all(Object.entries(kinds).map(async ([name, match]) => {
      const servers = [];
      for (const s of this.iceServers) for (const u of [].concat(s.urls || [])) if (match(u)) servers.push({ ...s, urls: [u] });
      if (servers.length === 0) {
        report.paths[name] = { ok: false, tested: false };
        return;
      }
      step(name, "running");
      report.paths[name] = { ok: await this.#gathersRelay(servers, 5000), tested: true };
      step(name, report.paths[name].ok ? "ok" : "failed", report.paths[name]);
    }));

    // Straight to Patchbay: a short echo call that may only use UDP, then one that may only use TCP.
    const only = (proto) => (sdp) => sdp.split("\r\n").filter((l) => !l.startsWith("a=candidate:") || l.split(" ")[2].toLowerCase() === proto).join("\r\n");
    for (const [name, proto] of [["udp", "udp"], ["tcp", "tcp"]]) {
      step(name, "running");
      const r = await this.#probeCall(echo, { stream, answerFilter: only(proto), iceServers: [] }, 5000);
      report.paths[name] = { ok: r.ok, tested: true, error: r.error || "" };
      step(name, r.ok ? "ok" : "failed", report.paths[name]);
    }

    step("call", "running");
    report.call = await this.#testCall(echo, stream, duration, (d) => step("call", "running", d));
    step("call", report.call.ok ? "ok" : "failed", report.call);
    if (!opts.stream && stream) for (const t of stream.getTracks()) t.stop();
    report.verdict = verdict(report);
    report.ok = report.call.ok;
    step("done", report.ok ? "ok" : "failed", report);
    return report;
  }

  async #gathersRelay(servers, ms) {
    const PC = this._RTCPeerConnection;
    if (!PC) return false;
    const pc = new PC({ iceServers: servers, iceTransportPolicy: "relay" });
    try {
      const found = new Promise((resolve) => {
        const t = setTimeout(() => resolve(false), ms);
        pc.onicecandidate = (e) => {
          if (e.candidate && / typ relay /.test(e.candidate.candidate || "")) { clearTimeout(t); resolve(true); }
          if (!e.candidate) { clearTimeout(t); resolve(false); }
        };
      });
      pc.addTransceiver("audio");
      await pc.setLocalDescription(await pc.createOffer());
      return await found;
    } catch {
      return false;
    } finally {
      pc.close();
    }
  }

  // A call to the echo extension that must be connected (ICE and DTLS) within ms; always hung up.
  async #probeCall(to, opts, ms) {
    let call;
    try {
      call = await this.call(to, opts);
      const ok = await new Promise((resolve) => {
        const t = setTimeout(() => resolve(false), ms);
        const poll = setInterval(async () => {
          const st = await call.getStats().catch(() => null);
          let up = false;
          st?.forEach((r) => { if (r.type === "candidate-pair" && r.state === "succeeded" && (r.nominated || r.selected)) up = true; });
          if (up) { clearTimeout(t); clearInterval(poll); resolve(true); }
        }, 200);
        call.on("hangup", () => { clearTimeout(t); clearInterval(poll); resolve(false); });
        setTimeout(() => clearInterval(poll), ms + 10);
      });
      return { ok };
    } catch (err) {
      return { ok: false, error: err.code || String(err) };
    } finally {
      call?.hangup();
    }
  }

  async #testCall(to, stream, duration, progress) {
    const out = { ok: false, rttMs: null, lossPct: null, jitterMs: null, path: "", seconds: 0, error: "" };
    let call;
    try {
      call = await this.call(to, { stream });
      const start = Date.now();
      let rtts = [];
      while (Date.now() - start < duration && call.state !== "ended") {
        await new Promise((r) => setTimeout(r, 1000));
        const st = await call.getStats().catch(() => null);
        if (!st) continue;
        const byId = new Map();
        st.forEach((r) => byId.set(r.id, r));
        let recv = 0, lost = 0, jitter = 0, pair = null;
        st.forEach((r) => {
          if (r.type === "inbound-rtp" && r.kind === "audio") { recv += r.packetsReceived || 0; lost += Math.max(0, r.packetsLost || 0); jitter = Math.max(jitter, r.jitter || 0); }
          if (r.type === "candidate-pair" && r.state === "succeeded" && (r.nominated || r.selected)) pair = pair || r;
          if (r.type === "transport" && r.selectedCandidatePairId) pair = byId.get(r.selectedCandidatePairId) || pair;
        });
        if (pair && pair.currentRoundTripTime != null) rtts.push(pair.currentRoundTripTime * 1000);
        if (pair) {
          const l = byId.get(pair.localCandidateId);
          if (l) out.path = `${l.candidateType}/${l.relayProtocol || l.protocol}`;
        }
        out.packets = recv;
        out.lossPct = recv + lost > 0 ? (100 * lost) / (recv + lost) : null;
        out.jitterMs = jitter * 1000;
        out.seconds = Math.round((Date.now() - start) / 1000);
        if (rtts.length) out.rttMs = Math.round(rtts.reduce((a, b) => a + b, 0) / rtts.length);
        progress({ ...out });
      }
      out.ok = call.state !== "ended" && (out.packets || 0) > 0;
      if (!out.ok && !out.error) out.error = call.state === "ended" ? (call.cause || "ended") : "no audio came back";
    } catch (err) {
      out.error = err.code || String(err);
    } finally {
      call?.hangup();
    }
    return out;
  }

  /** Ask for the agent console's view; it arrives as a "console" event {queue, calls} (agents, supervisors). */
  console() {
    if (!this._send({ type: "console" })) throw new PatchbayError("unavailable", "not connected");
  }

  /**
   * Supervise a live call (its id from the console's calls) as a supervisor: mode "listen", "whisper" (the agent
   * hears you) or "barge" (everyone does). Resolves with the PatchbayCall; its "track" is what you hear, and
   * call.supervise(mode) switches the mode.
   */
  async supervise(target, mode = "listen", opts = {}) {
    if (this.status !== "connected") throw new PatchbayError("unavailable", "not connected");
    const sup = new PatchbayCall(this, newCallId(), "outgoing", String(target));
    sup.mode = mode;
    this.#calls.set(sup.id, sup);
    try {
      if (!(await sup._attachStream(opts))) return sup;
      const pc = sup._createPeerConnection();
      sup._addLocalTracks();
      await pc.setLocalDescription(await pc.createOffer());
      if (sup.state === "ended") return sup;
      this._send({ type: "supervise", call_id: sup.id, target: String(target), mode, sdp: pc.localDescription.sdp });
      sup._sendReady();
    } catch (err) {
      sup._fail(err);
      throw err;
    }
    return sup;
  }

  /** Hang up every call and close the connection. */
  close() {
    this.#closing = true;
    clearTimeout(this.#reconnectTimer);
    clearTimeout(this.#graceTimer);
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

  // Resolves true when a ping is answered within ms: the socket carries messages both ways right now.
  _alive(ms) {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.#pongWaiters = this.#pongWaiters.filter((w) => w !== done);
        resolve(false);
      }, ms);
      const done = (ok) => { clearTimeout(t); resolve(ok); };
      this.#pongWaiters.push(done);
      if (!this._send({ type: "ping" })) done(false);
    });
  }

  _forget(call) {
    this.#calls.delete(call.id);
    this.#ended.add(call.id);
    if (this.#ended.size > 64) this.#ended.delete(this.#ended.values().next().value);
  }

  #onMessage(m) {
    if (m.type === "pong") {
      this.#awaitingPong = false;
      for (const w of this.#pongWaiters.splice(0)) w(true);
      return;
    }
    if (m.type === "refresh") {
      this.#applyRefresh(m);
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
    if (m.type === "console") {
      this.emit("console", { queue: m.queue || [], calls: m.calls || [] });
      return;
    }
    if (m.type === "redirect") {
      this.#followRedirect(m);
      return;
    }
    const call = m.call_id ? this.#calls.get(m.call_id) : null;
    if (m.type === "error") {
      if (!m.call_id) this.#lastErrorCode = m.error || ""; // a session error: it may explain the close that follows
      const err = new PatchbayError(m.error || "internal", m.message || "", m.call_id);
      if (call) call._onServerMessage(m);
      else if (!this.#ended.has(m.call_id)) this.emit("error", err); // an answer to a candidate of an ended call is no news
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
        const ws = this.#ws;
        // Not 1000: should this close frame reach the server, 1000 would tell it the page left and end the calls
        // this reconnect is meant to resume.
        try { ws.close(4000, "no pong"); } catch { /* closing anyway */ }
        this.#dropped(1006, "");
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

  /**
   * Drop the socket as a network failure would (no close frame reaches the server's handler first); the
   * client reconnects and resumes. For tests and the pre-call check.
   */
  _dropForTest(awayMs = 0) {
    const ws = this.#ws;
    if (!ws) return;
    this.#awayUntil = Date.now() + awayMs; // reconnect attempts fail until then, as on a dead network
    this.#dropped(1006, "");
    try { ws.close(4000, "test drop"); } catch { /* already closed */ }
  }

  // The socket ended. Unless it was ours to close or the server refused us for good, reconnect with backoff and
  // jitter and resume: the server holds the calls for resume_grace.
  #dropped(code, reason) {
    const why = reason || this.#lastErrorCode;
    const wasUp = this.status === "connected" || this.status === "reconnecting";
    if (this.#closing || !this.reconnect || !wasUp || FATAL_CLOSE.has(why) || !this.resumeToken) {
      this.#closed(code, reason);
      return;
    }
    this.#stopPing();
    this.#ws = null;
    if (this.status !== "reconnecting") {
      this.#setStatus("reconnecting");
      this.emit("reconnecting", { code, reason: why });
      for (const c of this.#calls.values()) c._signallingLost();
      // Past the grace the server has ended the calls: say so instead of waiting for the resume reply.
      if (this.#calls.size > 0 && this.resumeGrace > 0) {
        this.#graceTimer = setTimeout(() => {
          for (const c of [...this.#calls.values()]) {
            c._end("signalling_lost", CAUSES.signalling_lost, { error: "unavailable", local: true });
          }
        }, this.resumeGrace);
      }
    }
    clearTimeout(this.#reconnectTimer);
    const base = Math.min(this.reconnectMax, this.reconnectBase * 2 ** this.#attempt);
    const delay = Math.round(base / 2 + Math.random() * base / 2); // jitter: tabs of one office do not stampede
    this.#attempt++;
    this.emit("reconnect", { attempt: this.#attempt, delay });
    this.#reconnectTimer = setTimeout(() => {
      if (this.#closing || this.status !== "reconnecting") return;
      this.#open(this.resumeToken).catch(() => { /* #dropped scheduled the next try */ });
    }, delay);
  }

  #closed(code, reason) {
    if (this.status === "closed") return;
    clearTimeout(this.#reconnectTimer);
    clearTimeout(this.#graceTimer);
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

// micLevel is the microphone's RMS level (0..1) over ms, or null when this browser cannot measure it here (no
// audio output: WebAudio never starts).
async function micLevel(stream, ms) {
  const AC = globalThis.AudioContext || globalThis.webkitAudioContext;
  if (!AC) return null;
  const ac = new AC();
  try {
    const started = await Promise.race([ac.resume().then(() => true), new Promise((r) => setTimeout(() => r(false), 1000))]);
    if (!started) return null;
    const an = ac.createAnalyser();
    an.fftSize = 2048;
    ac.createMediaStreamSource(stream).connect(an);
    const buf = new Float32Array(an.fftSize);
    let peak = 0;
    const end = Date.now() + ms;
    while (Date.now() < end) {
      await new Promise((r) => setTimeout(r, 100));
      an.getFloatTimeDomainData(buf);
      let sum = 0;
      for (const v of buf) sum += v * v;
      peak = Math.max(peak, Math.sqrt(sum / buf.length));
    }
    return Math.round(peak * 1000) / 1000;
  } catch {
    return null;
  } finally {
    ac.close().catch(() => {});
  }
}

/** The check's conclusion in words a customer can read to a support agent. */
export function verdict(r) {
  const p = r.paths;
  const works = (k) => p[k] && p[k].ok;
  const lines = [];
  if (!r.microphone.ok) lines.push("Your microphone could not be opened: allow it in the browser's address bar, or plug one in.");
  else if (r.microphone.level !== null && r.microphone.level < 0.005) lines.push("Your microphone seems silent: check that it is not muted.");
  if (!r.call.ok) {
    lines.push("Calls will not work from this network: no connection to the phone system got through.");
    lines.push("Ask your IT team to allow UDP and TCP to the phone system's media port, or access to its TURN relay (TCP or TLS port 443).");
    return lines.join(" ");
  }
  const loss = r.call.lossPct ?? 0, jitter = r.call.jitterMs ?? 0, rtt = r.call.rttMs ?? 0;
  if (loss < 2 && jitter < 50 && rtt < 300) lines.push("Calls will work well from here.");
  else lines.push(`Calls will work, but the sound may break up or lag (${loss.toFixed(1)}% lost, ${Math.round(jitter)} ms jitter, ${rtt} ms round trip).`);
  if (works("udp")) lines.push("Your network allows the direct, fastest connection (UDP).");
  else if (works("tcp")) lines.push("Your network blocks UDP, so calls go over TCP directly; this adds a little delay on a busy line.");
  else if (works("turnUdp") || works("turnTcp") || works("turnTls")) lines.push("Your network blocks direct connections, so calls go through the relay server; this adds a little delay.");
  return lines.join(" ");
}

export default Patchbay;
