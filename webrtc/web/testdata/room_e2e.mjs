// Drives patchbay.js's room API against a real signalling server (started by
// room_e2e_test.go) with fake WebRTC objects: join, joined, participants,
// server-initiated offers (answered once, a repeated offer answered the same
// way), a forwarded camera, speaking and leaving.
//   node --experimental-websocket room_e2e.mjs WS_URL TOKEN
import { Patchbay, PatchbayRoom } from "./patchbay.mjs";

const [url, token] = process.argv.slice(2);
const OFFER = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=rtpmap:0 PCMU/8000\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n";
const log = [];

function assert(cond, what) {
  if (!cond) throw new Error(`assertion failed: ${what}\nlog: ${JSON.stringify(log)}`);
}

function waitFor(target, type, pred = () => true, ms = 3000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timeout waiting for ${type}; log: ${JSON.stringify(log)}`)), ms);
    const fn = (d) => {
      if (!pred(d)) return;
      clearTimeout(t);
      target.off(type, fn);
      resolve(d);
    };
    target.on(type, fn);
  });
}

const pcs = [];
let answers = 0;
class FakePC {
  constructor(cfg) {
    this.cfg = cfg;
    this.signalingState = "stable";
    this.localDescription = null;
    this.remoteDescription = null;
    this.transceivers = [];
    this.tracks = [];
    this.connectionState = "new";
    pcs.push(this);
  }
  addTrack(t) { this.tracks.push(t); }
  addTransceiver(what, init) { this.transceivers.push({ what, init }); }
  async createOffer() { return { type: "offer", sdp: OFFER }; }
  async createAnswer() { answers++; return { type: "answer", sdp: OFFER.replace("o=- 1 1", `o=- 1 ${answers + 1}`) }; }
  async setLocalDescription(d) {
    if (d.type === "rollback") { this.signalingState = "stable"; return; }
    this.localDescription = d;
    this.signalingState = d.type === "offer" ? "have-local-offer" : "stable";
  }
  async setRemoteDescription(d) {
    this.remoteDescription = d;
    this.signalingState = d.type === "offer" ? "have-remote-offer" : "stable";
    if (d.type === "offer" && d.sdp.includes("msid:p-bob")) { // the SFU forwards Bob's camera
      const track = { kind: "video", id: "cam-bob" };
      const stream = { id: "p-bob", getVideoTracks: () => [track], getTracks: () => [track] };
      setTimeout(() => this.ontrack?.({ track, streams: [stream] }), 1);
    }
  }
  async addIceCandidate() {}
  async getStats() { return new Map([["v", { type: "inbound-rtp", kind: "video", trackIdentifier: "cam-bob", framesDecoded: 42 }]]); }
  close() { this.closed = true; }
}

function fakeStream(kind) {
  const track = { kind, enabled: true, stopped: false, stop() { this.stopped = true; } };
  return {
    track, getAudioTracks: () => (kind === "audio" ? [track] : []), getVideoTracks: () => (kind === "video" ? [track] : []),
    getTracks: () => [track],
  };
}
const gum = async (c) => fakeStream(c.video ? "video" : "audio");

const pb = new Patchbay({ url, token, RTCPeerConnection: FakePC, getUserMedia: gum, pingInterval: 0 });
pb.on("error", (e) => log.push(`pb error ${e.code}`));
await pb.connect();

let threw = "";
try { await pb.join({ room: "r1", ticket: "t" }); } catch (e) { threw = e.code; }
assert(threw === "bad_message", "join with two targets refused locally");

const joinedP = (room) => waitFor(room, "joined");
const room = await pb.join("r1");
assert(room instanceof PatchbayRoom, "join gives a PatchbayRoom");
// Everything below may arrive at once: listen first.
const joinedSeen = joinedP(room);
const videoSeen = waitFor(room, "video");
const speakingSeen = waitFor(room, "speaking", (d) => d.participantId === "p-phone");
const phoneGone = waitFor(room, "participants", (list) => list.length === 1);
room.on("error", (e) => log.push(`room error ${e.code} ${e.message}`));
const pc = pcs[pcs.length - 1];
assert(pc.transceivers.length === 1 && pc.transceivers[0].init.direction === "sendrecv", "camera sent both ways");
assert(room.localVideo && room.cameraOn, "camera open");

const joined = await joinedSeen;
assert(joined.you === "p-me" && joined.participants.length === 2 && joined.participants[0].you, `joined ${JSON.stringify(joined)}`);
assert(room.participants.get("p-phone").caller_id === "+441234", "phone participant with caller ID");

const video = await videoSeen;
assert(video.participantId === "p-bob" && room.tracks.has("p-bob"), "Bob's camera on his participant id");
const stats = await room.stats();
assert(stats.video.length === 1 && stats.video[0].participantId === "p-bob" && stats.video[0].framesDecoded === 42, "stats per participant");

const talking = await speakingSeen;
assert(talking.talking === true, "the phone speaks");
await phoneGone;
assert(!room.participants.has("p-phone"), "the phone left");

room.camera(false);
assert(room.localVideo.getVideoTracks()[0].enabled === false && !room.cameraOn, "camera off");
room.mute(true);
assert(room.localStream.getAudioTracks()[0].enabled === false, "muted");

const bye = waitFor(room, "hangup");
room.leave();
const b = await bye;
assert(b.local && b.cause === "normal_clearing", "left");
assert(room.localVideo.getVideoTracks()[0].stopped, "camera released");
console.log("OK");
pb.close();
process.exit(0);
