// The pre-call check page (/check): runs Patchbay.check() and shows each step, then a verdict in plain words.
// Tests read window.patchbayCheck = {state: "idle"|"running"|"done", report, steps}.
import { Patchbay } from "./patchbay.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const flag = (name) => /^(0|false|no|off)$/i.test(params.get(name) || "") ? false : true;
const audio = { echoCancellation: flag("echoCancellation"), noiseSuppression: flag("noiseSuppression"), autoGainControl: flag("autoGainControl") };
const echo = params.get("echo") || "600";
const duration = Number(params.get("duration")) || 10000;

const state = { state: "idle", report: null, steps: {}, speaker: "" };
window.patchbayCheck = state;

const words = { running: "testing…", ok: "works", failed: "does not work", skipped: "not offered here" };

// pathWords turns a candidate path ("relay/tcp", "prflx/udp") into words a support agent understands.
function pathWords(path) {
  const [type, proto] = String(path || "").split("/");
  if (!type) return "";
  const p = (proto || "").toUpperCase();
  return type === "relay" ? `through the relay over ${p}` : `direct over ${p}`;
}

function show(stepName, status, detail) {
  state.steps[stepName] = { status, ...detail };
  const li = document.querySelector(`li[data-step="${stepName}"]`);
  if (!li) return;
  let text = words[status] || status;
  if (stepName === "microphone" && status !== "running") {
    text = detail.ok ? (detail.level === null ? "works" : `works (level ${detail.level})`) : `not available (${detail.error || "no permission"})`;
    $("mic-level").value = detail.level || 0;
  }
  if (stepName === "call" && detail && detail.seconds) {
    text = `${status === "running" ? "in progress" : words[status]}: ${detail.seconds} s, ` +
      `round trip ${detail.rttMs ?? "?"} ms, loss ${detail.lossPct == null ? "?" : detail.lossPct.toFixed(1)} %, ` +
      `jitter ${detail.jitterMs == null ? "?" : Math.round(detail.jitterMs)} ms${detail.path ? `, ${pathWords(detail.path)}` : ""}`;
  }
  if (detail && detail.tested === false) text = words.skipped;
  li.querySelector(".result").textContent = text;
  li.dataset.status = detail && detail.tested === false ? "skipped" : status;
}

async function run(token) {
  $("error").hidden = true;
  $("login").hidden = true;
  $("again").hidden = true;
  state.state = "running";
  $("verdict").textContent = "Checking…";
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const pb = new Patchbay({ url: `${scheme}//${location.host}/ws`, token, audio, reconnect: false });
  try {
    await pb.connect();
  } catch (err) {
    state.state = "done";
    $("error").textContent = `Could not sign in (${err.code}). Ask for a new link.`;
    $("error").hidden = false;
    $("login").hidden = false;
    return;
  }
  const report = await pb.check({
    echo, duration,
    onStep: ({ step, status, detail }) => {
      if (step === "done") return;
      show(step, status, detail || {});
    },
  });
  pb.close();
  state.report = report;
  state.state = "done";
  $("verdict").textContent = report.verdict;
  $("details").textContent = JSON.stringify({ microphone: report.microphone, paths: report.paths, call: report.call }, null, 2);
  $("again").hidden = false;
  $("again").onclick = () => run(token);
}

// Speakers: a short 440 Hz tone through WebAudio, then the person says whether they heard it.
$("speaker-play").addEventListener("click", async () => {
  const ac = new AudioContext();
  await ac.resume();
  const osc = ac.createOscillator();
  const gain = ac.createGain();
  gain.gain.value = 0.2;
  osc.frequency.value = 440;
  osc.connect(gain).connect(ac.destination);
  osc.start();
  osc.stop(ac.currentTime + 1);
  osc.onended = () => ac.close();
  $("speaker-yes").hidden = false;
  $("speaker-no").hidden = false;
});
$("speaker-yes").addEventListener("click", () => {
  state.speaker = "heard";
  $("speaker-result").textContent = "Your speakers work.";
});
$("speaker-no").addEventListener("click", () => {
  state.speaker = "not heard";
  $("speaker-result").textContent = "Check the volume and which output device your computer uses, then try again.";
});

$("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const t = $("token").value.trim();
  $("token").value = "";
  run(t);
});
const urlToken = params.get("token");
if (urlToken) {
  params.delete("token");
  const q = params.toString();
  history.replaceState(null, "", location.pathname + (q ? `?${q}` : ""));
  run(urlToken);
} else {
  $("login").hidden = false;
}
