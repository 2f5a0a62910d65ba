// Drives patchbay.js against a real signalling server (started by the Go
// test) with fake WebRTC and media objects. Run by web_test.go:
//   node --experimental-websocket client_e2e.mjs WS_URL TOKEN
import { Patchbay, PatchbayError } from "./patchbay.mjs";

const [url, token] = process.argv.slice(2);
const OFFER = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=rtpmap:0 PCMU/8000\r\n";
const log = [];

function assert(cond, what) {
  if (!cond) throw new Error(`assertion failed: ${what}\nlog: ${JSON.stringify(log)}`);
}

function waitFor(target, type, ms = 3000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timeout waiting for ${type}; log: ${JSON.stringify(log)}`)), ms);
    const fn = (d) => { clearTimeout(t); target.off(type, fn); resolve(d); };
    target.on(type, fn);
  });
}

const pcs = [];
class FakePC {
  constructor(cfg) {
    this.cfg = cfg;
    this.localDescription = null;
    this.remoteDescription = null;
    this.added = [];
    this.tracks = [];
    this.closed = false;
    this.connectionState = "new";
    pcs.push(this);
  }
  addTrack(t) { this.tracks.push(t); }
  addTransceiver() {}
  async createOffer() { return { type: "offer", sdp: OFFER }; }
  async createAnswer() { return { type: "answer", sdp: OFFER }; }
  async setLocalDescription(d) {
    this.localDescription = d;
    // Trickle one host candidate, then end-of-candidates, as a browser does.
    setTimeout(() => {
      const c = { candidate: "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host", sdpMid: "0", sdpMLineIndex: 0 };
      this.onicecandidate?.({ candidate: { ...c, toJSON: () => c } });
      this.onicecandidate?.({ candidate: null });
    }, 5);
  }
  async setRemoteDescription(d) { this.remoteDescription = d; }
  async addIceCandidate(c) { this.added.push(c); }
  close() { this.closed = true; }
}

function fakeStream() {
  const track = { kind: "audio", enabled: true, stopped: false, stop() { this.stopped = true; } };
  return { track, getAudioTracks: () => [track], getTracks: () => [track] };
}
let lastConstraints = null;
const gum = async (c) => { lastConstraints = c; return fakeStream(); };

// A bad token is refused with a stable code.
{
  const bad = new Patchbay({ url, token: "forged", RTCPeerConnection: FakePC, getUserMedia: gum });
  let code = "";
  try { await bad.connect(); } catch (e) { code = e.code; assert(e instanceof PatchbayError, "PatchbayError"); }
  assert(code === "unauthorized", `forged token gave ${code}`);
}

const pb = new Patchbay({
  url, token, RTCPeerConnection: FakePC, getUserMedia: gum, pingInterval: 100,
  audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
});
pb.on("error", (e) => log.push(`pb error ${e.code}`));
const authed = await pb.connect();
assert(authed.user === "alice" && pb.status === "connected", "authed as alice");
assert(pb.iceServers.length === 1 && pb.iceServers[0].urls[0] === "stun:127.0.0.1:3478", "ice servers from authed");

// 1. Outgoing call: answer + candidate (sent before the answer: buffered), ringing, answered.
const c1 = await pb.call("600");
assert(lastConstraints.audio.echoCancellation === false, "audio constraints passed to getUserMedia");
c1.on("statechange", (d) => log.push(`c1 ${d.state}`));
const ringing = waitFor(c1, "ringing");
const answered = waitFor(c1, "answered");
await ringing;
await answered;
assert(c1.state === "answered", `c1 state ${c1.state}`);
const pc1 = pcs[pcs.length - 1];
assert(pc1.cfg.iceServers.length === 1, "pc built with the server's ICE servers");
assert(pc1.remoteDescription?.type === "answer", "remote answer applied");
await new Promise((r) => setTimeout(r, 50));
assert(pc1.added.length === 1 && pc1.added[0].candidate.startsWith("candidate:"), "server candidate applied after answer");

// 2. DTMF both ways, mute.
const dt = waitFor(c1, "dtmf");
c1.dtmf("12#");
assert((await dt).digits === "5", "far-end dtmf");
let threw = false;
try { c1.dtmf("12;x"); } catch (e) { threw = e.code === "bad_message"; }
assert(threw, "junk digits refused locally");
c1.mute(true);
assert(c1.localStream.getAudioTracks()[0].enabled === false && c1.muted, "mute disables the track");
c1.mute(false);

// 3. Keepalive: several ping intervals pass without a dead-connection error.
await new Promise((r) => setTimeout(r, 350));
assert(pb.status === "connected", "still connected after pings");

// 4. Local hangup.
const h1 = waitFor(c1, "hangup");
c1.hangup();
const h1d = await h1;
assert(h1d.cause === "normal_clearing" && h1d.code === 16 && h1d.local, "local hangup");
assert(pc1.closed && c1.localStream.getAudioTracks()[0].stopped, "pc closed and mic released");

// 5. A refused destination ends the call with the server's error code.
const c2 = await pb.call("999");
const err2 = waitFor(c2, "error");
const h2 = waitFor(c2, "hangup");
assert((await err2).code === "forbidden_destination", "forbidden_destination error");
const h2d = await h2;
assert(h2d.error === "forbidden_destination" && h2d.code === 21, `refused call hangup ${JSON.stringify(h2d)}`);

// 6. Far end busy.
const c3 = await pb.call("700");
const h3d = await waitFor(c3, "hangup");
assert(h3d.cause === "user_busy" && h3d.code === 17 && !h3d.local, "busy");

// 7. Incoming call: answered here, then hung up by the far end.
const inc = waitFor(pb, "incoming");
const c4 = await pb.call("800"); // the test server rings us back
const ic = await inc;
assert(ic.direction === "incoming" && ic.peer === "100" && ic.peerName === "Bob" && ic.state === "incoming", "incoming call");
const icHang = waitFor(ic, "hangup");
await ic.answer();
assert(ic.state === "answered", "incoming answered");
const icd = await icHang;
assert(icd.cause === "normal_clearing" && !icd.local, "far end hung up the incoming call");
c4.hangup();

// 8. Incoming call rejected.
const inc2 = waitFor(pb, "incoming");
const c5 = await pb.call("801");
const ic2 = await inc2;
ic2.reject();
assert(ic2.state === "ended" && ic2.cause === "call_rejected", "rejected");
c5.hangup();

await new Promise((r) => setTimeout(r, 100)); // let the last frames go out
assert(pb.calls.size === 0, `calls left: ${pb.calls.size}`);
pb.close();
assert(pb.status === "closed", "closed");
assert(!log.some((l) => l.startsWith("pb error")), "no connection-level errors");
console.log("OK");
