// The Patchbay page: sign in, dial, answer, hang up. All state a test needs is
// mirrored in window.patchbayState; window.patchbayApp drives the page.
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
  audio,
};
window.patchbayState = state;

let pb = null;
let current = null; // the one call this page shows
let dialing = false; // between the Call click and the offer going out

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
  const connected = state.status === "connected";
  $("login").hidden = connected;
  $("phone").hidden = !connected;
  $("user").textContent = state.user ? `(${state.user})` : "";
  const labels = { idle: "Not connected", connecting: "Connecting…", connected: "Connected", closed: "Disconnected" };
  let text = labels[state.status] || state.status;
  if (connected && current) text = `Call ${state.callState}`;
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
}

function track(call) {
  current = call;
  Object.assign(state, {
    callId: call.id, peer: call.peer, direction: call.direction, callState: call.state,
    cause: "", code: 0, muted: false, dtmfReceived: "",
  });
  $("dtmf-log").textContent = "";
  call.on("statechange", ({ state: s }) => {
    if (current === call) state.callState = s;
    render();
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
  pb.on("incoming", (call) => {
    if (current) return; // busy: leave it ringing on the user's other devices
    track(call);
    if (autoAnswer) answer();
  });
  try {
    const authed = await pb.connect();
    state.user = authed.display || authed.user || "";
    render();
    $("number").focus();
  } catch (err) {
    showError(err);
  }
}

async function call(to) {
  if (!pb || current || dialing) return;
  clearError();
  dialing = true;
  $("call").disabled = true;
  try {
    const c = await pb.call(to);
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
