package signal

// TypeOffer (server→browser) is a server-initiated offer on a live room call: the SFU (webrtc/sfu) adds or
// removes other browsers' cameras. CallID names the call and SDP carries the offer. The browser applies it and
// replies with an "answer" (TypeAnswer, same CallID) holding its SDP answer.
//
// Only the server offers after the call is set up, one offer at a time; changes made while an offer is
// outstanding are folded into one follow-up offer. A browser that finds itself with an offer of its own in
// flight rolls it back and answers (it is the polite peer). An "answer" when no offer is outstanding is refused
// with bad_message and changes nothing.
const TypeOffer = "offer"

// OfferMessage builds a renegotiation offer for the browser.
func OfferMessage(callID, sdp string) Message {
	return Message{Type: TypeOffer, CallID: callID, SDP: sdp}
}
