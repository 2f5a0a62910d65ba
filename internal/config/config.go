// Package config is Patchbay's one configuration: a commented struct with its defaults in one place, read from a
// YAML file, PATCHBAY_* environment variables and flags (in rising precedence) and validated at start with errors
// that name the key. The Asterisk configs are rendered from the same struct, so ports, credentials and certificate
// paths cannot disagree between the two.
package config

import (
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

	// TURN and Signalling: reaching browsers on every network (network.go).
	TURN       TURN       `mapstructure:"turn" yaml:"turn"`
	Signalling Signalling `mapstructure:"signalling" yaml:"signalling"`
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
}

// ARI is how Patchbay reaches Asterisk's REST interface.
type ARI struct {
	URL      string `mapstructure:"url" yaml:"url"` // default http://127.0.0.1:8088
	User     string `mapstructure:"user" yaml:"user"`
	Password Secret `mapstructure:"password" yaml:"password"`
	App      string `mapstructure:"app" yaml:"app"` // Stasis application name
	// ConnectTimeout is how long `serve` waits for Asterisk at start before giving up with the reason.
	ConnectTimeout time.Duration `mapstructure:"connect_timeout" yaml:"connect_timeout"`
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
	Trunk  Trunk  `mapstructure:"trunk" yaml:"trunk"`
}

// Phone is a SIP softphone or desk phone registering to Asterisk.
type Phone struct {
	Name      string `mapstructure:"name" yaml:"name"` // extension number, e.g. "101"
	Password  Secret `mapstructure:"password" yaml:"password"`
	Transport string `mapstructure:"transport" yaml:"transport"` // udp, tcp or tls
	SRTP      bool   `mapstructure:"srtp" yaml:"srtp"`           // SDES-SRTP; needs transport tls
}

// Trunk is the SIP carrier.
type Trunk struct {
	Name       string   `mapstructure:"name" yaml:"name"`
	Host       string   `mapstructure:"host" yaml:"host"` // host[:port]
	Username   string   `mapstructure:"username" yaml:"username"`
	Password   Secret   `mapstructure:"password" yaml:"password"`
	Match      []string `mapstructure:"match" yaml:"match"` // source addresses identifying the carrier
	FromDomain string   `mapstructure:"from_domain" yaml:"from_domain"`
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
	// Video lets browsers in a room see each other's cameras (VP8 through Patchbay's SFU). Audio-only calls
	// cost the same either way: video is only negotiated when a browser's offer has it.
	Video bool `mapstructure:"video" yaml:"video"`
	// RelayHost is where Patchbay's per-call RTP sockets toward Asterisk bind (Asterisk's external_host).
	RelayHost      string        `mapstructure:"relay_host" yaml:"relay_host"`
	RelayPortStart int           `mapstructure:"relay_port_start" yaml:"relay_port_start"`
	RelayPortEnd   int           `mapstructure:"relay_port_end" yaml:"relay_port_end"`
	RelayDrain     time.Duration `mapstructure:"relay_drain" yaml:"relay_drain"`
	ICEServers     []ICEServer   `mapstructure:"ice_servers" yaml:"ice_servers"` // handed to browsers
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
	// APIKeys maps a backend's name to its key for /api/v1.
	APIKeys map[string]Secret `mapstructure:"api_keys" yaml:"api_keys"`
}

// Redis holds the number→room store. Empty Addr: an in-process store (lost on restart).
type Redis struct {
	Addr     string `mapstructure:"addr" yaml:"addr"`
	Password Secret `mapstructure:"password" yaml:"password"`
	DB       int    `mapstructure:"db" yaml:"db"`
	Prefix   string `mapstructure:"prefix" yaml:"prefix"`
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
			Listen:          ":8443",
			TLS:             true,
			ShutdownTimeout: 30 * time.Second,
		},
		ARI: ARI{URL: "http://127.0.0.1:8088", User: "patchbay", App: "patchbay", ConnectTimeout: 15 * time.Second},
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
			RelayPortStart: 40000,
			RelayPortEnd:   44999,
			RelayDrain:     2 * time.Second,
		},
		Auth:  Auth{TokenIssuer: "patchbay", TokenTTL: time.Hour},
		Redis: Redis{Prefix: "patchbay:"},
		Rooms: DefaultRooms(),
		Certs: Certs{Dir: "/var/lib/patchbay/certs"},
		Log:   Log{Level: "info", Format: "text"},

		Dialplan: DefaultDialplan(),
		API:      API{TicketTTL: time.Minute},
		Limits:   DefaultLimits(),

		TURN:       DefaultTURN(),
		Signalling: DefaultSignalling(),
	}
}
