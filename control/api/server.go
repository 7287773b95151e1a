package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"
)

// Backend is what the API exposes; the daemon implements it.
type Backend interface {
	Status(ctx context.Context) Status
	Conns(ctx context.Context) []Conn
	SAs(ctx context.Context) []IKESA
	Stats(ctx context.Context) (Stats, error)
	Initiate(ctx context.Context, conn string) error
	// Terminate deletes conn's SAs, at the peer too.
	Terminate(ctx context.Context, conn string) error
	// Rekey rekeys conn's IKE SA (child "") or its CHILD SA child.
	Rekey(ctx context.Context, conn, child string) error
	Reload(ctx context.Context) (ReloadResult, error)
}

// Listen opens the API socket. The parent directory is created private to
// root (0700) and the socket itself is 0600: whoever can talk to it can tear
// tunnels down. A socket file left by a crashed daemon is replaced, but one
// with a live daemon behind it is an error, so two daemons never share it.
func Listen(path string) (net.Listener, error) {
	if path == "" {
		return nil, errors.New("api socket path is empty")
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		conn, dialErr := net.DialTimeout("unix", path, time.Second)
		if dialErr == nil {
			conn.Close()
			return nil, fmt.Errorf("another xdpsecd is already listening on %s", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	// The umask closes the window between bind and chmod in which the socket
	// would otherwise be reachable by other users.
	oldMask := umask(0o177)
	ln, err := net.Listen("unix", path)
	umask(oldMask)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod socket: %w", err)
	}
	return ln, nil
}

// Server serves the /v1 API over a listener.
type Server struct {
	backend Backend
	log     *zap.Logger
	http    *http.Server
}

// NewServer wires the routes. Handlers never block on the data path; they
// read snapshots from the backend.
func NewServer(backend Backend, log *zap.Logger) *Server {
	s := &Server{backend: backend, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", s.handleStatus)
	mux.HandleFunc("GET /v1/conns", s.handleConns)
	mux.HandleFunc("POST /v1/reload", s.handleReload)
	mux.HandleFunc("GET /v1/sas", s.handleSAs)
	mux.HandleFunc("GET /v1/stats", s.handleStats)
	mux.HandleFunc("POST /v1/conns/{name}/up", s.handleUp)
	mux.HandleFunc("POST /v1/conns/{name}/down", s.handleDown)
	mux.HandleFunc("POST /v1/conns/{name}/rekey", s.handleRekey)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	s.http = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		// `up`, `down` and `rekey` wait for an exchange: allow them
		// more than UpTimeout.
		WriteTimeout: UpTimeout + 10*time.Second,
		ErrorLog:     zap.NewStdLog(log.Named("http")),
	}
	return s
}

// Serve answers requests until ctx is cancelled, then shuts down gracefully
// (bounded) and closes the listener, which removes the socket file.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	return ServeUntil(ctx, s.http, ln)
}

// ServeUntil runs srv on ln until ctx is cancelled, then shuts it down,
// giving requests in flight a bounded time to finish.
func ServeUntil(ctx context.Context, srv *http.Server, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http server on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("http shutdown: %w", err)
	}
	<-errc
	return nil
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.backend.Status(r.Context()))
}

func (s *Server) handleConns(w http.ResponseWriter, r *http.Request) {
	conns := s.backend.Conns(r.Context())
	if conns == nil {
		conns = []Conn{}
	}
	writeJSON(w, http.StatusOK, conns)
}

func (s *Server) handleSAs(w http.ResponseWriter, r *http.Request) {
	sas := s.backend.SAs(r.Context())
	if sas == nil {
		sas = []IKESA{}
	}
	writeJSON(w, http.StatusOK, sas)
}

func (s *Server) handleStats(w http.ResponseWriter, r *http.Request) {
	st, err := s.backend.Stats(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) handleUp(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	s.connAction(w, name, "", s.backend.Initiate(r.Context(), name))
}

func (s *Server) handleDown(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	s.connAction(w, name, "", s.backend.Terminate(r.Context(), name))
}

// handleRekey rekeys the IKE SA, or with ?child=NAME that CHILD SA.
func (s *Server) handleRekey(w http.ResponseWriter, r *http.Request) {
	name, child := r.PathValue("name"), r.URL.Query().Get("child")
	s.connAction(w, name, child, s.backend.Rekey(r.Context(), name, child))
}

// ConnResult is the answer of up, down and rekey.
type ConnResult struct {
	Conn  string `json:"conn"`
	Child string `json:"child,omitempty"`
}

// connAction answers an action on a connection: names the backend does
// not know are 404, failures of the peer or the exchange 502.
func (s *Server) connAction(w http.ResponseWriter, conn, child string, err error) {
	if err != nil {
		code := http.StatusBadGateway
		if errors.Is(err, ErrUnknownConn) || errors.Is(err, ErrUnknownChild) {
			code = http.StatusNotFound
		}
		writeError(w, code, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, ConnResult{Conn: conn, Child: child})
}

func (s *Server) handleReload(w http.ResponseWriter, r *http.Request) {
	res, err := s.backend.Reload(r.Context())
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	// The status line is already out; a failed write means the client left.
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, Error{Error: msg})
}
