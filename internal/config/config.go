// Package config is Patchbay's one configuration: a commented struct with its defaults in one place, read from a
// YAML file, PATCHBAY_* environment variables and flags (in rising precedence) and validated at start with errors
// that name the key. The Asterisk configs are rendered from the same struct, so ports, credentials and certificate
// paths cannot disagree between the two.
package config

import (
	"strings"
	"time"
)

// Config is everything Patchbay reads at start.
type Config struct {
	// PublicHost is the name (or address) browsers use to reach Patchbay; it goes into the certificate.
	PublicHost string   `mapstructure:"public_host" yaml:"public_host"`
	HTTP       HTTP     `mapstructure:"http" yaml:"http"`
	ARI        ARI      `mapstructure:"ari" yaml:"ari"`
	Asterisk   Asterisk `mapstructure:"asterisk" yaml:"asterisk"`
	Media      Media    `mapstructure:"media" yaml:"media"`
	Auth       Auth     `mapstructure:"auth" yaml:"auth"`
	Redis      Redis    `mapstructure:"redis" yaml:"redis"`
	Certs      Certs    `mapstructure:"certs" yaml:"certs"`
	Log        Log      `mapstructure:"log" yaml:"log"`
	// Users maps numbers phones can dial (e.g. "7001", matching the dialplan's _7XXX) to browser user names.
	Users map[string]string `mapstructure:"users" yaml:"users"`
	// Dialplan, API, Limits and Webhook configure outside calls, click-to-call and their limits (calls.go).
	Dialplan Dialplan `mapstructure:"dialplan" yaml:"dialplan"`
	API      API      `mapstructure:"api" yaml:"api"`
	Limits   Limits   `mapstructure:"limits" yaml:"limits"`
	Webhook  Webhook  `mapstructure:"webhook" yaml:"webhook"`

	// Rooms configures conferences of browsers and phones (rooms.go).
	Rooms Rooms `mapstructure:"rooms" yaml:"rooms"`

	// Metrics is the Prometheus endpoint (observability.go).
	Metrics Metrics `mapstructure:"metrics" yaml:"metrics"`
	// Calls sets how calls are set up, watched, torn down and recorded (lifecycle.go, observability.go).
	Calls Calls `mapstructure:"calls" yaml:"calls"`
	// TURN and Signalling: reaching browsers on every network (network.go).
	TURN       TURN       `mapstructure:"turn" yaml:"turn"`
	Signalling Signalling `mapstructure:"signalling" yaml:"signalling"`
	// Recording records calls and rooms (cti.go).
	Recording Recording `mapstructure:"recording" yaml:"recording"`

	// Cluster makes this Patchbay one node of several sharing state in Redis (cluster.go).
	Cluster Cluster `mapstructure:"cluster" yaml:"cluster"`
}

// HTTP is Patchbay's own listener: the page, /ws signalling and /api.
type HTTP struct {
	Listen string `mapstructure:"listen" yaml:"listen"` // host:port; default ":8443"
	// TLS serves HTTPS/WSS with the certificate below. Browsers only allow getUserMedia on secure origins, so turn it
	// off only behind a TLS-terminating proxy.
	TLS      bool   `mapstructure:"tls" yaml:"tls"`
	CertFile string `mapstructure:"cert_file" yaml:"cert_file"` // default certs.dir/server.crt
	KeyFile  string `mapstructure:"key_file" yaml:"key_file"`   // default certs.dir/server.key
	// AllowedOrigins are the web origins (scheme://host[:port]) whose pages may open /ws. Empty: same host only.
	AllowedOrigins  []string      `mapstructure:"allowed_origins" yaml:"allowed_origins"`
	ShutdownTimeout time.Duration `mapstructure:"shutdown_timeout" yaml:"shutdown_timeout"` // calls get this long to end on SIGTERM
	// MaxUnauthenticatedPerIP and MaxUnauthenticated cap WebSocket connections that have not sent a valid token
	// yet, per remote address and in all; past them a new connection is closed with too_many_connections.
	MaxUnauthenticatedPerIP int `mapstructure:"max_unauthenticated_per_ip" yaml:"max_unauthenticated_per_ip"`
	MaxUnauthenticated      int `mapstructure:"max_unauthenticated" yaml:"max_unauthenticated"`
}

// ARI is how Patchbay reaches Asterisk's REST interface.
type ARI struct {
	URL      string `mapstructure:"url" yaml:"url"` // default http://127.0.0.1:8088
	User     string `mapstructure:"user" yaml:"user"`
	Password Secret `mapstructure:"password" yaml:"password"`
	App      string `mapstructure:"app" yaml:"app"` // Stasis application name
	// ConnectTimeout is how long `serve` waits for Asterisk at start before giving up with the reason.
	ConnectTimeout time.Duration `mapstructure:"connect_timeout" yaml:"connect_timeout"`
	// Instance prefixes the ID of every channel and bridge this Patchbay creates ("pb.<instance>."), so that after a
	// crash it recognises, and sweeps, what it left behind, and never touches another instance's. Empty: derived
	// from app. Two instances on one Asterisk need different app and instance values.
	Instance string `mapstructure:"instance" yaml:"instance"`
	// SweepInterval: resources of this instance that no live call holds are removed at start, after every
	// reconnect to ARI and this often.
	SweepInterval time.Duration `mapstructure:"sweep_interval" yaml:"sweep_interval"`
	// PingInterval and DeadAfter watch the events socket: silent for DeadAfter (no event, no pong) means Asterisk is
	// gone or frozen, and calls end at once with asterisk_lost unless Asterisk still answers a REST ping or its
	// media still arrives (then it is only slow).
	PingInterval time.Duration `mapstructure:"ping_interval" yaml:"ping_interval"`
	DeadAfter    time.Duration `mapstructure:"dead_after" yaml:"dead_after"`
}

// Asterisk describes the Asterisk side, used to render its configuration files.
type Asterisk struct {
	BindAddress string `mapstructure:"bind_address" yaml:"bind_address"` // HTTP/ARI listen address; keep loopback
	HTTPPort    int    `mapstructure:"http_port" yaml:"http_port"`
	HTTPSPort   int    `mapstructure:"https_port" yaml:"https_port"`
	SIPPort     int    `mapstructure:"sip_port" yaml:"sip_port"` // UDP and TCP
	SIPTLSPort  int    `mapstructure:"sip_tls_port" yaml:"sip_tls_port"`
	RTPStart    int    `mapstructure:"rtp_start" yaml:"rtp_start"`
	RTPEnd      int    `mapstructure:"rtp_end" yaml:"rtp_end"`
	// ExternalAddress is the public address phones and carriers see (NAT); empty when Asterisk is not behind NAT.
	ExternalAddress string   `mapstructure:"external_address" yaml:"external_address"`
	LocalNets       []string `mapstructure:"local_nets" yaml:"local_nets"`
	Phones          []Phone  `mapstructure:"phones" yaml:"phones"`
	// TimersSessExpires and TimersMinSE are the SIP session timers (RFC 4028) of phones and the trunk, in seconds.
	TimersSessExpires int `mapstructure:"timers_sess_expires" yaml:"timers_sess_expires"`
	TimersMinSE       int `mapstructure:"timers_min_se" yaml:"timers_min_se"`
	// Timers is yes (refresh peers that support session timers), always (every peer) or no.
	Timers string `mapstructure:"timers" yaml:"timers"`
	// Trunk is the single carrier of older configurations; Trunks replaces it (use one or the other).
	Trunk Trunk `mapstructure:"trunk" yaml:"trunk"`
	// Trunks are the SIP carriers, in order of preference (see dialplan.pstn.routes for who carries what).
	Trunks []Trunk `mapstructure:"trunks" yaml:"trunks"`
	// BenchWebRTCEndpoints renders that many Asterisk-native WebRTC endpoints (bench-webrtc-1..N: SIP over WSS,
	// DTLS-SRTP with the project's certificates, PCMU only, allowed to dial only the echo extension 600) for
	// `patchbay bench --native`, which compares Asterisk's own WebRTC with Patchbay's path. Their passwords are
	// derived from auth.token_secret. 0 (the default, and the value for production) renders none.
	BenchWebRTCEndpoints int `mapstructure:"bench_webrtc_endpoints" yaml:"bench_webrtc_endpoints"`
	// MOHDir is the music-on-hold directory Asterisk plays to held and transferred parties; empty: Patchbay's own
	// short tune, rendered beside the configuration (install asterisk-moh-opsound-wav and set
	// /usr/share/asterisk/moh for real music).
	MOHDir string `mapstructure:"moh_dir" yaml:"moh_dir"`
}

// Phone is a SIP softphone or desk phone registering to Asterisk.
type Phone struct {
	Name      string `mapstructure:"name" yaml:"name"` // extension number, e.g. "101"
	Password  Secret `mapstructure:"password" yaml:"password"`
	Transport string `mapstructure:"transport" yaml:"transport"` // udp, tcp, tls or wss (Asterisk-native WebRTC)
	SRTP      bool   `mapstructure:"srtp" yaml:"srtp"`           // SDES-SRTP; needs transport tls
}

// Trunk is a SIP carrier: its SIP side (rendered into pjsip.conf) and how Patchbay uses it.
type Trunk struct {
	Name string `mapstructure:"name" yaml:"name"`
	Host string `mapstructure:"host" yaml:"host"` // host or host:port
	// Port is the carrier's SIP port when Host has none; default 5060 (5061 with tls).
	Port      int      `mapstructure:"port" yaml:"port"`
	Transport string   `mapstructure:"transport" yaml:"transport"` // udp (default), tcp or tls
	Codecs    []string `mapstructure:"codecs" yaml:"codecs"`       // Asterisk codec names; default ulaw, alaw
	Username  string   `mapstructure:"username" yaml:"username"`
	Password  Secret   `mapstructure:"password" yaml:"password"`
	// Register sends an outbound registration with username and password. asterisk.trunk (the older single
	// trunk) registers whenever it has a username.
	Register   bool     `mapstructure:"register" yaml:"register"`
	Match      []string `mapstructure:"match" yaml:"match"` // source addresses identifying the carrier
	FromDomain string   `mapstructure:"from_domain" yaml:"from_domain"`
	// MaxChannels bounds this trunk's calls at once; a trunk at its limit passes the call to the next. 0: none.
	MaxChannels int `mapstructure:"max_channels" yaml:"max_channels"`
	// DialFormat and CallerIDFormat write the called number and the caller ID: e164 (default), digits or national.
	DialFormat     string `mapstructure:"dial_format" yaml:"dial_format"`
	CallerIDFormat string `mapstructure:"caller_id_format" yaml:"caller_id_format"`
	// CallerIDs are E.164 prefixes of the caller IDs this carrier accepts (empty: any); DefaultCallerID replaces
	// any other (without one, the trunk is skipped for that call).
	CallerIDs       []string `mapstructure:"caller_ids" yaml:"caller_ids"`
	DefaultCallerID string   `mapstructure:"default_caller_id" yaml:"default_caller_id"`
}

// Media is the browser-facing WebRTC side and the relay toward Asterisk.
type Media struct {
	// ICEPort is the one UDP port all browser media uses (ICE-lite, muxed).
	ICEPort int `mapstructure:"ice_port" yaml:"ice_port"`
	// ICETCPPort is the TCP port for passive ICE-TCP (RFC 6544), for browsers whose network blocks UDP; 0: off.
	ICETCPPort int `mapstructure:"ice_tcp_port" yaml:"ice_tcp_port"`
	// PublicIPs are advertised in ICE candidates (NAT 1:1). Set them when Patchbay is behind NAT: never guessed.
	PublicIPs []string `mapstructure:"public_ips" yaml:"public_ips"`
	// IncludeLoopback offers loopback candidates: only for single-host tests.
	IncludeLoopback bool `mapstructure:"include_loopback" yaml:"include_loopback"`
	// ICEIPs are the local addresses whose host candidates answers offer; empty: every address of every interface
	// (docker0, VPNs and all). Each one costs every call a candidate, goroutines and buffers, and every browser a
	// check; with PublicIPs set they all collapse into the public ones anyway.
	ICEIPs []string `mapstructure:"ice_ips" yaml:"ice_ips"`
	// Video lets browsers in a room see each other's cameras (VP8 through Patchbay's SFU). Audio-only calls
	// cost the same either way: video is only negotiated when a browser's offer has it.
	Video bool `mapstructure:"video" yaml:"video"`
	// H264 offers H.264 (constrained baseline, packetization-mode 1) beside VP8: a room whose browsers all support it
	// uses it (hardware encoders and decoders on phones and laptops); one that does not falls back to VP8.
	H264 bool `mapstructure:"h264" yaml:"h264"`
	// RelayHost is where Patchbay's one RTP socket toward Asterisk binds (externalMedia's external_host).
	RelayHost string `mapstructure:"relay_host" yaml:"relay_host"`
	// MaxCalls bounds the calls carrying browser media at once; past it new calls are refused (unavailable, "at
	// capacity") before anything is made in Asterisk. 0: no limit. Size it from the benchmark.
	MaxCalls       int           `mapstructure:"max_calls" yaml:"max_calls"`
	RelayPortStart int           `mapstructure:"relay_port_start" yaml:"relay_port_start"`
	RelayPortEnd   int           `mapstructure:"relay_port_end" yaml:"relay_port_end"`
	RelayDrain     time.Duration `mapstructure:"relay_drain" yaml:"relay_drain"`
	ICEServers     []ICEServer   `mapstructure:"ice_servers" yaml:"ice_servers"` // handed to browsers
	// LeanAudio carries audio-only calls on the lean path (batched socket I/O, SRTP done in place; see
	// docs/architecture.md); false puts every call on pion's track path, as rooms with video always are.
	LeanAudio bool `mapstructure:"lean_audio" yaml:"lean_audio"`
	// Pace reads a media socket (the browsers' ICE socket, the one toward Asterisk) on a timer of this period while
	// it carries more than PaceAbove datagrams a second (0: three per tick), instead of being woken for every
	// datagram: less CPU when each tick finds several, and a packet waits up to Pace in Patchbay (half of it on
	// average). 0: woken per datagram at any load. See docs/architecture.md.
	Pace      time.Duration `mapstructure:"pace" yaml:"pace"`
	PaceAbove int           `mapstructure:"pace_above" yaml:"pace_above"`
	// OpusDTX asks browsers to stop sending Opus in silence (usedtx=1 in Patchbay's SDP). Off by default: media
	// that stops looks like a dead browser to the watchdogs, and rooms mix no comfort noise.
	OpusDTX bool `mapstructure:"opus_dtx" yaml:"opus_dtx"`
	// MemoryLimitMiB is the Go runtime's soft memory limit (GOMEMLIMIT) for `serve`, so the collector works
	// harder before the process outgrows its container; the GOMEMLIMIT environment variable wins. 0: none.
	MemoryLimitMiB int `mapstructure:"memory_limit_mib" yaml:"memory_limit_mib"`
	// GCPercent is the collector's GOGC for `serve`: the heap may grow by this much of what is live before the next
	// collection. The media path allocates next to nothing per packet, so collections are rare either way, and a
	// lower value than Go's 100 keeps less garbage resident: about 90 KiB per call at 50 calls (docs/benchmarks.md).
	// The GOGC environment variable wins.
	GCPercent int `mapstructure:"gc_percent" yaml:"gc_percent"`
}

// ICEServer is a STUN or TURN server for browsers.
type ICEServer struct {
	URLs       []string `mapstructure:"urls" yaml:"urls"`
	Username   string   `mapstructure:"username" yaml:"username"`
	Credential Secret   `mapstructure:"credential" yaml:"credential"`
}

// Auth holds the secrets that sign browser tokens and admit backends.
type Auth struct {
	TokenSecret Secret        `mapstructure:"token_secret" yaml:"token_secret"` // ≥ 32 bytes
	TokenIssuer string        `mapstructure:"token_issuer" yaml:"token_issuer"`
	TokenTTL    time.Duration `mapstructure:"token_ttl" yaml:"token_ttl"` // default lifetime of minted tokens
	// MaxTokenLifetime refuses tokens whose lifetime (exp − iat) is longer: a leaked token stays useful for a
	// bounded time, whoever signed it.
	MaxTokenLifetime time.Duration `mapstructure:"max_token_lifetime" yaml:"max_token_lifetime"`
	// APIKeys maps a backend's name to its key for /api/v1.
	APIKeys map[string]Secret `mapstructure:"api_keys" yaml:"api_keys"`
}

// Redis holds the number→room store, tickets and, in a cluster, the state nodes share. One of three modes: Addr (one
// server), Addrs (a Redis Cluster: its seed nodes) or MasterName with Sentinels (a master found through Sentinel,
// followed across failovers). None: in-process stores (lost on restart).
type Redis struct {
	Addr  string   `mapstructure:"addr" yaml:"addr"`
	Addrs []string `mapstructure:"addrs" yaml:"addrs"`
	// MasterName is the master's name in Sentinel (sentinel monitor NAME ...); Sentinels their host:port addresses.
	MasterName       string   `mapstructure:"master_name" yaml:"master_name"`
	Sentinels        []string `mapstructure:"sentinels" yaml:"sentinels"`
	SentinelPassword Secret   `mapstructure:"sentinel_password" yaml:"sentinel_password"`
	Password         Secret   `mapstructure:"password" yaml:"password"`
	DB               int      `mapstructure:"db" yaml:"db"`
	Prefix           string   `mapstructure:"prefix" yaml:"prefix"`
}

// Enabled reports whether a Redis is configured (any mode).
func (r Redis) Enabled() bool { return r.Addr != "" || len(r.Addrs) > 0 || r.MasterName != "" }

// Where describes the configured Redis for logs and errors: an address, the cluster's seeds or the Sentinel master.
func (r Redis) Where() string {
	switch {
	case r.MasterName != "":
		return "Sentinel master " + r.MasterName + " via " + strings.Join(r.Sentinels, ",")
	case len(r.Addrs) > 0:
		return "Redis Cluster " + strings.Join(r.Addrs, ",")
	}
	return r.Addr
}

// Certs is where the CA and server certificate live, for Patchbay and Asterisk alike.
type Certs struct {
	Dir   string   `mapstructure:"dir" yaml:"dir"`
	Hosts []string `mapstructure:"hosts" yaml:"hosts"` // SANs; default public_host, localhost, 127.0.0.1
}

// Log sets logging.
type Log struct {
	Level  string `mapstructure:"level" yaml:"level"`   // debug, info, warn, error
	Format string `mapstructure:"format" yaml:"format"` // text or json
}

// Defaults returns the configuration used where nothing is set. Every default lives here.
func Defaults() Config {
	return Config{
		PublicHost: "localhost",
		HTTP: HTTP{
			Listen:                  ":8443",
			TLS:                     true,
			ShutdownTimeout:         30 * time.Second,
			MaxUnauthenticatedPerIP: 32,
			MaxUnauthenticated:      1024,
		},
		ARI: ARI{URL: "http://127.0.0.1:8088", User: "patchbay", App: "patchbay", ConnectTimeout: 15 * time.Second,
			SweepInterval: 30 * time.Second, PingInterval: time.Second, DeadAfter: 2 * time.Second},
		Asterisk: Asterisk{
			BindAddress: "127.0.0.1",
			HTTPPort:    8088,
			HTTPSPort:   8089,
			SIPPort:     5060,
			SIPTLSPort:  5061,
			RTPStart:    10000,
			RTPEnd:      20000,
			Trunk:       Trunk{Name: "carrier"},

			TimersSessExpires: 1800,
			TimersMinSE:       90,
			Timers:            "yes",
		},
		Media: Media{
			ICEPort:        50000,
			ICETCPPort:     50000,
			RelayHost:      "127.0.0.1",
			MemoryLimitMiB: 1024,
			GCPercent:      50,
			LeanAudio:      true,
			RelayPortStart: 40000,
			RelayPortEnd:   44999,
			RelayDrain:     2 * time.Second,
		},
		Auth:  Auth{TokenIssuer: "patchbay", TokenTTL: time.Hour, MaxTokenLifetime: 24 * time.Hour},
		Redis: Redis{Prefix: "patchbay:"},
		Rooms: DefaultRooms(),
		Certs: Certs{Dir: "/var/lib/patchbay/certs"},
		Log:   Log{Level: "info", Format: "text"},

		Dialplan: DefaultDialplan(),
		API:      API{TicketTTL: time.Minute},
		Limits:   DefaultLimits(),
		Metrics:  DefaultMetrics(),
		Calls:    DefaultCalls(),

		TURN:       DefaultTURN(),
		Signalling: DefaultSignalling(),
		Recording:  DefaultRecording(),
		Cluster:    DefaultCluster(),
	}
}
