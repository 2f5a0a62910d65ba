// Drives patchbay.js's cluster redirect against two real signalling servers (started by redirect_e2e_test.go):
// node a answers the join with "redirect" to node b and a fresh ticket, then a hangup; patchbay.js joins node b
// with that ticket, and the app gets the new room through "redirect".
//   node --experimental-websocket redirect_e2e.mjs WS_URL_A TOKEN
import { Patchbay, PatchbayRoom } from "./patchbay.mjs";

const [url, token] = process.argv.slice(2);
const OFFER = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=rtpmap:0 PCMU/8000\r\n";
const log = [];

function assert(cond, what) {
  if (!cond) throw new Error(`assertion failed: ${what}\nlog: ${JSON.stringify(log)}`);
}

function waitFor(target, type, ms = 3000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timeout waiting for ${type}; log: ${JSON.stringify(log)}`)), ms);
    const fn = (d) => {
      clearTimeout(t);
      target.off(type, fn);
      resolve(d);
    };
    target.on(type, fn);
  });
}

class FakePC {
  constructor() { this.signalingState = "stable"; this.localDescription = null; this.remoteDescription = null; }
  addTrack() {}
  addTransceiver() {}
  async createOffer() { return { type: "offer", sdp: OFFER }; }
  async createAnswer() { return { type: "answer", sdp: OFFER }; }
  async setLocalDescription(d) { this.localDescription = d; }
  async setRemoteDescription(d) { this.remoteDescription = d; }
  async addIceCandidate() {}
  close() { this.closed = true; }
}
const gum = async () => {
  const track = { kind: "audio", enabled: true, stop() { this.stopped = true; } };
  return { getAudioTracks: () => [track], getVideoTracks: () => [], getTracks: () => [track] };
};

const pb = new Patchbay({ url, token, RTCPeerConnection: FakePC, getUserMedia: gum, pingInterval: 0 });
pb.on("error", (e) => log.push(`pb error ${e.code}`));
await pb.connect();
const room = await pb.join("standup", { video: false });
assert(room instanceof PatchbayRoom, "join gives a PatchbayRoom");
const hangup = waitFor(room, "hangup");
const moved = await waitFor(room, "redirect");
const h = await hangup;
assert(h.redirected === true && room.state === "ended", `the old room ends quietly: ${JSON.stringify(h)}`);
assert(moved.url !== url && moved.room instanceof PatchbayRoom && moved.patchbay.url === moved.url, "the redirect hands over the new room");
const joined = moved.room.state === "joined" ? { room: moved.room.room } : await waitFor(moved.room, "joined");
assert(joined.room === "standup", `joined on the room's node: ${JSON.stringify(joined)}`);
assert(pb.status === "connected", "the first connection stays for calls");
console.log("OK");
moved.patchbay.close();
pb.close();
process.exit(0);
