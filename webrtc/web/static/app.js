// The Patchbay page: sign in, dial, answer, hang up, join a room. All state a
// test needs is mirrored in window.patchbayState; window.patchbayApp drives
// the page.
import { Patchbay, PatchbayError } from "./patchbay.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

// ?echoCancellation=0&noiseSuppression=0&autoGainControl=0 keeps a test tone intact.
function flag(name, dflt) {
  const v = params.get(name);
  return v === null ? dflt : !/^(0|false|no|off)$/i.test(v);
}
const audio = {
  echoCancellation: flag("echoCancellation", true),
  noiseSuppression: flag("noiseSuppression", true),
  autoGainControl: flag("autoGainControl", true),
};
const autoAnswer = flag("autoanswer", false);
// ?room=NAME joins that room once signed in; ?video=0 joins without the camera.
const autoRoom = params.get("room") || "";
// /agent?number=X (served with <meta name="patchbay-mode" content="agent">): an agent who answered a call from X
// is taken to the room mapped to X. The server checks the token's agent role; the page only asks.
const agentMode = document.querySelector('meta[name="patchbay-mode"]')?.getAttribute("content") === "agent";
const agentNumber = agentMode ? params.get("number") || "" : "";
const withVideo = flag("video", true);

const HELP = {
  bad_message: "The page sent something the server did not understand.",
  too_large: "A message was too large.",
  rate_limited: "Too many actions at once; slow down.",
  unauthorized: "The access token was not accepted.",
  token_expired: "The access token has expired; get a new one.",
  forbidden_destination: "You may not call that number.",
  invalid_number: "That is not a valid number.",
  unknown_call: "The server does not know this call (it may have ended).",
  duplicate_call: "A call with this id already exists.",
  unsupported_media: "The browser offered no audio codec the phone system can carry.",
  no_audio: "No audio: check the microphone permission and the network.",
  unavailable: "The phone system is not available right now.",
  internal: "Something went wrong on the server.",
  unknown_room: "That room does not exist or has ended.",
  invalid_ticket: "The invitation was not accepted: it is unknown, expired or already used. Ask for a new one.",
  share_busy: "Someone else is sharing their screen; they (or a moderator) must stop first.",
  not_allowed: "Your role does not allow that.",
  too_many_connections: "Too many connections from here; close other Patchbay tabs and try again.",
  call_rate_limited: "Too many calls in a short time; wait a moment and try again.",
  too_many_calls: "You already have as many calls as allowed; end one first.",
  budget_exhausted: "Today's calling minutes are used up; they renew at midnight (UTC).",
  max_duration: "The call reached its maximum length and was ended.",
  forbidden_caller_id: "Outside calls need a caller ID, and your account has none; ask your administrator.",
  turn_refused: "The relay server refused the connection: its access has expired. Reconnect to get a fresh one.",
  no_path: "No network path to the phone system worked; your network may block calls. Run the check at /check.",
};

const state = {
  status: "idle", // idle | connecting | connected | closed
  user: "",
  lastError: "", // a stable error code
  lastErrorMessage: "",
  callState: "idle", // idle | incoming | connecting | ringing | answered | ended
  callId: "",
  peer: "",
  direction: "",
  cause: "",
  code: 0,
  muted: false,
  dtmfReceived: "",
  codec: "", // the call's audio codec from the server's SDP ("opus/48000", "PCMU/8000"); roomCodec the room's
  roomCodec: "",
  audio,
  // The call panel: talk time since the far end answered, and quality from getStats (good | fair | poor |
  // unknown) with the numbers behind it; qualityIssue/qualityDirection from the server's "quality" message.
  callSeconds: 0,
  quality: "unknown",
  qualityStats: null, // {loss, jitterMs, rttMs, received}
  qualityIssue: "",
  qualityDirection: "",
  // The room view.
  roomState: "idle", // idle | connecting | joined | ended
  room: "",
  you: "",
  participants: [], // {id, kind, name, callerId, muted, talking, you, video}
  speaking: [], // ids of participants talking now
  videoTiles: 0, // tiles showing another browser's camera
  camera: false,
  // Screen sharing: sharing (this page sends its screen), screenFrom (the participant whose screen this page
  // shows, or ""), screenTiles (tiles showing a screen).
  sharing: false,
  screenFrom: "",
  screenTiles: 0,
  roomMuted: false,
  roomCause: "",
  // Reaching the browser on any network.
  network: "ok", // ok | reconnecting: signalling or media is being restored
  resumes: 0, // times the connection was resumed
  restarts: 0, // ICE restarts of the current call
  iceErrors: [], // icecandidateerror events of the current call: {errorCode, errorText, url}
};
window.patchbayState = state;

let pb = null;
let current = null; // the one call this page shows
let dialing = false; // between the Call click and the offer going out
let room = null; // the room this page is in
const tiles = new Map(); // participant id → its <li>

function showError(err) {
  const code = (err && err.code) || "internal";
  state.lastError = code;
  state.lastErrorMessage = (err && err.message) || "";
  const box = $("error");
  box.replaceChildren();
  const c = document.createElement("code");
  c.textContent = code;
  box.append(c, " ", HELP[code] || state.lastErrorMessage);
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
}

function render() {
  const connected = state.status === "connected" || state.status === "reconnecting";
  $("login").hidden = connected;
  $("phone").hidden = !connected;
  $("user").textContent = state.user ? `(${state.user})` : "";
  const labels = { idle: "Not connected", connecting: "Connecting…", connected: "Connected", closed: "Disconnected",
    reconnecting: "Connection lost: reconnecting…" };
  let text = labels[state.status] || state.status;
  if (connected && current) text = `Call ${state.callState}`;
  if (current && state.network === "reconnecting") text = `Call ${state.callState}: reconnecting…`;
  $("status").textContent = text;

  const inCall = Boolean(current) && current.state !== "incoming";
  $("incoming").hidden = !(current && current.state === "incoming");
  $("incoming-text").textContent = current ? `Incoming call from ${current.peerName || current.peer || "unknown"}` : "";
  $("in-call").hidden = !inCall;
  $("call-peer").textContent = current ? current.peer : "";
  $("call-state").textContent = state.callState;
  $("call").disabled = Boolean(current);
  $("mute").setAttribute("aria-pressed", String(state.muted));
  $("mute").textContent = state.muted ? "Unmute" : "Mute";

  const inRoom = Boolean(room);
  document.querySelector("main").classList.toggle("wide", inRoom);
  $("room-view").hidden = !inRoom;
  for (const id of ["dial-form", "keypad", "join-form"]) $(id).hidden = inRoom;
  $("join").disabled = inRoom || Boolean(current);
  if (connected && inRoom) $("status").textContent = `Room ${state.roomState}`;
  $("room-label").textContent = state.room;
  $("room-mute").setAttribute("aria-pressed", String(state.roomMuted));
  $("room-mute").textContent = state.roomMuted ? "Unmute" : "Mute";
  $("room-camera").setAttribute("aria-pressed", String(state.camera));
  $("room-camera").textContent = state.camera ? "Camera off" : "Camera on";
  $("room-camera").disabled = !(room && room.localVideo);
  $("room-share").setAttribute("aria-pressed", String(state.sharing));
  $("room-share").textContent = state.sharing ? "Stop sharing" : "Share screen";
  $("room-share").disabled = !(room && room._screenTx && room.state === "joined");
  // A moderator may end another participant's share.
  const me = room && room.participants.get(room.you);
  $("room-stop-share").hidden = !(me && me.role === "moderator" && state.screenFrom);
}

// --- the room view ---

function initials(name) {
  const parts = String(name || "?").trim().split(/\s+/).filter(Boolean);
  return (parts.length > 1 ? parts[0][0] + parts[parts.length - 1][0] : (parts[0] || "?").slice(0, 2)).toUpperCase();
}

function tileFor(p) {
  let li = tiles.get(p.id);
  if (!li) {
    li = document.createElement("li");
    li.className = "tile";
    li.dataset.participant = p.id;
    const avatar = document.createElement("div");
    avatar.className = "avatar";
    avatar.setAttribute("aria-hidden", "true");
    const label = document.createElement("div");
    label.className = "label";
    li.append(avatar, label);
    tiles.set(p.id, li);
  }
  return li;
}

function setVideo(li, stream, { mirror = false, screen = false } = {}) {
  li.classList.toggle("screen", Boolean(stream) && screen);
  let v = li.querySelector("video");
  if (!stream) {
    if (v) v.remove();
    li.querySelector(".avatar").hidden = false;
    return;
  }
  if (!v) {
    v = document.createElement("video");
    v.autoplay = true;
    v.playsInline = true;
    v.muted = true; // sound comes from the room's mix in #remote
    li.prepend(v);
  }
  if (v.srcObject !== stream) v.srcObject = stream;
  v.style.transform = mirror && !screen ? "scaleX(-1)" : "";
  v.style.objectFit = screen ? "contain" : ""; // a screen is read, not cropped
  li.querySelector(".avatar").hidden = true;
  v.play().catch(() => { /* the next user gesture starts it */ });
}

// pinRank orders tiles: a shared screen first (shown large), then another participant who is an agent, then
// everyone else.
function pinRank(p) {
  if (room && !p.you && room.screens.has(p.id)) return -1;
  return !p.you && p.role === "agent" && p.kind !== "phone" ? 0 : 1;
}

function renderRoom() {
  if (!room) {
    for (const li of tiles.values()) li.remove();
    tiles.clear();
    Object.assign(state, { participants: [], speaking: [], videoTiles: 0, screenTiles: 0, screenFrom: "", sharing: false });
    $("speaking").textContent = "";
    return;
  }
  // The agent's tile is pinned first and large for everyone else (a customer looks at the agent, not at the
  // audio-only phone tile); the rest keep the server's order.
  const list = [...room.participantList].sort((a, b) => pinRank(a) - pinRank(b));
  const ul = $("tiles");
  const seen = new Set();
  let videoTiles = 0;
  let screenTiles = 0;
  let screenFrom = "";
  for (const p of list) {
    seen.add(p.id);
    const li = tileFor(p);
    // A participant's screen share takes its tile, large, while it lasts; when it stops the camera comes back.
    const screen = p.you ? null : room.screens.get(p.id) || null;
    const stream = screen || (p.you ? (room.cameraOn ? room.localVideo : null) : room.tracks.get(p.id) || null);
    setVideo(li, stream, { mirror: p.you, screen: Boolean(screen) });
    if (screen) {
      screenTiles++;
      screenFrom = p.id;
    } else if (stream && !p.you) {
      videoTiles++;
    }
    li.classList.toggle("talking", Boolean(p.talking));
    li.classList.toggle("pinned", pinRank(p) === 0);
    li.classList.toggle("phone", p.kind === "phone");
    li.querySelector(".avatar").textContent = p.kind === "phone" ? "☎" : initials(p.name || p.caller_id);
    const label = li.querySelector(".label");
    label.replaceChildren();
    label.append(p.you ? `${p.name || "You"} (you)` : p.name || p.caller_id || "Guest");
    if (p.kind === "phone" && p.caller_id && p.caller_id !== p.name) {
      const cid = document.createElement("span");
      cid.className = "cid";
      cid.textContent = p.caller_id;
      label.append(cid);
    }
    if (p.muted || (p.you && state.roomMuted)) {
      const m = document.createElement("span");
      m.className = "muted";
      m.textContent = "🔇";
      m.setAttribute("aria-label", "muted");
      label.append(m);
    }
    li.setAttribute("aria-label", `${p.name || p.caller_id || "Guest"}${p.kind === "phone" ? ", phone" : ""}${p.talking ? ", speaking" : ""}`);
    ul.append(li); // keeps the list order
  }
  for (const [id, li] of tiles) {
    if (!seen.has(id)) {
      li.remove();
      tiles.delete(id);
    }
  }
  const speaking = list.filter((p) => p.talking);
  Object.assign(state, {
    participants: list.map((p) => ({
      id: p.id, kind: p.kind, name: p.name || "", callerId: p.caller_id || "", muted: Boolean(p.muted),
      talking: Boolean(p.talking), you: Boolean(p.you), video: p.you ? Boolean(room.cameraOn) : room.tracks.has(p.id),
      role: p.role || "", pinned: pinRank(p) <= 0, sharing: Boolean(p.sharing), screen: room.screens.has(p.id),
    })),
    speaking: speaking.map((p) => p.id),
    videoTiles,
    screenTiles,
    screenFrom,
    sharing: room.sharing,
    camera: room.cameraOn,
  });
  $("speaking").textContent = speaking.length
    ? `Speaking: ${speaking.map((p) => (p.you ? "you" : p.name || p.caller_id || "guest")).join(", ")}`
    : "";
}

function trackRoom(r) {
  room = r;
  Object.assign(state, { roomState: r.state, room: r.room || r.peer, you: "", roomMuted: false, roomCause: "", camera: r.cameraOn });
  const redraw = () => {
    if (room !== r) return;
    renderRoom();
    render();
  };
  r.on("statechange", ({ state: s }) => {
    if (room === r) {
      Object.assign(state, { roomState: s, roomCodec: r.codec || state.roomCodec });
      $("room-codec").textContent = `Codec: ${codecLabel(state.roomCodec)}`;
    }
    redraw();
  });
  r.on("joined", ({ room: name, you }) => {
    Object.assign(state, { room: name, you });
    redraw();
  });
  r.on("participants", redraw);
  r.on("video", redraw);
  r.on("videoended", redraw);
  r.on("screen", redraw);
  r.on("screenended", redraw);
  r.on("sharing", redraw);
  r.on("audio", ({ stream }) => {
    const el = $("remote");
    el.srcObject = stream;
    el.play().catch(() => { /* autoplay refused: the user's next click starts it */ });
  });
  r.on("error", showError);
  const left = (cause) => {
    if (room !== r) return;
    Object.assign(state, { roomState: "ended", roomCause: cause, roomMuted: false, camera: false });
    room = null;
    $("remote").srcObject = null;
    renderRoom();
    render();
  };
  // The room is held by another node of the cluster: follow it there (patchbay.js has joined it there already).
  r.on("redirect", ({ room: next }) => {
    if (room !== r) return;
    if (next && next.state !== "ended") trackRoom(next);
    else left("temporary_failure");
  });
  r.on("hangup", ({ cause, redirected }) => {
    if (!redirected) left(cause);
  });
  redraw();
}

async function join(target, opts = {}) {
  if (!pb || room || current) return null;
  clearError();
  state.roomState = "connecting";
  try {
    const r = await pb.join(target, { video: withVideo, ...opts });
    if (r.state !== "ended") trackRoom(r);
    return r.id;
  } catch (err) {
    state.roomState = "ended";
    showError(err);
    return null;
  } finally {
    render();
  }
}

function roomMute(on) {
  if (!room) return;
  room.mute(on);
  state.roomMuted = room.muted;
  renderRoom();
  render();
}

function camera(on) {
  if (!room) return;
  room.camera(on);
  renderRoom();
  render();
}

// shareScreen(true) shares this page's screen (from a click: browsers capture a screen only on a user gesture),
// shareScreen(false) stops it. Resolves true once shared or stopped, false when refused (the error is shown).
async function shareScreen(on = true) {
  if (!room) return false;
  clearError();
  try {
    if (on) await room.shareScreen();
    else room.stopShare();
    return true;
  } catch (err) {
    showError(err.code ? err : new PatchbayError("unsupported_media", `screen share: ${err.message || err}`));
    return false;
  } finally {
    renderRoom();
    render();
  }
}

// A moderator stops participant pid's screen share.
function stopShareOf(pid) {
  if (room && pid) room.stopShareOf(pid);
}

// --- the call panel: timer, quality indicator, quality messages ---

// What a "quality" message means to the person on the call.
const QUALITY_WORDS = {
  "one_way_audio/to_browser": "You cannot hear the other side: no audio is reaching you from the phone system. The call is still up; the other side may still hear you.",
  "one_way_audio/to_asterisk": "The other side cannot hear you: your audio is not reaching the phone system (network or firewall). Check your connection or try another network.",
  "no_audio/both": "No audio in either direction: check your network connection; the call is still up.",
};

// Thresholds of the indicator, on what the browser measures of the audio it receives: packet loss over the last
// few seconds, jitter and round-trip time (ITU-T G.114 puts one-way delay above 150 ms as noticeable).
function qualityLevel({ loss, jitterMs, rttMs, received }) {
  if (received === 0) return "poor";
  if (loss > 0.05 || jitterMs > 50 || rttMs > 400) return "poor";
  if (loss > 0.01 || jitterMs > 30 || rttMs > 250) return "fair";
  return "good";
}

let panelTimer = null; // the 1 s timer that runs while a call is shown
let answeredAt = 0;
let lastInbound = null; // previous inbound-rtp counters, for loss over the last interval

async function sampleQuality(call) {
  let report;
  try {
    report = await call.getStats();
  } catch {
    return;
  }
  if (!report || current !== call) return;
  let inbound = null;
  let rtt = NaN;
  report.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio") inbound = s;
    if (s.type === "remote-inbound-rtp" && s.kind === "audio" && typeof s.roundTripTime === "number") rtt = s.roundTripTime;
    if (s.type === "candidate-pair" && s.nominated && Number.isNaN(rtt) && typeof s.currentRoundTripTime === "number") rtt = s.currentRoundTripTime;
  });
  if (!inbound) return;
  const prev = lastInbound || { packetsReceived: 0, packetsLost: 0 };
  const received = inbound.packetsReceived - prev.packetsReceived;
  const lost = Math.max(0, inbound.packetsLost - prev.packetsLost);
  lastInbound = { packetsReceived: inbound.packetsReceived, packetsLost: inbound.packetsLost };
  const stats = {
    loss: received + lost > 0 ? lost / (received + lost) : 0,
    jitterMs: (inbound.jitter || 0) * 1000,
    rttMs: Number.isNaN(rtt) ? 0 : rtt * 1000,
    received,
  };
  Object.assign(state, { qualityStats: stats, quality: qualityLevel(stats) });
  renderPanel();
}

function renderPanel() {
  const m = Math.floor(state.callSeconds / 60);
  const sec = state.callSeconds % 60;
  $("call-timer").textContent = `${String(m).padStart(2, "0")}:${String(sec).padStart(2, "0")}`;
  const q = $("call-quality");
  q.dataset.level = state.quality;
  q.textContent = `Quality: ${state.quality === "unknown" ? "measuring…" : state.quality}`;
  $("call-codec").textContent = `Codec: ${codecLabel(state.codec)}`;
  const st = state.qualityStats;
  q.title = st ? `loss ${(st.loss * 100).toFixed(1)} %, jitter ${st.jitterMs.toFixed(0)} ms, round trip ${st.rttMs ? st.rttMs.toFixed(0) + " ms" : "unknown"}` : "Measured from the browser's call statistics";
  const notice = $("call-notice");
  const words = QUALITY_WORDS[`${state.qualityIssue}/${state.qualityDirection}`];
  notice.hidden = !words;
  notice.textContent = words || "";
}

// "opus/48000" → "Opus (HD)", "PCMU/8000" → "G.711 µ-law".
function codecLabel(c) {
  const name = String(c || "").split("/")[0].toLowerCase();
  return { opus: "Opus (HD)", pcmu: "G.711 µ-law", pcma: "G.711 A-law" }[name] || "—";
}

function startPanel(call) {
  stopPanel();
  answeredAt = 0;
  lastInbound = null;
  Object.assign(state, { callSeconds: 0, quality: "unknown", qualityStats: null, qualityIssue: "", qualityDirection: "" });
  if (call.state === "answered") answeredAt = Date.now();
  let n = 0;
  panelTimer = setInterval(() => {
    if (current !== call) return stopPanel();
    if (answeredAt) state.callSeconds = Math.floor((Date.now() - answeredAt) / 1000);
    if (call.state === "answered" && n++ % 2 === 0) sampleQuality(call); // every 2 s
    renderPanel();
  }, 1000);
  renderPanel();
}

function stopPanel() {
  if (panelTimer) clearInterval(panelTimer);
  panelTimer = null;
}

// The server's "quality" message reaches the call as an event once patchbay.js emits it; until then this passes
// the message on from the call's message handler. Handling it twice is harmless: the handler only sets state.
function relayQualityMessages(call) {
  const proto = Object.getPrototypeOf(call);
  if (proto.__patchbayQuality || typeof proto._onServerMessage !== "function") return;
  const orig = proto._onServerMessage;
  proto._onServerMessage = function (m) {
    if (m && m.type === "quality") this.emit("quality", { issue: m.issue || "", direction: m.direction || "" });
    return orig.call(this, m);
  };
  proto.__patchbayQuality = true;
}

function track(call) {
  current = call;
  Object.assign(state, {
    callId: call.id, peer: call.peer, direction: call.direction, callState: call.state,
    cause: "", code: 0, muted: false, dtmfReceived: "", network: "ok", restarts: 0, iceErrors: [], codec: call.codec || "",
  });
  call.on("reconnecting", () => {
    if (current === call) state.network = "reconnecting";
    render();
  });
  call.on("reconnected", ({ restarts }) => {
    if (current === call) Object.assign(state, { network: "ok", restarts });
    render();
  });
  call.on("icerestart", ({ restarts }) => {
    if (current === call) state.restarts = restarts;
  });
  call.on("iceerror", (e) => {
    if (current === call) state.iceErrors.push(e);
  });
  $("dtmf-log").textContent = "";
  relayQualityMessages(call);
  startPanel(call);
  call.on("statechange", ({ state: s }) => {
    if (current === call) Object.assign(state, { callState: s, codec: call.codec || state.codec });
    if (s === "answered" && !answeredAt) answeredAt = Date.now();
    render();
    // The panel's codec shows at once, not at the panel's next tick (up to a second of "Codec: —" after answering).
    if (current === call) renderPanel();
  });
  call.on("quality", ({ issue, direction }) => {
    if (current !== call) return;
    Object.assign(state, { qualityIssue: issue, qualityDirection: direction, quality: "poor" });
    renderPanel();
  });
  call.on("track", ({ stream }) => {
    const el = $("remote");
    el.srcObject = stream;
    el.play().catch(() => { /* autoplay refused: the user's next click starts it */ });
  });
  call.on("dtmf", ({ digits }) => {
    state.dtmfReceived += digits;
    $("dtmf-log").textContent = state.dtmfReceived;
  });
  call.on("error", showError);
  call.on("hangup", ({ cause, code }) => {
    if (current !== call) return;
    Object.assign(state, { callState: "ended", cause, code, muted: false });
    current = null;
    stopPanel();
    $("remote").srcObject = null;
    render();
  });
  render();
}

async function connect(token) {
  if (pb && (pb.status === "connecting" || pb.status === "connected")) return;
  clearError();
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  pb = new Patchbay({ url: `${scheme}//${location.host}/ws`, token, audio });
  pb.on("statechange", ({ status }) => {
    state.status = status;
    render();
  });
  pb.on("error", showError);
  pb.on("close", ({ reason }) => {
    if (reason) showError(new PatchbayError(reason));
  });
  pb.on("resumed", () => {
    state.resumes = pb.resumes;
    render();
  });
  pb.on("incoming", (call) => {
    if (current || room) return; // busy: leave it ringing on the user's other devices
    track(call);
    if (autoAnswer) answer();
  });
  try {
    const authed = await pb.connect();
    state.user = authed.display || authed.user || "";
    render();
    if (agentNumber) join({ number: agentNumber });
    else if (autoRoom) join(autoRoom);
    else $("number").focus();
  } catch (err) {
    showError(err);
  }
}

// opts (tests and support): {iceTransportPolicy: "relay", iceServers: [...]}.
async function call(to, opts = {}) {
  if (!pb || current || room || dialing) return;
  clearError();
  dialing = true;
  $("call").disabled = true;
  try {
    const c = await pb.call(to, opts);
    if (c.state !== "ended") track(c);
  } catch (err) {
    showError(err);
  } finally {
    dialing = false;
    render();
  }
}

async function answer() {
  if (!current || current.state !== "incoming") return;
  clearError();
  try {
    await current.answer();
  } catch (err) {
    showError(err);
  }
}

function dtmf(d) {
  if (!current || current.state === "incoming") return false;
  try {
    current.dtmf(d);
    return true;
  } catch (err) {
    showError(err);
    return false;
  }
}

function mute(on) {
  if (!current) return;
  current.mute(on);
  state.muted = current.muted;
  render();
}

window.patchbayApp = {
  connect,
  call,
  answer,
  dtmf,
  mute,
  hangup: () => current && current.hangup(),
  reject: () => current && current.reject(),
  disconnect: () => pb && pb.close(),
  // Drop the signalling socket as a network failure would: the page reconnects and resumes its call.
  // Drop the signalling socket as a network failure would, with no network for awayMs: the page reconnects and
  // resumes its call (or, past the grace, learns it ended).
  dropSocket: (awayMs = 0) => pb && pb._dropForTest(awayMs),
  iceServers: () => (pb ? pb.iceServers : []),
  stats: () => (current ? current.getStats() : null),
  join,
  leave: () => room && room.leave(),
  roomMute,
  camera,
  roomStats: () => (room ? room.stats() : null),
  shareScreen,
  stopShareOf,
};

$("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const t = $("token").value.trim();
  $("token").value = "";
  connect(t);
});
$("dial-form").addEventListener("submit", (e) => {
  e.preventDefault();
  call($("number").value);
});
$("keypad").addEventListener("click", (e) => {
  const key = e.target.closest("button")?.dataset.key;
  if (!key) return;
  if (!dtmf(key)) $("number").value += key;
});
$("answer").addEventListener("click", answer);
$("reject").addEventListener("click", () => current && current.reject());
$("hangup").addEventListener("click", () => current && current.hangup());
$("mute").addEventListener("click", () => mute(!state.muted));
$("disconnect").addEventListener("click", () => pb && pb.close());
$("join-form").addEventListener("submit", (e) => {
  e.preventDefault();
  join($("room-name").value.trim());
});
$("room-mute").addEventListener("click", () => roomMute(!state.roomMuted));
$("room-camera").addEventListener("click", () => camera(!state.camera));
$("room-share").addEventListener("click", () => shareScreen(!state.sharing));
$("room-stop-share").addEventListener("click", () => stopShareOf(state.screenFrom));
$("room-leave").addEventListener("click", () => room && room.leave());

// A token in the URL signs in at once; it is removed from the address bar and
// history so it is not shared by copy-paste or kept in history.
const urlToken = params.get("token");
if (urlToken) {
  params.delete("token");
  const q = params.toString();
  history.replaceState(null, "", location.pathname + (q ? `?${q}` : "") + location.hash);
  connect(urlToken);
}
render();
