// Drives patchbay.js's network behaviour against a real signalling server (started by network_e2e_test.go) with
// fake WebRTC objects:
//   node --experimental-websocket network_e2e.mjs WS_URL TOKEN FINAL_CODES_JSON
import { Patchbay, FINAL_CODES } from "./patchbay.mjs";

const [url, token, codesJSON] = process.argv.slice(2);
const finalCodes = JSON.parse(codesJSON);
const OFFER = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=rtpmap:0 PCMU/8000\r\n";
const log = [];

function assert(cond, what) {
  if (!cond) throw new Error(`assertion failed: ${what}\nlog: ${JSON.stringify(log.slice(-40))}`);
}
function waitFor(target, type, ms = 5000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timeout waiting for ${type}; log: ${JSON.stringify(log.slice(-40))}`)), ms);
    const fn = (d) => { clearTimeout(t); target.off(type, fn); resolve(d); };
    target.on(type, fn);
  });
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const pcs = [];
class FakePC {
  constructor(cfg) {
    this.cfg = cfg;
    this.localDescription = null;
    this.remoteDescription = null;
    this.signalingState = "stable";
    this.iceConnectionState = "new";
    this.offers = [];
    pcs.push(this);
  }
  getConfiguration() { return this.cfg; }
  setConfiguration(c) { this.cfg = c; }
  addTrack() {}
  addTransceiver() {}
  async createOffer(o) { this.offers.push(o || {}); return { type: "offer", sdp: OFFER + (o && o.iceRestart ? "a=ice-ufrag:new\r\n" : "") }; }
  async createAnswer() { return { type: "answer", sdp: OFFER }; }
  async setLocalDescription(d) {
    if (d.type === "rollback") { this.signalingState = "stable"; return; }
    this.localDescription = d;
    this.signalingState = d.type === "offer" ? "have-local-offer" : "stable";
    setTimeout(() => {
      const c = { candidate: "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host", sdpMid: "0", sdpMLineIndex: 0 };
      this.onicecandidate?.({ candidate: { ...c, toJSON: () => c } });
    }, 1);
  }
  async setRemoteDescription(d) { this.remoteDescription = d; this.signalingState = "stable"; }
  async addIceCandidate() {}
  setICE(s) { this.iceConnectionState = s; this.oniceconnectionstatechange?.(); }
  close() { this.closed = true; }
}
const track = { kind: "audio", enabled: true, stop() {} };
const gum = async () => ({ getAudioTracks: () => [track], getTracks: () => [track] });

const pb = new Patchbay({ url, token, RTCPeerConnection: FakePC, getUserMedia: gum, pingInterval: 0,
  reconnectBase: 50, reconnectMax: 200, restartTimeout: 3000 });
pb.on("error", (e) => log.push(`pb error ${e.code}`));
const authed = await pb.connect();
assert(Array.isArray(authed.ice_servers) && authed.ice_servers.length === 1, "authed carries the TURN server");
assert(/^\d+:alice$/.test(pb.iceServers[0].username) && pb.iceServers[0].credential, "TURN REST credentials");
assert(pb.resumeToken && pb.resumeGrace === 3000, "resume token and grace");

// 1. Fresh TURN credentials arrive in "refresh".
const firstToken = pb.resumeToken;
await waitFor(pb, "refresh", 2000);
assert(pb.resumeToken && pb.iceServers.length === 1, "refresh keeps TURN and a resume token");
log.push(`refresh ok (token changed: ${pb.resumeToken !== firstToken})`);

// 2. Every final code ends the call with its own reason; no unknown_call reaches the page.
assert(JSON.stringify(Object.keys(FINAL_CODES).sort()) === JSON.stringify([...finalCodes].sort()), "FINAL_CODES = wire's");
for (const code of finalCodes) {
  const pbErrors = [];
  const onErr = (e) => pbErrors.push(e.code);
  pb.on("error", onErr);
  const call = await pb.call(`refuse-${code}`);
  const errs = [];
  call.on("error", (e) => errs.push(e.code));
  const h = call.state === "ended" ? { cause: call.cause } : await waitFor(call, "hangup");
  await sleep(30); // let late candidates and the server's hangup arrive
  pb.off("error", onErr);
  assert(errs.length === 0 || errs[0] === code, `${code}: call error ${errs}`);
  assert(call.state === "ended" && h.cause === FINAL_CODES[code], `${code}: ended with ${h.cause}, want ${FINAL_CODES[code]}`);
  assert(!pbErrors.includes("unknown_call"), `${code}: the page was told unknown_call`);
  log.push(`refused ${code} → ${h.cause}`);
}

// 3. The socket drops mid-call: the client reconnects with backoff and resumes; the call stays.
const call = await pb.call("600");
await waitFor(call, "answered");
pcs.at(-1).setICE("connected");

// 2b. A refused request about a live call (a transfer to a forbidden number) carries a final code but not
// "final": the call goes on.
const refusedTransfer = waitFor(call, "error");
call.transfer("+4490055512345");
const te = await refusedTransfer;
await sleep(50);
assert(te.code === "forbidden_destination" && call.state === "answered" && !pcs.at(-1).closed,
  `a refused transfer ended the call: error ${te.code}, state ${call.state}`);
log.push("refused transfer: call goes on");
const reconnecting = waitFor(pb, "reconnecting");
const resumed = waitFor(pb, "resumed");
pb._dropForTest();
await reconnecting;
assert(pb.status === "reconnecting" && call.state !== "ended", "call held while reconnecting");
const r = await resumed;
assert(r.calls.includes(call.id) && call.state === "answered" && pb.status === "connected", `resumed ${JSON.stringify(r)}`);
log.push("resumed");

// 4. Media fails: the client restarts ICE over signalling and applies the server's answer.
const pc = pcs.at(-1);
const restarted = waitFor(call, "icerestart");
pc.setICE("failed");
await restarted;
await sleep(50);
assert(pc.offers.some((o) => o.iceRestart) && /ice-ufrag:restarted/.test(pc.remoteDescription.sdp), "restart answer applied");
const back = waitFor(call, "reconnected");
pc.setICE("connected");
await back;
assert(call.network === "ok", "call network ok after restart");
log.push("ice restart");

// 5. Disconnected media while signalling is down: the restart waits for the resume.
pc.setICE("disconnected");
pb._dropForTest();
await waitFor(pb, "resumed");
await waitFor(call, "icerestart", 4000);
pc.setICE("connected");
log.push("restart after resume");

// 5b. Pongs stop coming while the socket stays open (a path that drops them): the client gives the socket up and
// resumes, and its close must not tell the server it left (1000), or the server would end the call first.
const realSend = WebSocket.prototype.send;
WebSocket.prototype.send = function (data) {
  if (typeof data === "string" && JSON.parse(data).type === "ping") return; // lost on the way
  return realSend.call(this, data);
};
pb.pingInterval = 100; // read when a connection starts: the next one pings
pb._dropForTest();
await waitFor(pb, "resumed");
const gaveUp = waitFor(pb, "reconnecting", 3000);
const again = waitFor(pb, "resumed", 5000);
await gaveUp;
WebSocket.prototype.send = realSend;
pb.pingInterval = 0;
const r2 = await again;
assert(r2.calls.includes(call.id) && call.state === "answered", `after a pong timeout: resumed ${JSON.stringify(r2)}`);
log.push("pong timeout: resumed");

// 6. After the grace the server has ended the calls: the page is told signalling_lost.
const lost = waitFor(call, "hangup", 6000);
pb.reconnect = true;
// Keep the socket from coming back: point it at a closed port for the grace.
pb.url = url.replace(/:\d+\//, ":1/");
pb._dropForTest();
const hang = await lost;
assert(hang.cause === "signalling_lost", `after the grace: ${JSON.stringify(hang)}`);
pb.close();
console.log("OK", log.join("; "));
process.exit(0);
