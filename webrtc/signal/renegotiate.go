package signal

// TypeOffer is used both ways on a live call.
//
// Server→browser: a server-initiated offer on a live room call: the SFU (webrtc/sfu) adds or removes other
// browsers' cameras. CallID names the call and SDP carries the offer. The browser applies it and replies with an
// "answer" (TypeAnswer, same CallID) holding its SDP answer. One offer at a time; changes made while an offer is
// outstanding are folded into one follow-up offer. An "answer" when no offer is outstanding is refused with
// bad_message and changes nothing.
//
// Browser→server: an ICE restart (new ice-ufrag/ice-pwd, same media) after the browser's network changed; the
// server applies it to the call's peer (media.Peer.Restart, DTLS and SRTP untouched) and replies "answer". The
// server is the impolite peer: a browser offer that arrives while a server offer is outstanding is ignored, and
// the browser (polite) rolls its own back, answers, and restarts again afterwards.
const TypeOffer = "offer"

// OfferMessage builds a renegotiation offer for the browser.
func OfferMessage(callID, sdp string) Message {
	return Message{Type: TypeOffer, CallID: callID, SDP: sdp}
}
