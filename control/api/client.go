package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"syscall"
	"time"
)

// DefaultSocket is where the daemon listens unless the config says otherwise.
const DefaultSocket = "/run/xdpsec/xdpsec.sock"

// UnreachableError means the socket could not be connected to: the daemon
// is not running or runs with another api.socket, a dead daemon left its
// socket behind, or the caller may not use it.
type UnreachableError struct {
	Socket string
	Err    error
}

func (e *UnreachableError) Error() string {
	switch {
	case errors.Is(e.Err, os.ErrPermission):
		// The socket and its directory are root's alone (see Listen).
		return fmt.Sprintf("cannot reach xdpsecd at %s: permission denied; the API socket is root's only, run xdpsecctl as root", e.Socket)
	case errors.Is(e.Err, syscall.ECONNREFUSED):
		return fmt.Sprintf("cannot reach xdpsecd at %s: nothing listens there (xdpsecd is not running; the socket was left by one that died)", e.Socket)
	}
	return fmt.Sprintf("cannot reach xdpsecd at %s: is it running?", e.Socket)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// Client talks to one daemon's API socket.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client for the daemon listening on socket.
func NewClient(socket string) *Client {
	dialer := &net.Dialer{Timeout: 3 * time.Second}
	transport := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, "unix", socket)
		},
		DisableKeepAlives: true,
	}
	return &Client{socket: socket, http: &http.Client{Transport: transport}}
}

// Status fetches the daemon's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	err := c.do(ctx, http.MethodGet, "/v1/status", &s)
	return s, err
}

// Conns fetches the configured connections.
func (c *Client) Conns(ctx context.Context) ([]Conn, error) {
	var conns []Conn
	err := c.do(ctx, http.MethodGet, "/v1/conns", &conns)
	return conns, err
}

// SAs fetches the IKE SAs and their CHILD SAs.
func (c *Client) SAs(ctx context.Context) ([]IKESA, error) {
	var sas []IKESA
	err := c.do(ctx, http.MethodGet, "/v1/sas", &sas)
	return sas, err
}

// Stats fetches the data plane's and the IKE engine's counters.
func (c *Client) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	err := c.do(ctx, http.MethodGet, "/v1/stats", &st)
	return st, err
}

// UpTimeout bounds `up`: IKE gives up on a silent peer after about 165 s of
// retransmissions (RFC 7296 2.4 back-off), and the answer must outlast it.
const UpTimeout = 3 * time.Minute

// defaultTimeout bounds requests whose context has no deadline.
const defaultTimeout = 30 * time.Second

// Up asks the daemon to initiate conn and waits until it is established or
// has failed.
func (c *Client) Up(ctx context.Context, conn string) error {
	ctx, cancel := context.WithTimeout(ctx, UpTimeout)
	defer cancel()
	var out struct {
		Conn string `json:"conn"`
	}
	return c.do(ctx, http.MethodPost, "/v1/conns/"+url.PathEscape(conn)+"/up", &out)
}

// Down asks the daemon to delete conn's SAs, at the peer too, and waits
// until the peer answered or was given up.
func (c *Client) Down(ctx context.Context, conn string) error {
	ctx, cancel := context.WithTimeout(ctx, UpTimeout)
	defer cancel()
	var out ConnResult
	return c.do(ctx, http.MethodPost, "/v1/conns/"+url.PathEscape(conn)+"/down", &out)
}

// Rekey asks the daemon to rekey conn's IKE SA (child "") or its CHILD SA
// child, and waits until the new SA is in place.
func (c *Client) Rekey(ctx context.Context, conn, child string) error {
	ctx, cancel := context.WithTimeout(ctx, UpTimeout)
	defer cancel()
	path := "/v1/conns/" + url.PathEscape(conn) + "/rekey"
	if child != "" {
		path += "?" + url.Values{"child": {child}}.Encode()
	}
	var out ConnResult
	return c.do(ctx, http.MethodPost, path, &out)
}

// Reload asks the daemon to re-read its configuration file.
func (c *Client) Reload(ctx context.Context) (ReloadResult, error) {
	var r ReloadResult
	err := c.do(ctx, http.MethodPost, "/v1/reload", &r)
	return r, err
}

func (c *Client) do(ctx context.Context, method, path string, out any) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultTimeout)
		defer cancel()
	}
	// The host part is ignored by the unix dialer but must be a valid URL.
	req, err := http.NewRequestWithContext(ctx, method, "http://xdpsecd"+path, nil)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var opErr *net.OpError
		if errors.As(err, &opErr) && opErr.Op == "dial" {
			return &UnreachableError{Socket: c.socket, Err: err}
		}
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var apiErr Error
		if json.Unmarshal(body, &apiErr) == nil && apiErr.Error != "" {
			return errors.New(apiErr.Error)
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	return nil
}
