package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/deis/dataplane/pkg/version"
)

// APIVersion is the controller API version this client speaks.
const APIVersion = "1.7"

// api is an authenticated connection to a controller.
type api struct {
	c        *CLI
	base     string // http(s)://host[:port]
	token    string
	verify   bool
	http     *http.Client
	warnOnce sync.Once // the version mismatch warning, once per run
}

func (c *CLI) newAPI(controller, token string, verify bool) *api {
	if !strings.Contains(controller, "://") {
		controller = "http://" + controller
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Minute, Transport: &http.Transport{
			Proxy:           http.ProxyFromEnvironment,
			DialContext:     dialLocalhost,
			TLSClientConfig: &tls.Config{InsecureSkipVerify: !verify}, //nolint:gosec // only with --ssl-verify=false, asked for by the user
		}}
	}
	return &api{c: c, base: strings.TrimRight(controller, "/"), token: token, verify: verify, http: hc}
}

// response is one answer: status, headers and body.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends one request with v1's headers and checks the API version.
func (a *api) do(method, path string, body any) (*response, error) {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Deis Client v"+version.Version)
	if a.token != "" {
		req.Header.Set("Authorization", "token "+a.token)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the controller at %s: %w", a.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("read the answer of %s %s: %w", method, path, err)
	}
	if v := resp.Header.Get("DEIS_API_VERSION"); v != "" && v != APIVersion {
		a.warnOnce.Do(func() {
			fmt.Fprintf(a.c.Stderr, "!    WARNING: Client and server API versions do not match (%s vs %s). Please consider upgrading.\n", APIVersion, v)
		})
	}
	return &response{resp.StatusCode, resp.Header, data}, nil
}

// call is do, with an answer outside 200-399 turned into an error that
// prints as v1 printed it.
func (a *api) call(method, path string, body any, into any) (*response, error) {
	r, err := a.do(method, path, body)
	if err != nil {
		return nil, err
	}
	if r.status < 200 || r.status > 399 {
		return r, &apiError{status: r.status, body: r.body}
	}
	if into != nil && len(r.body) > 0 {
		if err := json.Unmarshal(r.body, into); err != nil {
			return r, fmt.Errorf("the controller's answer to %s %s is not what this client expects: %w", method, path, err)
		}
	}
	return r, nil
}

// list fetches a paginated list with page_size = limit.
func (a *api) list(path string, limit int, into any) (count int, err error) {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	var page struct {
		Count   int             `json:"count"`
		Results json.RawMessage `json:"results"`
	}
	if _, err := a.call("GET", path+sep+"page_size="+url.QueryEscape(fmt.Sprint(limit)), nil, &page); err != nil {
		return 0, err
	}
	if err := json.Unmarshal(page.Results, into); err != nil {
		return 0, fmt.Errorf("the list at %s: %w", path, err)
	}
	return page.Count, nil
}

// apiError is an answer outside 200-399: "Error:", the status line, then
// the JSON fields, as v1.
type apiError struct {
	status int
	body   []byte
}

func (e *apiError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Error:\n%d %s\n", e.status, http.StatusText(e.status))
	var fields map[string]any
	if json.Unmarshal(e.body, &fields) == nil {
		keys := make([]string, 0, len(fields))
		for k := range fields {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			switch v := fields[k].(type) {
			case []any:
				for _, x := range v {
					fmt.Fprintf(&b, "%s: %v\n", k, x)
				}
			default:
				fmt.Fprintf(&b, "%s: %v\n", k, v)
			}
		}
		return strings.TrimRight(b.String(), "\n")
	}
	return strings.TrimRight(b.String()+string(e.body), "\n")
}

// dialLocalhost sends names under .localhost to loopback, as RFC 6761 asks
// of resolvers (and curl and browsers do): `make run`'s controller is at
// deis.localhost without any DNS set up. Other names resolve as usual.
func dialLocalhost(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err == nil && isLocalhostName(host) {
		addr = net.JoinHostPort("127.0.0.1", port)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// isLocalhostName reports whether host is localhost or a name under it.
func isLocalhostName(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	return host == "localhost" || strings.HasSuffix(host, ".localhost")
}

// stream copies a live answer (deis logs -f) to w until the controller
// ends it or the user interrupts.
func (a *api) stream(path string, w io.Writer) error {
	req, err := http.NewRequest("GET", a.base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "Deis Client v"+version.Version)
	req.Header.Set("Authorization", "token "+a.token)
	hc := *a.http
	hc.Timeout = 0 // a follow lasts as long as the user wants
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the controller at %s: %w", a.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return &apiError{status: resp.StatusCode, body: body}
	}
	_, err = io.Copy(w, resp.Body)
	return err
}
