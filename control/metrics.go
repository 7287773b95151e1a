package control

import (
	"context"
	"maps"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/xdpsec/xdpsec/ike"
	"github.com/xdpsec/xdpsec/offload"
)

// daemonMetrics are the daemon-level Prometheus metrics. Each daemon has its
// own registry so several instances in one process (tests) never collide.
type daemonMetrics struct {
	registry    *prometheus.Registry
	connections prometheus.Gauge
	reloads     *prometheus.CounterVec
	// initFailures counts failed bring-up attempts by connection and
	// ike.FailureReason.
	initFailures *prometheus.CounterVec
}

func newDaemonMetrics() *daemonMetrics {
	m := &daemonMetrics{
		registry: prometheus.NewRegistry(),
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "xdpsec_connections_configured",
			Help: "Connections in the running configuration.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xdpsec_config_reloads_total",
			Help: "Configuration reloads by result (success, failure).",
		}, []string{"result"}),
		initFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xdpsec_initiation_failures_total",
			Help: "Failed initiations of start_action start connections by connection and reason (timeout, auth_failed, no_proposal_chosen, ts_unacceptable, other).",
		}, []string{"conn", "reason"}),
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "xdpsec_build_info",
		Help:        "Always 1; the version label identifies the binary.",
		ConstLabels: prometheus.Labels{"version": Version()},
	})
	build.Set(1)
	m.registry.MustRegister(m.connections, m.reloads, m.initFailures, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Both label values exist from the start so rate() works before the first failure.
	m.reloads.WithLabelValues("success")
	m.reloads.WithLabelValues("failure")
	return m
}

// ikeCollector exports the engine's counters at scrape time, so the engine
// keeps plain counters and knows nothing of Prometheus.
type ikeCollector struct {
	engine      *ike.Engine
	sas         *prometheus.Desc
	halfOpen    *prometheus.Desc
	exchanges   *prometheus.Desc
	dropped     *prometheus.Desc
	cookies     *prometheus.Desc
	retrans     *prometheus.Desc
	cached      *prometheus.Desc
	keepalive   *prometheus.Desc
	rekeys      *prometheus.Desc
	deadPeers   *prometheus.Desc
	childSAs    *prometheus.Desc
	evicted     *prometheus.Desc
	reassembled *prometheus.Desc
	fragmented  *prometheus.Desc
}

func newIKECollector(engine *ike.Engine) *ikeCollector {
	return &ikeCollector{
		engine:      engine,
		sas:         prometheus.NewDesc("xdpsec_ike_sas", "IKE SAs by state.", []string{"state"}, nil),
		halfOpen:    prometheus.NewDesc("xdpsec_ike_half_open_sas", "Responder IKE SAs between IKE_SA_INIT and a completed IKE_AUTH.", nil, nil),
		exchanges:   prometheus.NewDesc("xdpsec_ike_exchanges_total", "IKE exchanges by type, our role and result; each exchange counted once, when it completes or fails.", []string{"exchange", "role", "result"}, nil),
		childSAs:    prometheus.NewDesc("xdpsec_child_sas_total", "CHILD SA negotiations (in IKE_AUTH or CREATE_CHILD_SA, rekeys included) by our role and result (ok, no_proposal_chosen, ts_unacceptable, ...).", []string{"role", "result"}, nil),
		dropped:     prometheus.NewDesc("xdpsec_ike_dropped_total", "IKE datagrams dropped without an answer, by reason.", []string{"reason"}, nil),
		cookies:     prometheus.NewDesc("xdpsec_ike_cookies_sent_total", "COOKIE demands sent to IKE_SA_INIT requests (RFC 7296 2.6).", nil, nil),
		retrans:     prometheus.NewDesc("xdpsec_ike_retransmits_total", "Requests this gateway retransmitted.", nil, nil),
		cached:      prometheus.NewDesc("xdpsec_ike_cached_responses_total", "Responses re-sent from cache for retransmitted requests.", nil, nil),
		keepalive:   prometheus.NewDesc("xdpsec_nat_keepalives_total", "NAT-T keepalives (RFC 3948) by direction: sent by this end behind a NAT, received from a peer behind one.", []string{"direction"}, nil),
		rekeys:      prometheus.NewDesc("xdpsec_rekeys_total", "Completed rekeys (either side's) by type (child, ike).", []string{"type"}, nil),
		deadPeers:   prometheus.NewDesc("xdpsec_dead_peers_total", "IKE SAs given up because the peer stopped answering (DPD or any other request).", nil, nil),
		evicted:     prometheus.NewDesc("xdpsec_ike_half_open_evicted_total", "Half-open IKE SAs removed from a full table (ike.half_open_limit) to make room for a request with a valid COOKIE or from a configured peer.", nil, nil),
		reassembled: prometheus.NewDesc("xdpsec_ike_reassembled_total", "IKE messages a peer sent in RFC 7383 encrypted fragments, put together again.", nil, nil),
		fragmented:  prometheus.NewDesc("xdpsec_ike_fragmented_total", "IKE messages sent in RFC 7383 encrypted fragments (larger than ike.fragment_size), retransmissions not counted.", nil, nil),
	}
}

func (c *ikeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.sas, c.halfOpen, c.exchanges, c.dropped, c.cookies, c.retrans, c.cached, c.keepalive, c.rekeys, c.deadPeers, c.childSAs, c.evicted, c.reassembled, c.fragmented} {
		ch <- d
	}
}

func (c *ikeCollector) Collect(ch chan<- prometheus.Metric) {
	states := map[string]int{"CONNECTING": 0, "ESTABLISHED": 0, "DELETING": 0}
	for _, sa := range c.engine.SAs() {
		states[sa.State]++
	}
	for state, n := range states {
		ch <- prometheus.MustNewConstMetric(c.sas, prometheus.GaugeValue, float64(n), state)
	}
	st := c.engine.Stats()
	ch <- prometheus.MustNewConstMetric(c.halfOpen, prometheus.GaugeValue, float64(st.HalfOpen))
	for k, n := range st.Exchanges {
		ch <- prometheus.MustNewConstMetric(c.exchanges, prometheus.CounterValue, float64(n), k.Exchange, k.Role, k.Result)
	}
	for k, n := range st.ChildSAs {
		ch <- prometheus.MustNewConstMetric(c.childSAs, prometheus.CounterValue, float64(n), k.Role, k.Result)
	}
	for reason, n := range st.Dropped {
		ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(n), string(reason))
	}
	ch <- prometheus.MustNewConstMetric(c.cookies, prometheus.CounterValue, float64(st.CookiesSent))
	ch <- prometheus.MustNewConstMetric(c.retrans, prometheus.CounterValue, float64(st.Retransmits))
	ch <- prometheus.MustNewConstMetric(c.cached, prometheus.CounterValue, float64(st.CachedResponses))
	ch <- prometheus.MustNewConstMetric(c.keepalive, prometheus.CounterValue, float64(st.KeepalivesSent), "sent")
	ch <- prometheus.MustNewConstMetric(c.keepalive, prometheus.CounterValue, float64(st.KeepalivesReceived), "received")
	ch <- prometheus.MustNewConstMetric(c.rekeys, prometheus.CounterValue, float64(st.ChildRekeys), "child")
	ch <- prometheus.MustNewConstMetric(c.rekeys, prometheus.CounterValue, float64(st.IKERekeys), "ike")
	ch <- prometheus.MustNewConstMetric(c.deadPeers, prometheus.CounterValue, float64(st.DeadPeers))
	ch <- prometheus.MustNewConstMetric(c.evicted, prometheus.CounterValue, float64(st.HalfOpenEvicted))
	ch <- prometheus.MustNewConstMetric(c.reassembled, prometheus.CounterValue, float64(st.Reassembled))
	ch <- prometheus.MustNewConstMetric(c.fragmented, prometheus.CounterValue, float64(st.Fragmented))
}

// dataplaneCollector exports the data plane's counters: traffic per
// connection, child and direction, and drops by reason. Traffic comes from
// the data plane's lineage totals, which include deleted SAs, so the
// counters do not go back when a child is rekeyed or goes down.
type dataplaneCollector struct {
	dp      offload.Dataplane
	bytes   *prometheus.Desc
	packets *prometheus.Desc
	drops   *prometheus.Desc
	xdp     *prometheus.Desc
	xdpEv   *prometheus.Desc
	workers *prometheus.Desc
	sockets *prometheus.Desc
	workEv  *prometheus.Desc
	offload *prometheus.Desc
}

// workerEventer is implemented by data planes whose workers count what
// they did to packets besides moving or dropping them (afxdp:
// csum_completed, decrypt_shared, lan_merged).
type workerEventer interface {
	WorkerEvents() map[string]uint64
}

func newDataplaneCollector(dp offload.Dataplane) *dataplaneCollector {
	labels := []string{"conn", "child", "direction"}
	return &dataplaneCollector{
		dp:      dp,
		bytes:   prometheus.NewDesc("xdpsec_child_bytes_total", "Bytes through the ESP data plane per connection, child and direction (in = decrypted, out = encrypted).", labels, nil),
		packets: prometheus.NewDesc("xdpsec_child_packets_total", "Packets through the ESP data plane per connection, child and direction.", labels, nil),
		drops:   prometheus.NewDesc("xdpsec_dataplane_drops_total", "Packets the data plane dropped anywhere from the XDP front door to the workers or the kernel, by reason (unknown_spi, replay, auth, selector, malformed, no_route, mtu, no_socket, ...).", []string{"dataplane", "reason"}, nil),
		xdp:     prometheus.NewDesc("xdpsec_xdp_verdicts_total", "Verdicts of the XDP programs, one per packet, by interface side (wan, lan) and verdict (pass_*, redirect_*, drop_*).", []string{"interface", "verdict"}, nil),
		xdpEv:   prometheus.NewDesc("xdpsec_xdp_events_total", "Things the XDP programs did besides their verdicts, by interface side and event: mss_clamped (TCP SYNs whose MSS was lowered), event_* (notifications to the daemon sent, suppressed or lost).", []string{"interface", "event"}, nil),
		workers: prometheus.NewDesc("xdpsec_worker_packets_total", "Packets handled per data-plane worker.", []string{"worker"}, nil),
		sockets: prometheus.NewDesc("xdpsec_afxdp_socket_events_total", "Kernel AF_XDP socket statistics summed over all sockets. Packets lost before a worker saw them: rx_dropped, rx_ring_full, rx_fill_ring_empty_descs; refused descriptors: rx_invalid_descs, tx_invalid_descs; tx_ring_empty_descs is not loss: it counts kernel polls that found nothing to send, and rises while idle.", []string{"event"}, nil),
		workEv:  prometheus.NewDesc("xdpsec_afxdp_worker_events_total", "What the data-plane workers did to packets besides moving or dropping them: csum_completed (LAN packets whose partial TCP/UDP checksum, left by a sender with TX checksum offload, they completed), decrypt_shared (WAN packets a worker decrypted for another worker's batch, which spreads one busy SA's decryption over the cores), lan_merged (decrypted TCP segments that left through the TUN port merged into super-packets, lan_output tun).", []string{"event"}, nil),
		offload: prometheus.NewDesc("xdpsec_sa_offload", "Installed SAs by direction and the offload in force for them (none = software ESP).", []string{"direction", "offload"}, nil),
	}
}

func (c *dataplaneCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.bytes
	ch <- c.packets
	ch <- c.drops
	ch <- c.xdp
	ch <- c.xdpEv
	ch <- c.workers
	ch <- c.sockets
	ch <- c.workEv
	ch <- c.offload
}

func (c *dataplaneCollector) Collect(ch chan<- prometheus.Metric) {
	st, err := c.dp.Stats(context.Background())
	if err != nil {
		return
	}
	for _, t := range st.Children {
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(t.Bytes), t.Conn, t.Child, t.Dir.String())
		ch <- prometheus.MustNewConstMetric(c.packets, prometheus.CounterValue, float64(t.Packets), t.Conn, t.Child, t.Dir.String())
	}
	drops := maps.Clone(st.Drops)
	if drops == nil {
		drops = map[string]uint64{}
	}
	x, isXDP := c.dp.(xdpReporter)
	var wan, lan map[string]uint64
	if isXDP {
		var err error
		if wan, lan, err = x.XDPCounters(); err == nil {
			addXDPDrops(drops, wan)
			addXDPDrops(drops, lan)
		}
	}
	for reason, n := range drops {
		ch <- prometheus.MustNewConstMetric(c.drops, prometheus.CounterValue, float64(n), c.dp.Name(), reason)
	}
	type offloadKey struct{ dir, kind string }
	offloads := map[offloadKey]int{}
	for _, sa := range st.SAs {
		kind := sa.OffloadInEffect
		if kind == "" {
			kind = "none"
		}
		offloads[offloadKey{sa.Dir.String(), kind}]++
	}
	for k, n := range offloads {
		ch <- prometheus.MustNewConstMetric(c.offload, prometheus.GaugeValue, float64(n), k.dir, k.kind)
	}
	if !isXDP {
		return
	}
	for i, n := range x.WorkerPackets() {
		ch <- prometheus.MustNewConstMetric(c.workers, prometheus.CounterValue, float64(n), strconv.Itoa(i))
	}
	if socks, err := x.SocketCounters(); err == nil {
		for event, n := range socks {
			ch <- prometheus.MustNewConstMetric(c.sockets, prometheus.CounterValue, float64(n), event)
		}
	}
	if we, ok := c.dp.(workerEventer); ok {
		for event, n := range we.WorkerEvents() {
			ch <- prometheus.MustNewConstMetric(c.workEv, prometheus.CounterValue, float64(n), event)
		}
	}
	for side, counters := range map[string]map[string]uint64{"wan": wan, "lan": lan} {
		for name, n := range counters {
			desc := c.xdp
			if !isXDPVerdict(name) {
				desc = c.xdpEv
			}
			ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(n), side, name)
		}
	}
}

// isXDPVerdict tells the XDP programs' per-packet verdicts (pass_*,
// redirect_*, drop_*) from their other counters (mss_clamped, event_*).
func isXDPVerdict(name string) bool {
	return strings.HasPrefix(name, "pass_") || strings.HasPrefix(name, "redirect_") || strings.HasPrefix(name, "drop_")
}

// xdpDropReason maps an XDP drop verdict to the data plane's drop
// vocabulary, so a forged ESP packet dropped at the front door counts as
// unknown_spi just like one a worker drops. "" for XDP drops that are no
// loss of traffic: NAT-T keepalives end where they arrive.
func xdpDropReason(verdict string) string {
	switch verdict {
	case "drop_keepalive":
		return ""
	case "drop_unknown_spi":
		return "unknown_spi"
	case "drop_malformed", "drop_ext_limit":
		return "malformed"
	case "drop_xsk_miss":
		return "no_socket"
	case "drop_peer":
		// The engine's word for ESP from or to the wrong outer address.
		return "address"
	case "drop_ike_ratelimit":
		return "ike_ratelimit"
	case "drop_discard":
		return "policy_discard"
	case "drop_trap":
		return "no_sa"
	}
	return strings.TrimPrefix(verdict, "drop_")
}

func addXDPDrops(drops, verdicts map[string]uint64) {
	for v, n := range verdicts {
		if !strings.HasPrefix(v, "drop_") {
			continue
		}
		if reason := xdpDropReason(v); reason != "" {
			drops[reason] += n
		}
	}
}
