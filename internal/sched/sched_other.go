//go:build !linux

package sched

import "errors"

func setBatch() error {
	return errors.New("sched: SCHED_BATCH is Linux's; leave media.sched_batch off here")
}
