package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/patchbay/patchbay/tools/synth"
)

// The native mode: the same synthetic callers, but each registers to Asterisk over SIP/WSS and runs ICE and
// DTLS-SRTP with Asterisk itself (chan_pjsip, webrtc=yes), as a browser with JsSIP or SIP.js would. Patchbay is
// not involved. With it the bench measures Asterisk-native WebRTC in the same way, on the same host, as it
// measures Patchbay, so the two can be compared as a ratio.

// Native says how to reach Asterisk's own WebRTC endpoints.
type Native struct {
	// WSS is Asterisk's TLS HTTP listener, host:port (http.conf tlsbindaddr); SIP goes to wss://WSS/ws.
	WSS string
	// TLS trusts Asterisk's certificate.
	TLS *tls.Config
	// Endpoint gives the i-th caller's endpoint name and password (asterisk.bench_webrtc_endpoints).
	Endpoint func(i int) (user, password string)
}

func (n *Native) validate() error {
	if n.WSS == "" || n.Endpoint == nil {
		return errors.New("bench: native mode needs Asterisk's WSS address and its endpoints")
	}
	host, port, err := net.SplitHostPort(n.WSS)
	if err != nil {
		return fmt.Errorf("bench: native WSS address %q: %w", n.WSS, err)
	}
	if _, err := strconv.Atoi(port); err != nil {
		return fmt.Errorf("bench: native WSS port %q is not a number", port)
	}
	return requireLoopback("Asterisk WSS", "wss://"+net.JoinHostPort(host, port))
}

// placeNativeCall registers caller i to Asterisk, calls o.To with an offer from a synthetic caller, and runs the
// call until ctx ends; then it hangs up with BYE and unregisters.
func placeNativeCall(ctx context.Context, eng *synth.Engine, o Options, i int) callOutcome {
	rep, err := NativeCall(ctx, eng, *o.Native, i+1, o.To, true,
		synth.CallOptions{Duration: -1, RecordMax: time.Second, Logger: o.CallLogs})
	return callOutcome{rep: rep, err: err}
}

// NativeCall is one Asterisk-native WebRTC call: endpoint i (1-based) of n registers over SIP/WSS, calls to with
// an offer from eng's synthetic caller (co: its tone, what it records), runs ICE and DTLS-SRTP with Asterisk itself
// until ctx ends (or co.Duration), then hangs up with BYE and unregisters. loopbackOnly drops Asterisk's
// candidates off 127.0.0.0/8 (an engine whose network is a test's namespace needs them). The bench places many;
// tests place one beside a browser to compare the two paths under the same conditions.
func NativeCall(ctx context.Context, eng *synth.Engine, n Native, i int, to string, loopbackOnly bool, co synth.CallOptions) (*synth.Report, error) {
	user, pass := n.Endpoint(i)
	server, err := WSSServerURI(n.WSS)
	if err != nil {
		return nil, err
	}
	// One user agent per caller: each has its own WebSocket to Asterisk, as each browser would.
	ua, err := NewWSSUserAgent(user, n.TLS)
	if err != nil {
		return nil, fmt.Errorf("native caller %s: user agent: %w", user, err)
	}
	defer ua.Close()
	cl, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"), sipgo.WithClientLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		return nil, fmt.Errorf("native caller %s: client: %w", user, err)
	}
	defer cl.Close()
	contact := sip.ContactHeader{Address: sip.Uri{User: user, Host: "127.0.0.1", UriParams: sip.NewParams()}}
	contact.Address.UriParams.Add("transport", "ws")

	setup, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := Register(setup, cl, server, contact, user, pass, 300); err != nil {
		return nil, fmt.Errorf("native caller %s: %w", user, err)
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = Register(uctx, cl, server, contact, user, pass, 0)
	}()

	dc := sipgo.NewDialogClientCache(cl, contact)
	var dlg *sipgo.DialogClientSession
	exchange := func(ctx context.Context, offer string) (string, error) {
		uri := server
		uri.User = to
		ictx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		d, err := dc.Invite(ictx, uri, []byte(offer), sip.NewHeader("Content-Type", "application/sdp"))
		if err != nil {
			return "", fmt.Errorf("INVITE %s: %w", to, err)
		}
		dlg = d
		if err := d.WaitAnswer(ictx, sipgo.AnswerOptions{Username: user, Password: pass}); err != nil {
			return "", fmt.Errorf("INVITE %s: %w", to, err)
		}
		if err := d.Ack(ictx); err != nil {
			return "", fmt.Errorf("ACK: %w", err)
		}
		return string(d.InviteResponse.Body()), nil
	}
	rep, err := eng.CallSDP(ctx, exchange, loopbackOnly, co)
	if dlg != nil {
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if dlg.InviteResponse != nil && dlg.InviteResponse.IsSuccess() {
			_ = dlg.Bye(bctx)
		}
		_ = dlg.Close()
		cancel()
	}
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		err = nil // the caller ended it
	}
	return rep, err
}

// NewWSSUserAgent is a SIP user agent that reaches Asterisk over WSS (its /ws path), logging nothing.
func NewWSSUserAgent(user string, tlsConf *tls.Config) (*sipgo.UserAgent, error) {
	quiet := slog.New(slog.DiscardHandler)
	return sipgo.NewUA(sipgo.WithUserAgent(user), sipgo.WithUserAgenTLSConfig(tlsConf),
		sipgo.WithUserAgentTransportLayerOptions(
			sip.WithTransportLayerLogger(quiet),
			sip.WithTransportLayerTransports(sip.TransportsConfig{WSS: &sip.TransportWSS{TransportWS: &sip.TransportWS{
				DialURI: func(addr string) string { return "wss://" + addr + "/ws" },
			}}})),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(quiet)))
}

// WSSServerURI is the SIP URI of Asterisk's WSS listener at host:port.
func WSSServerURI(addr string) (sip.Uri, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return sip.Uri{}, fmt.Errorf("native WSS address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return sip.Uri{}, fmt.Errorf("native WSS port %q: %w", portStr, err)
	}
	u := sip.Uri{Host: host, Port: port, UriParams: sip.NewParams()}
	u.UriParams.Add("transport", "wss")
	return u, nil
}

// Register sends REGISTER for user to server (expires 0 unregisters), answering a digest challenge. The lip-sync
// test's native browsers register with it too (test/testenv/sipwebrtc.go).
func Register(ctx context.Context, cl *sipgo.Client, server sip.Uri, contact sip.ContactHeader, user, pass string, expires int) error {
	to := server
	to.User = user
	req := sip.NewRequest(sip.REGISTER, to)
	req.AppendHeader(&contact)
	req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(expires)))
	res, err := cl.Do(ctx, req, sipgo.ClientRequestRegisterBuild)
	if err != nil {
		return fmt.Errorf("REGISTER: %w", err)
	}
	if res.StatusCode == sip.StatusUnauthorized || res.StatusCode == sip.StatusProxyAuthRequired {
		res, err = cl.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: user, Password: pass})
		if err != nil {
			return fmt.Errorf("REGISTER with credentials: %w", err)
		}
	}
	if !res.IsSuccess() {
		return fmt.Errorf("REGISTER refused: %d %s", res.StatusCode, res.Reason)
	}
	return nil
}
