package client

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
)

// progressEvery is how often a change in flight shows the app's units.
const progressEvery = 500 * time.Millisecond

// unitJSON is one row of the containers list, with the fields this
// controller adds to v1's (host, message).
type unitJSON struct {
	Type    string `json:"type"`
	Num     int    `json:"num"`
	State   string `json:"state"`
	Release string `json:"release"`
	Host    string `json:"host"`
	Message string `json:"message"`
}

func (u unitJSON) line() string {
	s := fmt.Sprintf("%s.%d %s (%s)", u.Type, u.Num, u.State, u.Release)
	if u.Host != "" {
		s += " on " + u.Host
	}
	if u.Message != "" {
		s += ": " + u.Message
	}
	return s
}

// change sends a request that changes what runs (scale, restart, config,
// rollback, pull) and, while the controller waits for the deploy, prints
// each unit of the app as its state changes: the user sees the rollout,
// not a silent minute. The answer is the controller's: done, or the cause
// of the failure (non-zero exit). On Ctrl-C the change stays (it was sent;
// the platform goes on with it) and the CLI says so.
func (c *CLI) change(a *api, app, method, path string, body, into any) (*response, error) {
	type answer struct {
		r   *response
		err error
	}
	seen := c.unitStates(a, app, nil) // what ran before: not news
	done := make(chan answer, 1)
	go func() {
		r, err := a.call(method, path, body, into)
		done <- answer{r, err}
	}()
	var interrupt <-chan os.Signal
	if c.CatchInterrupt != nil {
		ch, stop := c.CatchInterrupt()
		defer stop()
		interrupt = ch
	}
	tick := time.NewTicker(progressEvery)
	defer tick.Stop()
	for {
		select {
		case ans := <-done:
			c.unitStates(a, app, seen) // the last steps before the answer
			return ans.r, ans.err
		case <-tick.C:
			seen = c.unitStates(a, app, seen)
		case <-interrupt:
			fmt.Fprintf(c.Stderr, "\nInterrupted. The change was sent and stays: the platform goes on with it. 'deis ps -a %s' shows where it is.\n", app)
			return nil, exitError{130}
		}
	}
}

// unitStates lists the app's units and prints each one whose state
// differs from prev, and each one gone since; with prev nil it only
// records. When the list cannot be read it keeps prev: progress is a
// courtesy, the change's own answer decides the outcome.
func (c *CLI) unitStates(a *api, app string, prev map[string]string) map[string]string {
	var units []unitJSON
	if _, err := a.list("/v1/apps/"+app+"/containers/", 1000, &units); err != nil {
		return prev
	}
	now := make(map[string]string, len(units))
	for _, u := range units {
		id := fmt.Sprintf("%s.%d (%s)", u.Type, u.Num, u.Release)
		now[id] = u.line()
		if prev != nil && prev[id] != now[id] {
			fmt.Fprintln(c.Stdout, "  "+now[id])
		}
	}
	var gone []string
	for id := range prev {
		if _, ok := now[id]; !ok {
			gone = append(gone, id)
		}
	}
	sort.Strings(gone)
	for _, id := range gone {
		name, rel, _ := strings.Cut(id, " ")
		fmt.Fprintf(c.Stdout, "  %s removed %s\n", name, rel)
	}
	return now
}
