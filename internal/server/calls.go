package server

import (
	"fmt"
	"log/slog"

	"github.com/patchbay/patchbay/dialplan"
	"github.com/patchbay/patchbay/internal/call"
	"github.com/patchbay/patchbay/internal/config"
	"github.com/patchbay/patchbay/internal/limits"
	"github.com/patchbay/patchbay/internal/tickets"
	"github.com/patchbay/patchbay/internal/webhook"
)

// pstnOptions builds the call limits, join tickets and webhook sender of outside calls and click-to-call. It runs
// after numberStore, whose Redis client the tickets share.
func (s *Server) pstnOptions(cfg *config.Config, log *slog.Logger) (call.PSTNOptions, error) {
	set := func(l config.LimitSet, scope string) *limits.Limiter {
		// Shared by every node in a cluster (cluster.go), else in this process.
		return s.clusterLimits(limits.Config{CallsPerMinute: l.CallsPerMinute, Burst: l.Burst, MaxConcurrent: l.MaxConcurrent, DailyMinutes: l.DailyMinutes,
			OnRefuse: s.obs.limitRefused(scope)})
	}
	if s.redis != nil {
		s.tickets = tickets.NewRedis(s.redis, cfg.Redis.Prefix)
	} else {
		s.tickets = tickets.NewMemory()
	}
	o := call.PSTNOptions{
		TokenLimits:     set(cfg.Limits.PerToken, "token"),
		APIKeyLimits:    set(cfg.Limits.PerAPIKey, "api_key"),
		PhoneLimits:     set(cfg.Limits.PerPhone, "phone"),
		PhoneCallerIDs:  cfg.Dialplan.PhoneCallerIDs,
		DefaultCallerID: cfg.Dialplan.PSTN.DefaultCallerID,
		DIDs:            map[string]string{},
		APICallerIDs:    cfg.API.CallerIDs,
		APIDial:         cfg.API.Dial,
		Tickets:         s.tickets,
		TicketTTL:       cfg.API.TicketTTL,
	}
	for did, target := range cfg.Dialplan.DIDs {
		o.DIDs[normalizeDID(did)] = target
	}
	if cfg.Webhook.URL != "" {
		w, err := webhook.New(webhook.Options{URL: cfg.Webhook.URL, Secret: []byte(cfg.Webhook.Secret.Reveal()),
			MaxAttempts: cfg.Webhook.MaxAttempts, Timeout: cfg.Webhook.Timeout, Logger: log.With("component", "webhook")})
		if err != nil {
			return o, fmt.Errorf("webhook: %w", err)
		}
		s.webhooks = w
	}
	o.Webhooks = s.clusterNotifier(s.webhooks) // in a cluster every API call's state is also stored in Redis
	return o, nil
}

// normalizeDID keys DIDs the way the call manager looks them up (config validation already refused bad ones).
func normalizeDID(did string) string {
	if n, err := dialplan.NormalizeNumber(did); err == nil {
		return n
	}
	return did
}
