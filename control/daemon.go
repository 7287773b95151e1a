// Package control is the daemon's brain: it owns the running configuration,
// the API and metrics servers, the IKE engine and the data plane, and wires
// negotiated SAs from the one into the other.
package control

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/xdpsec/xdpsec/control/api"
	"github.com/xdpsec/xdpsec/control/config"
	"github.com/xdpsec/xdpsec/ike"
	"github.com/xdpsec/xdpsec/offload"
	"github.com/xdpsec/xdpsec/offload/killswitch"
)

// Options configures a Daemon.
type Options struct {
	// ConfigPath is re-read on every reload.
	ConfigPath string
	Logger     *zap.Logger
	// Level is the logger's level; a reload applies log.level to it unless
	// LevelPinned says the operator chose it on the command line.
	Level       zap.AtomicLevel
	LevelPinned bool
}

// Daemon is one running xdpsecd instance.
type Daemon struct {
	opts    Options
	log     *zap.Logger
	started time.Time
	metrics *daemonMetrics
	dp      offload.Dataplane
	engine  *ike.Engine
	inst    *installer
	// ks is the afxdp data plane's kill switch (nil in other modes).
	ks *killswitch.Switch

	// reloadMu serialises reloads (SIGHUP and API may race); mu guards the
	// running configuration for readers.
	reloadMu sync.Mutex
	mu       sync.RWMutex
	cfg      *config.Config
	loadedAt time.Time
	// runCtx lives as long as Run; negotiations started by a reload use it
	// rather than the request that asked for the reload.
	runCtx context.Context
	// inits are the bring-ups of start_action start connections;
	// attempt, set by tests only, replaces Initiate in them.
	inits   initiations
	attempt func(ctx context.Context, conn string) error
}

// CheckSupported reports whether this build can run the configuration as a
// whole (beyond the schema validation the config package does).
func CheckSupported(cfg *config.Config) error {
	if !slices.Contains(supportedModes(), cfg.Dataplane.Mode) {
		return fmt.Errorf("dataplane.mode %q is not available in this build yet (available: %v): set dataplane.mode: none to run IKE without a data plane",
			cfg.Dataplane.Mode, supportedModes())
	}
	var errs []error
	for i, c := range cfg.Connections {
		if c.Auth == "pubkey" {
			// The schema knows the certificate keys, the IKE engine does
			// not authenticate with them yet: running would send an empty
			// pre-shared key and fail every IKE_AUTH misleadingly.
			errs = append(errs, fmt.Errorf("connections[%d].auth (%s): certificate authentication (auth: pubkey) is not implemented in this build yet; use auth: psk", i, c.Name))
		}
	}
	return errors.Join(errs...)
}

// New prepares a daemon for an already validated configuration.
func New(cfg *config.Config, opts Options) (*Daemon, error) {
	if opts.Logger == nil {
		return nil, errors.New("no logger")
	}
	if err := CheckSupported(cfg); err != nil {
		return nil, err
	}
	d := &Daemon{
		opts:     opts,
		log:      opts.Logger,
		started:  time.Now(),
		cfg:      cfg,
		loadedAt: time.Now(),
		inits:    initiations{byConn: map[string]*initiation{}},
	}
	d.metrics = newDaemonMetrics()
	d.metrics.connections.Set(float64(len(cfg.Connections)))
	for _, w := range config.Warnings(cfg) {
		d.log.Warn(w)
	}
	return d, nil
}

// open opens the API socket, the data plane, the metrics listener and the
// IKE engine for the running configuration. It holds reloadMu so that a SIGHUP arriving during
// start-up is applied after, not lost between, these steps.
func (d *Daemon) open(runCtx context.Context) (*listeners, *config.Config, error) {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	cfg := d.config()
	// A configuration the IKE layer cannot run fails before anything is
	// opened.
	conns, err := ikeConns(cfg)
	if err != nil {
		return nil, nil, err
	}
	// The API socket comes first: it tells a second daemon with the same
	// configuration apart from a port conflict with some other program.
	ln, err := api.Listen(cfg.API.Socket)
	if err != nil {
		return nil, nil, fmt.Errorf("api socket: %w", err)
	}
	ls := &listeners{api: ln}
	// Everything opened so far is closed again when a later step fails,
	// so a refused start leaves no socket, program or pin behind.
	var dp offload.Dataplane
	var ks *killswitch.Switch
	var held bool
	fail := func(err error) (*listeners, *config.Config, error) {
		ls.close()
		if dp != nil {
			dp.Close()
		}
		if ks != nil {
			// A killed predecessor's fence stays up, like its pins.
			if !held {
				ks.Remove()
			}
			ks.Close()
		}
		return nil, nil, err
	}
	// The kill switch comes before the data plane: protected traffic is
	// held from the start, and a predecessor's fence is replaced without
	// a gap.
	if ks, held, err = openKillSwitch(cfg, d.log.Named("killswitch")); err != nil {
		return fail(fmt.Errorf("kill switch: %w", err))
	}
	// The data plane comes before the IKE engine: no SA may be negotiated
	// that nothing could install.
	if dp, err = openDataplane(runCtx, cfg, d.opts.ConfigPath, d.log); err != nil {
		return fail(err)
	}
	if cfg.Metrics.Listen != "" {
		if ls.metrics, err = net.Listen("tcp", cfg.Metrics.Listen); err != nil {
			return fail(fmt.Errorf("metrics listener: %w", err))
		}
	}
	inst := newInstaller(dp, d.log.Named("dataplane"))
	engine, err := ike.New(ike.Options{
		Logger:            d.log.Named("ike"),
		Listen:            cfg.IKE.Listen,
		CookieThreshold:   cfg.IKE.CookieThreshold,
		HalfOpenLimit:     cfg.IKE.HalfOpenLimit,
		HalfOpenPerSource: cfg.IKE.HalfOpenPerSource,
		InitRateLimit:     uint32(cfg.IKE.InitRateLimit),
		SetInitRateLimit:  initRateLimit(dp, cfg.IKE.InitRateLimit),
		SocketBuffer:      cfg.IKE.SocketBuffer,
		FragmentSize:      cfg.IKE.FragmentSize,
		KeepaliveInterval: keepaliveInterval(cfg.IKE.NATKeepalive),
		RetransmitTimeout: cfg.IKE.RetransmitTimeout,
		RetransmitBase:    cfg.IKE.RetransmitBase,
		RetransmitTries:   cfg.IKE.RetransmitTries,
		RekeyGrace:        cfg.IKE.RekeyGrace,
		// The kernel decapsulates ESP-in-UDP for its own data planes.
		KernelESPInUDP: cfg.Dataplane.Mode == "xfrm" || cfg.Dataplane.Mode == "xfrm-offload",
		Installer:      inst,
	})
	if err != nil {
		return fail(fmt.Errorf("ike: %w", err))
	}
	d.dp, d.ks = dp, ks
	logFailClosed(dp, cfg, d.log)
	// The installer learns the addresses before the engine may trap.
	inst.setConns(conns)
	engine.SetConns(conns)
	d.mu.Lock()
	d.engine, d.inst, d.runCtx = engine, inst, runCtx
	d.mu.Unlock()
	d.metrics.registry.MustRegister(newIKECollector(engine), newDataplaneCollector(dp))
	return ls, cfg, nil
}

func (d *Daemon) closeDataplane() {
	if err := d.dp.Close(); err != nil {
		d.log.Error("data plane did not close cleanly", zap.String("dataplane", d.dp.Name()), zap.Error(err))
	}
	// A clean stop is the operator's: the fence goes with the daemon,
	// unless the operator asked for it to stay.
	if d.ks != nil {
		if d.config().Dataplane.FailClosed == "always" {
			d.log.Warn("kill switch kept after a clean stop (dataplane.fail_closed: always): protected destinations stay blocked " +
				"until xdpsecd runs again or `xdpsecd --remove-kill-switch` takes the fence down")
		} else if err := d.ks.Remove(); err != nil {
			d.log.Error("kill switch not removed", zap.Error(err))
		}
		d.ks.Close()
	}
}

// listeners are the sockets Run serves; metrics is nil when switched off.
type listeners struct {
	api, metrics net.Listener
}

func (l *listeners) close() {
	for _, ln := range []net.Listener{l.api, l.metrics} {
		if ln != nil {
			ln.Close()
		}
	}
}

// Run serves the API (and metrics) until ctx is cancelled. The socket is
// removed on return.
func (d *Daemon) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ls, cfg, err := d.open(ctx)
	if err != nil {
		return err
	}
	// Whatever happens below, the data plane is left empty: SAs never
	// outlive the daemon that negotiated them.
	defer d.closeDataplane()
	d.log.Info("xdpsecd started",
		zap.String("version", Version()),
		zap.String("config", d.opts.ConfigPath),
		zap.String("dataplane", cfg.Dataplane.Mode),
		zap.String("api", cfg.API.Socket),
		zap.Int("connections", len(cfg.Connections)))
	for i := range cfg.Connections {
		d.logConnection("connection loaded", &cfg.Connections[i])
	}

	var wg sync.WaitGroup
	errc := make(chan error, 3)

	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := d.engine.Run(ctx); err != nil {
			errc <- fmt.Errorf("ike: %w", err)
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.dataplaneEvents(ctx)
	}()
	for i := range cfg.Connections {
		d.bringUp(ctx, &wg, &cfg.Connections[i])
	}

	if ls.metrics != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.serveMetrics(ctx, ls.metrics); err != nil {
				errc <- err
			}
		}()
		d.log.Info("metrics listening", zap.String("listen", ls.metrics.Addr().String()))
	}

	srv := api.NewServer(d, d.log.Named("api"))
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ctx, ls.api); err != nil {
			errc <- err
		}
	}()

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		cancel()
	}
	wg.Wait()
	d.log.Info("xdpsecd stopped")
	return runErr
}

func (d *Daemon) serveMetrics(ctx context.Context, ln net.Listener) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(d.metrics.registry, promhttp.HandlerOpts{}))
	return api.ServeUntil(ctx, &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, ln)
}

func (d *Daemon) config() *config.Config {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.cfg
}

func findConn(cfg *config.Config, name string) *config.Connection {
	for i := range cfg.Connections {
		if cfg.Connections[i].Name == name {
			return &cfg.Connections[i]
		}
	}
	return nil
}

func (d *Daemon) logConnection(msg string, c *config.Connection) {
	children := make([]string, 0, len(c.Children))
	for _, ch := range c.Children {
		children = append(children, ch.Name)
	}
	d.log.Info(msg,
		zap.String("conn", c.Name),
		zap.String("local", c.LocalAddr),
		zap.String("remote", c.RemoteAddr),
		zap.Stringer("local_id", c.LocalID),
		zap.Stringer("remote_id", c.RemoteID),
		zap.String("auth", c.Auth),
		zap.String("start_action", c.StartAction),
		zap.Strings("children", children))
}

// Status implements api.Backend.
func (d *Daemon) Status(context.Context) api.Status {
	d.mu.RLock()
	cfg, loadedAt := d.cfg, d.loadedAt
	d.mu.RUnlock()
	return api.Status{
		Version:        Version(),
		PID:            os.Getpid(),
		StartedAt:      d.started.UTC(),
		UptimeSeconds:  time.Since(d.started).Seconds(),
		ConfigFile:     d.opts.ConfigPath,
		ConfigLoadedAt: loadedAt.UTC(),
		DataplaneMode:  cfg.Dataplane.Mode,
		Connections:    len(cfg.Connections),
		Initiations:    d.initiationList(cfg),
	}
}

// initiationList reports the bring-ups that have not succeeded (still
// trying, or given up), for status.
func (d *Daemon) initiationList(cfg *config.Config) []api.ConnInitiation {
	out := []api.ConnInitiation{}
	for i := range cfg.Connections {
		name := cfg.Connections[i].Name
		if in := d.initiationOf(name); in != nil && in.State != initEstablished {
			out = append(out, api.ConnInitiation{Conn: name, Initiation: *in})
		}
	}
	return out
}

// Conns implements api.Backend.
func (d *Daemon) Conns(context.Context) []api.Conn {
	cfg := d.config()
	out := make([]api.Conn, 0, len(cfg.Connections))
	for i := range cfg.Connections {
		c := apiConn(&cfg.Connections[i])
		c.Initiation = d.initiationOf(c.Name)
		out = append(out, c)
	}
	return out
}

func apiConn(c *config.Connection) api.Conn {
	conn := api.Conn{
		Name:         c.Name,
		LocalAddr:    c.LocalAddr,
		RemoteAddr:   c.RemoteAddr,
		LocalID:      c.LocalID.String(),
		RemoteID:     c.RemoteID.String(),
		Auth:         c.Auth,
		IKEProposals: stringsOf(c.IKEProposals),
		ESPProposals: stringsOf(c.ESPProposals),
		IKELifetime:  c.IKELifetime.String(),
		DPDDelay:     c.DPDDelay.String(),
		DPDAction:    c.DPDAction,
		StartAction:  c.StartAction,
		Encap:        c.Encap,
		Children:     make([]api.Child, 0, len(c.Children)),
	}
	for _, ch := range c.Children {
		conn.Children = append(conn.Children, api.Child{
			Name:         ch.Name,
			Mode:         ch.Mode,
			LocalTS:      stringsOf(ch.LocalTS),
			RemoteTS:     stringsOf(ch.RemoteTS),
			Lifetime:     ch.Lifetime.String(),
			ReplayWindow: ch.ReplayWindow,
		})
	}
	return conn
}

// stringsOf renders proposals, prefixes and the like for the API.
func stringsOf[P fmt.Stringer](ps []P) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}

// SAs implements api.Backend.
func (d *Daemon) SAs(ctx context.Context) []api.IKESA {
	st, err := d.dp.Stats(ctx)
	if err != nil {
		d.log.Warn("data plane counters unavailable", zap.Error(err))
	}
	return apiSAs(d.engine.SAs(), counterIndex(st))
}

// Initiate implements api.Backend: it brings a connection up and waits
// for the outcome. A connection that is already up is left as it is, so
// `xdpsecctl up` can be repeated without piling up duplicate IKE SAs.
func (d *Daemon) Initiate(ctx context.Context, conn string) error {
	if findConn(d.config(), conn) == nil {
		return fmt.Errorf("%q: %w", conn, api.ErrUnknownConn)
	}
	for _, sa := range d.engine.SAs() {
		if sa.Conn == conn && sa.State == "ESTABLISHED" && len(sa.Children) > 0 {
			return nil
		}
	}
	return d.engine.Initiate(ctx, conn)
}

// Terminate implements api.Backend: it deletes the connection's SAs, at
// the peer too, and waits for the outcome.
func (d *Daemon) Terminate(ctx context.Context, conn string) error {
	if findConn(d.config(), conn) == nil {
		return fmt.Errorf("%q: %w", conn, api.ErrUnknownConn)
	}
	// Taken down on purpose: no bring-up may undo it.
	stopped := d.stopBringUp(conn)
	err := d.engine.Terminate(ctx, conn)
	if stopped && errors.Is(err, ike.ErrNotUp) {
		// Nothing was up, but the retries the operator stopped were.
		return nil
	}
	return err
}

// Rekey implements api.Backend: it rekeys the connection's IKE SA (child
// "") or the named CHILD SA now and waits until the new SA is in place.
func (d *Daemon) Rekey(ctx context.Context, conn, child string) error {
	c := findConn(d.config(), conn)
	if c == nil {
		return fmt.Errorf("%q: %w", conn, api.ErrUnknownConn)
	}
	if child != "" && !slices.ContainsFunc(c.Children, func(ch config.Child) bool { return ch.Name == child }) {
		return fmt.Errorf("%q of %q: %w", child, conn, api.ErrUnknownChild)
	}
	return d.engine.Rekey(ctx, conn, child)
}

// dataplaneEvents hands the data plane's events to the engine until ctx
// ends or the data plane closes its channel: soft expiries rekey, hard
// ones delete the child, acquires negotiate a trapped child, a moved peer
// is reported. Events are rare (per SA lifetime, trapped flow or NAT
// rebinding), so each is logged at debug, a moved peer at info.
func (d *Daemon) dataplaneEvents(ctx context.Context) {
	events := d.dp.Events()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			d.handleEvent(ev)
		}
	}
}

func (d *Daemon) handleEvent(ev offload.Event) {
	log := d.log.With(zap.String("conn", ev.Conn), zap.String("child", ev.Child))
	switch ev.Kind {
	case offload.SoftExpire, offload.HardExpire:
		hard := ev.Kind == offload.HardExpire
		log.Debug("sa expiring", zap.String("spi", fmt.Sprintf("%08x", ev.SPI)),
			zap.Stringer("direction", ev.Dir), zap.Bool("hard", hard))
		d.engine.Expire(ev.SPI, hard)
	case offload.Acquire:
		log.Debug("acquire", zap.Stringer("src", ev.Src), zap.Stringer("dst", ev.Dst))
		d.engine.Acquire(ev.Conn, ev.Child)
	case offload.PeerMoved:
		// Worth an operator's eye: traffic from the peer now arrives from
		// elsewhere while ours still goes where it was negotiated. Updating
		// the IKE SA (RFC 7296 2.23) is not done yet.
		log.Info("peer's outer address changed (NAT rebinding), learnt from authenticated ESP; "+
			"the child's outbound SA keeps sending to the negotiated address until the IKE SA is updated",
			zap.String("spi", fmt.Sprintf("%08x", ev.SPI)), zap.Stringer("peer", ev.Peer))
	default:
		log.Debug("unknown data plane event", zap.Uint8("kind", uint8(ev.Kind)))
	}
}

// xdpReporter is implemented by data planes that run XDP programs and
// workers of their own (afxdp); the others have nothing of the kind.
type xdpReporter interface {
	XDPCounters() (wan, lan map[string]uint64, err error)
	WorkerPackets() []uint64
	SocketCounters() (map[string]uint64, error)
}

// pathReporter is implemented by data planes that choose among paths
// for their packets (afxdp: AF_XDP or the TUN port for the LAN side).
type pathReporter interface {
	Paths() map[string]string
}

// initRateLimiter is implemented by data planes with an XDP front door,
// which can rate-limit IKE_SA_INIT per source before the daemon sees it.
type initRateLimiter interface {
	SetIKERateLimit(perSecond uint32) error
}

// initRateLimit returns what the IKE engine calls to switch the front
// door's IKE_SA_INIT rate limit, or nil where there is none or the
// configuration says never.
func initRateLimit(dp offload.Dataplane, perSecond int) func(uint32) error {
	rl, ok := dp.(initRateLimiter)
	if !ok || perSecond == 0 {
		return nil
	}
	return rl.SetIKERateLimit
}

// Stats implements api.Backend.
func (d *Daemon) Stats(ctx context.Context) (api.Stats, error) {
	st, err := d.dp.Stats(ctx)
	if err != nil {
		return api.Stats{}, fmt.Errorf("data plane counters: %w", err)
	}
	out := api.Stats{Dataplane: d.dp.Name(), Drops: st.Drops, SAs: make([]api.DataplaneSA, 0, len(st.SAs))}
	for _, sa := range st.SAs {
		out.SAs = append(out.SAs, api.DataplaneSA{SPI: fmt.Sprintf("%08x", sa.SPI), Dir: sa.Dir.String(), Bytes: sa.Bytes, Packets: sa.Packets, Offload: sa.OffloadInEffect})
	}
	if out.Drops == nil {
		out.Drops = map[string]uint64{}
	}
	if p, ok := d.dp.(pathReporter); ok {
		out.Paths = p.Paths()
	}
	if x, ok := d.dp.(xdpReporter); ok {
		out.Workers = x.WorkerPackets()
		wan, lan, err := x.XDPCounters()
		if err != nil {
			return api.Stats{}, fmt.Errorf("xdp counters: %w", err)
		}
		out.XDP = map[string]map[string]uint64{"wan": wan, "lan": lan}
		if out.AFXDP, err = x.SocketCounters(); err != nil {
			return api.Stats{}, fmt.Errorf("af_xdp counters: %w", err)
		}
	}
	is := d.engine.Stats()
	out.IKE = api.IKEStats{
		IKESAs: is.IKESAs, HalfOpen: is.HalfOpen, HalfOpenEvicted: is.HalfOpenEvicted,
		CookiesSent: is.CookiesSent, Retransmits: is.Retransmits, CachedResponses: is.CachedResponses, Reassembled: is.Reassembled, Fragmented: is.Fragmented,
		KeepalivesSent: is.KeepalivesSent, KeepalivesReceived: is.KeepalivesReceived,
		ChildRekeys: is.ChildRekeys, IKERekeys: is.IKERekeys, DeadPeers: is.DeadPeers,
		Dropped: make(map[string]uint64, len(is.Dropped)),
	}
	for reason, n := range is.Dropped {
		out.IKE.Dropped[string(reason)] = n
	}
	return out, nil
}

// keepaliveInterval maps ike.nat_keepalive, where 0 means off, to the
// engine's option, where 0 means its default and a negative value off.
func keepaliveInterval(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
