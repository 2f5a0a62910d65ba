// The agent console (/agent): the customers waiting in rooms mapped to numbers, the call in progress (hold,
// transfer, recording, timer, video) and, for supervisors, every live call with listen / whisper / barge. What a
// test needs is mirrored in window.patchbayConsole; window.consoleApp drives the page.
import { Patchbay } from "./patchbay.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const flag = (name, dflt) => {
  const v = params.get(name);
  return v === null ? dflt : !/^(0|false|no|off)$/i.test(v);
};
const audio = {
  echoCancellation: flag("echoCancellation", true),
  noiseSuppression: flag("noiseSuppression", true),
  autoGainControl: flag("autoGainControl", true),
};
const withVideo = flag("video", true);

const state = {
  status: "idle",
  user: "",
  lastError: "",
  queue: [], // {room, number, caller_id, name, kind, since, wait_s}
  calls: [], // supervisors: live calls
  supervisor: false,
  callState: "idle", // idle | ringing | connecting | answered | ended
  customer: "",
  seconds: 0,
  held: false,
  heldByFar: false,
  recording: false,
  transferredTo: "",
  videoTiles: 0,
  supervising: "", // the call id supervised
  mode: "",
};
window.patchbayConsole = state;

let pb = null;
let current = null; // the agent's call or room
let incoming = null;
let sup = null; // a supervision
let answeredAt = 0;
let poll = null;

function showError(err) {
  state.lastError = (err && err.code) || "internal";
  const box = $("error");
  box.textContent = `${state.lastError}: ${(err && err.message) || ""}`;
  box.hidden = false;
}

function mmss(s) {
  s = Math.max(0, Math.floor(s));
  return `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function button(text, cls, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  if (cls) b.className = cls;
  b.addEventListener("click", onClick);
  return b;
}

function renderQueue() {
  const body = $("queue");
  body.replaceChildren();
  const now = Date.now();
  for (const q of state.queue) {
    const tr = document.createElement("tr");
    tr.dataset.room = q.room;
    const waited = q.since ? (now - Date.parse(q.since)) / 1000 : q.wait_s;
    const act = document.createElement("td");
    const b = button("Answer", "go", () => answer(q.number));
    b.disabled = Boolean(current);
    act.append(b);
    tr.append(cell(q.caller_id || q.name || "unknown"), cell(q.number, "num"), cell(mmss(waited), "num wait"), act);
    body.append(tr);
  }
  $("queue-count").textContent = String(state.queue.length);
  $("queue-empty").hidden = state.queue.length > 0;
}

function renderLive() {
  $("sup-panel").hidden = !state.supervisor;
  const body = $("live");
  body.replaceChildren();
  const now = Date.now();
  for (const c of state.calls) {
    const tr = document.createElement("tr");
    tr.dataset.call = c.id;
    const with_ = c.room ? `room ${c.room.slice(0, 8)}` : c.kind === "phone_in" ? c.from : c.to;
    const since = c.answered || c.started;
    const flags = [c.held ? "held" : "", c.recording ? "recording" : ""].filter(Boolean).join(", ") || "talking";
    const act = document.createElement("td");
    for (const mode of ["listen", "whisper", "barge"]) {
      const b = button(mode[0].toUpperCase() + mode.slice(1), state.supervising === c.id && state.mode === mode ? "go" : "", () => supervise(c.id, mode));
      b.dataset.mode = mode;
      act.append(b);
    }
    tr.append(cell(c.user || ""), cell(with_ || ""), cell(mmss((now - Date.parse(since)) / 1000), "num"), cell(flags), act);
    body.append(tr);
  }
  $("live-empty").hidden = state.calls.length > 0;
  const s = $("supervising");
  s.hidden = !state.supervising;
  s.textContent = state.supervising ? `Supervising (${state.mode}). ` : "";
  if (state.supervising) s.append(button("Stop", "stop", stopSupervising));
}

function renderCall() {
  const inCall = Boolean(current) && state.callState !== "ended";
  $("call-panel").hidden = !inCall;
  $("ringing").hidden = !incoming;
  if (incoming) $("ringing-text").textContent = `Incoming call from ${incoming.peerName || incoming.peer || "unknown"}`;
  $("customer").textContent = state.customer;
  $("timer").textContent = mmss(state.seconds);
  $("rec").hidden = !state.recording;
  $("held").hidden = !(state.held || state.heldByFar);
  $("held").textContent = state.heldByFar ? "Held by the customer" : "On hold";
  $("hold").textContent = state.held ? "Resume" : "Hold";
  $("hold").setAttribute("aria-pressed", String(state.held));
  $("record").textContent = state.recording ? "Stop recording" : "Record";
  $("record").setAttribute("aria-pressed", String(state.recording));
  const labels = { idle: "Not connected", connecting: "Connecting…", connected: "Connected", closed: "Disconnected" };
  $("status").textContent = inCall ? `Call ${state.callState}` : labels[state.status] || state.status;
}

function render() {
  const connected = state.status === "connected";
  $("login").hidden = connected;
  $("desk").hidden = !connected;
  $("who").textContent = state.user ? `(${state.user})` : "";
  renderQueue();
  renderLive();
  renderCall();
}

// Video: the customer's camera large (pinned), ours small.
function renderTiles(room) {
  const ul = $("tiles");
  ul.replaceChildren();
  let n = 0;
  const add = (stream, label, pinned, mirror) => {
    const li = document.createElement("li");
    li.className = "tile" + (pinned ? " pinned" : "");
    const v = document.createElement("video");
    v.autoplay = true;
    v.playsInline = true;
    v.muted = true;
    v.srcObject = stream;
    if (mirror) v.style.transform = "scaleX(-1)";
    const l = document.createElement("div");
    l.className = "label";
    l.textContent = label;
    li.append(v, l);
    ul.append(li);
    v.play().catch(() => {});
  };
  if (room && room.tracks) {
    for (const [pid, stream] of room.tracks) {
      const p = room.participants.get(pid);
      add(stream, (p && (p.name || p.caller_id)) || "Customer", true, false);
      n++;
    }
    // A phone has no camera: an audio tile with its caller ID, pinned like a camera would be.
    for (const p of room.participants ? room.participants.values() : []) {
      if (p.you || p.kind !== "phone") continue;
      const li = document.createElement("li");
      li.className = "tile phone pinned";
      const av = document.createElement("div");
      av.className = "avatar";
      av.textContent = "☎";
      const l = document.createElement("div");
      l.className = "label";
      l.textContent = p.caller_id || p.name || "Phone";
      li.append(av, l);
      ul.prepend(li);
    }
    if (room.localVideo && room.cameraOn) add(room.localVideo, "You", false, true);
  }
  state.videoTiles = n;
}

function tick() {
  if (answeredAt) state.seconds = Math.floor((Date.now() - answeredAt) / 1000);
  renderCall();
  renderQueue();
}

function track(c, customer) {
  current = c;
  answeredAt = 0;
  Object.assign(state, { callState: c.state === "joined" ? "answered" : "connecting", customer, seconds: 0, held: false,
    heldByFar: false, recording: false, transferredTo: "" });
  const up = () => {
    if (!answeredAt) answeredAt = Date.now();
    state.callState = "answered";
    render();
  };
  c.on("answered", up);
  c.on("joined", up);
  c.on("participants", (list) => {
    const other = list.find((p) => !p.you);
    if (other) state.customer = other.caller_id || other.name || state.customer;
    renderTiles(c);
    render();
  });
  c.on("video", () => renderTiles(c));
  c.on("videoended", () => renderTiles(c));
  const play = ({ stream }) => {
    const el = $("remote");
    el.srcObject = stream;
    el.play().catch(() => {});
  };
  c.on("audio", play);
  c.on("track", ({ stream, track: tr }) => {
    if (!tr || tr.kind === "audio") play({ stream });
  });
  c.on("held", ({ by }) => {
    if (by === "far") state.heldByFar = true;
    else state.held = true;
    render();
  });
  c.on("resumed", ({ by }) => {
    if (by === "far") state.heldByFar = false;
    else state.held = false;
    render();
  });
  c.on("recording", ({ recording }) => {
    state.recording = recording;
    render();
  });
  c.on("transferred", ({ to }) => {
    state.transferredTo = to;
  });
  c.on("error", showError);
  c.on("hangup", () => {
    if (current !== c) return;
    current = null;
    answeredAt = 0;
    Object.assign(state, { callState: "ended", held: false, heldByFar: false, recording: false, videoTiles: 0 });
    $("remote").srcObject = null;
    $("tiles").replaceChildren();
    render();
    refresh();
  });
  render();
}

// answer takes a waiting customer: join the room mapped to their number, with video.
async function answer(number) {
  if (!pb || current) return null;
  try {
    const r = await pb.join({ number }, { video: withVideo, audio });
    if (r.state !== "ended") track(r, number);
    return r.id;
  } catch (err) {
    showError(err);
    return null;
  }
}

async function take() {
  const c = incoming;
  if (!c) return;
  incoming = null;
  try {
    await c.answer();
    track(c, c.peerName || c.peer);
    if (!answeredAt) answeredAt = Date.now();
    state.callState = "answered";
  } catch (err) {
    showError(err);
  }
  render();
}

function hold(on) {
  if (!current) return;
  try {
    if (on) current.hold();
    else current.resume();
  } catch (err) {
    showError(err);
  }
}

function record(on) {
  if (!current) return;
  try {
    current.record(on);
  } catch (err) {
    showError(err);
  }
}

function transfer(to) {
  if (!current || !to) return;
  try {
    current.transfer(to);
  } catch (err) {
    showError(err);
  }
}

async function supervise(target, mode) {
  if (!pb) return;
  if (sup && state.supervising === target) {
    sup.supervise(mode);
    state.mode = mode;
    renderLive();
    return;
  }
  if (sup) sup.hangup();
  try {
    const s = await pb.supervise(target, mode, { audio });
    sup = s;
    Object.assign(state, { supervising: target, mode });
    s.on("track", ({ stream }) => {
      const el = $("remote");
      el.srcObject = stream;
      el.play().catch(() => {});
    });
    s.on("error", showError);
    s.on("hangup", () => {
      if (sup !== s) return;
      sup = null;
      Object.assign(state, { supervising: "", mode: "" });
      renderLive();
    });
  } catch (err) {
    showError(err);
  }
  renderLive();
}

function stopSupervising() {
  if (sup) sup.hangup();
}

// roleOf reads the role claim of the token, only to show the supervisor's part of the page; the server decides.
function roleOf(token) {
  try {
    const b64 = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(b64)).role || "";
  } catch {
    return "";
  }
}

function refresh() {
  if (pb && pb.status === "connected") {
    try {
      pb.console();
    } catch { /* closing */ }
  }
}

async function connect(token) {
  if (pb && (pb.status === "connecting" || pb.status === "connected")) return;
  $("error").hidden = true;
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  pb = new Patchbay({ url: `${scheme}//${location.host}/ws`, token, audio });
  pb.on("statechange", ({ status }) => {
    state.status = status;
    if (status !== "connected" && poll) {
      clearInterval(poll);
      poll = null;
    }
    render();
  });
  pb.on("error", showError);
  pb.on("console", ({ queue, calls }) => {
    state.queue = queue;
    state.calls = calls;
    render();
  });
  pb.on("incoming", (c) => {
    if (current || incoming) return;
    incoming = c;
    state.callState = "ringing";
    c.on("hangup", () => {
      if (incoming === c) {
        incoming = null;
        state.callState = "idle";
        render();
      }
    });
    render();
  });
  try {
    const authed = await pb.connect();
    state.user = authed.display || authed.user || "";
    state.supervisor = roleOf(token) === "supervisor";
    refresh();
    poll = setInterval(() => {
      refresh();
      tick();
    }, 1000);
  } catch (err) {
    showError(err);
  }
  render();
}

window.consoleApp = {
  connect, refresh, answer, take, hold, record, transfer, supervise, stopSupervising,
  hangup: () => current && current.hangup(),
};

$("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const t = $("token").value.trim();
  $("token").value = "";
  connect(t);
});
$("take").addEventListener("click", take);
$("decline").addEventListener("click", () => incoming && incoming.reject());
$("hold").addEventListener("click", () => hold(!state.held));
$("record").addEventListener("click", () => record(!state.recording));
$("end").addEventListener("click", () => current && current.hangup());
$("transfer-form").addEventListener("submit", (e) => {
  e.preventDefault();
  transfer($("transfer-to").value.trim());
});

const urlToken = params.get("token");
if (urlToken) {
  params.delete("token");
  const q = params.toString();
  history.replaceState(null, "", location.pathname + (q ? `?${q}` : "") + location.hash);
  connect(urlToken);
}
render();
