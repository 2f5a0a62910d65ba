package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
)

// Status is what `patchbay cluster status` shows: every node in the directory with its load and heartbeat age,
// as the Redis server's clock sees them.
type Status struct {
	Nodes []Node `json:"nodes"`
	// Redis describes where the state lives (for the reader).
	Redis string `json:"redis"`
}

// ReadStatus reads the directory through any client (it needs no running node).
func ReadStatus(ctx context.Context, c redis.UniversalClient, prefix, where string) (Status, error) {
	nodes, _, err := ReadNodes(ctx, c, Keys{Prefix: prefix})
	if err != nil {
		return Status{}, err
	}
	return Status{Nodes: nodes, Redis: where}, nil
}

// Print writes the status as a table (or JSON).
func (s Status) Print(w io.Writer, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	}
	if len(s.Nodes) == 0 {
		_, err := fmt.Fprintf(w, "no nodes in the directory (%s): none has started with cluster.enabled, or none for an hour\n", s.Redis)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSTATE\tHEARTBEAT AGE\tCALLS\tROOMS\tSESSIONS\tCPU\tCEILING\tSIGNALLING URL\tSIP")
	for _, n := range s.Nodes {
		state := "up"
		switch {
		case !n.Alive:
			state = "DOWN"
		case n.Unavailable:
			state = "unavailable"
		case !n.underCeiling():
			state = "full"
		}
		ceiling := fmt.Sprintf("cpu %.0f%%", n.MaxCPU*100)
		if n.MaxCalls > 0 {
			ceiling += fmt.Sprintf(", %d calls", n.MaxCalls)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%.0f%%\t%s\t%s\t%s\n", n.ID, state, n.HeartbeatAge.Round(100*time.Millisecond),
			n.Calls, n.Rooms, n.Sessions, n.CPU*100, ceiling, n.PublicURL, n.SIPAddress)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var down []string
	for _, n := range s.Nodes {
		if !n.Alive {
			down = append(down, n.ID)
		}
	}
	if len(down) > 0 {
		_, err := fmt.Fprintf(w, "\nDOWN: %s stopped beating; their users and rooms have left the directory. Listed for an hour after.\n", strings.Join(down, ", "))
		return err
	}
	return nil
}
