package testenv

import (
	"testing"
	"time"
)

func TestImpairerFollowsTheNetemModel(t *testing.T) {
	start := time.Unix(1000, 0)
	im := Impairment{Loss: 0.05, Delay: 40 * time.Millisecond, Jitter: 30 * time.Millisecond,
		SpikeAt: 5 * time.Second, Spike: 200 * time.Millisecond, Seed: 16}
	fate := func() (drops []bool, ats []time.Time) {
		m := newImpairer(im, start)
		for i := range 3000 { // one minute of 20 ms packets
			d, at := m.decide(start.Add(time.Duration(i) * 20 * time.Millisecond))
			drops, ats = append(drops, d), append(ats, at)
		}
		return drops, ats
	}
	drops, ats := fate()
	lost, reordered, inSpike := 0, 0, 0
	var last time.Time
	for i, d := range drops {
		sent := start.Add(time.Duration(i) * 20 * time.Millisecond)
		if d {
			lost++
			continue
		}
		delay := ats[i].Sub(sent)
		spiked := sent.Sub(start) >= im.SpikeAt && sent.Sub(start) < im.SpikeAt+im.Spike
		switch {
		case spiked:
			inSpike++
			if end := start.Add(im.SpikeAt + im.Spike); ats[i].Before(end.Add(10 * time.Millisecond)) {
				t.Errorf("datagram %d sent in the stall arrives at %v, before its end plus the least delay", i, ats[i].Sub(start))
			}
		case delay < 10*time.Millisecond || delay > 70*time.Millisecond:
			t.Errorf("datagram %d delayed %v, outside 40 ms ± 30 ms", i, delay)
		}
		if ats[i].Before(last) {
			reordered++
		}
		if ats[i].After(last) {
			last = ats[i]
		}
	}
	if lost < 3000*3/100 || lost > 3000*7/100 {
		t.Errorf("%d of 3000 lost, want about 5%%", lost)
	}
	if reordered == 0 {
		t.Error("no datagram overtaken: 30 ms of jitter on 20 ms packets reorders some, as netem does")
	}
	if inSpike != 10-countTrue(drops[250:260]) {
		t.Errorf("%d datagrams held by the 200 ms stall, want the 10 sent during it less those lost", inSpike)
	}
	t.Logf("lost %d, reordered %d, held by the stall %d", lost, reordered, inSpike)
	// The same seed, the same fates.
	drops2, ats2 := fate()
	for i := range drops {
		if drops[i] != drops2[i] || !ats[i].Equal(ats2[i]) {
			t.Fatalf("datagram %d: a second run with the same seed differs", i)
		}
	}
	// The zero Impairment changes nothing.
	m := newImpairer(Impairment{}, start)
	for i := range 100 {
		now := start.Add(time.Duration(i) * time.Millisecond)
		if d, at := m.decide(now); d || !at.Equal(now) {
			t.Fatalf("zero impairment: drop %v, at %v for %v", d, at, now)
		}
	}
}

func countTrue(b []bool) int {
	n := 0
	for _, v := range b {
		if v {
			n++
		}
	}
	return n
}
