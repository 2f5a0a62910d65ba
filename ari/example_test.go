package ari_test

import (
	"context"
	"log"

	"github.com/patchbay/patchbay/ari"
)

// A call's owner makes the IDs, subscribes to them, then creates the
// resources: no event of theirs can be missed.
func Example() {
	ctx := context.Background()
	c, err := ari.New(ari.Config{URL: "http://127.0.0.1:8088", Username: "patchbay", Password: "secret", Application: "patchbay"})
	if err != nil {
		log.Fatal(err)
	}
	go func() { _ = c.Run(ctx) }() // in real code: owned by an errgroup and stopped via ctx
	if err := c.WaitConnected(ctx); err != nil {
		log.Fatal(err)
	}

	phone, media, bridge := ari.NewID(), ari.NewID(), ari.NewID()
	sub := c.Subscribe(ari.Filter{Name: "call-1", IDs: []string{phone, media, bridge}})
	defer sub.Close()

	if _, err := c.Bridges().Create(ctx, ari.BridgeRequest{ID: bridge}); err != nil {
		log.Fatal(err)
	}
	if _, err := c.Channels().Originate(ctx, ari.OriginateRequest{
		Endpoint: "PJSIP/101", App: c.Application(), Formats: "ulaw", ChannelID: phone,
	}); err != nil {
		log.Fatal(err)
	}
	em, err := c.Channels().ExternalMedia(ctx, ari.ExternalMediaRequest{
		App: c.Application(), ExternalHost: "127.0.0.1:40000", Format: "ulaw", ChannelID: media,
	})
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("send RTP to %s from 127.0.0.1:40000", em.LocalAddrPort())

	for ev := range sub.Events() {
		switch e := ev.(type) {
		case *ari.StasisStart:
			if e.Channel.ID != phone { // the media leg's StasisStart, already awaited by ExternalMedia
				continue
			}
			// The phone answered.
			if err := c.Bridge(bridge).AddChannel(ctx, ari.AddChannelOptions{}, e.Channel.ID, media); err != nil {
				log.Print(err)
			}
		case *ari.ChannelDestroyed:
			_ = c.Bridge(bridge).Delete(ctx)
			return
		case *ari.Reconciled: // events were lost while the socket was down
			for _, id := range e.GoneChannels {
				if id == phone {
					_ = c.Bridge(bridge).Delete(ctx)
					return
				}
			}
		}
	}
}
