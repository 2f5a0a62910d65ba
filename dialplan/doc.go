// Package dialplan decides what a string dialled by a browser or an API
// client may become, and keeps the number→room mapping.
//
// Route never builds a dial string out of its input: it classifies the input,
// normalises it to a small alphabet ([0-9+] or a user name) and returns a
// Decision value. The only channel string it produces, Decision.Endpoint, is
// assembled from that validated number, so input like "500&SIP/itsp/1416…"
// (Asterisk's README-SERIOUSLY.bestpractices) can never reach Asterisk.
package dialplan
