package xfrm

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netns"

	"github.com/xdpsec/xdpsec/offload"
)

// Stats implements offload.Stats: per-SA counters as the kernel keeps
// them, lineage totals that survive rekeys, and the namespace's XFRM
// error counters as drops.
func (d *Dataplane) Stats(context.Context) (offload.Stats, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return offload.Stats{}, offload.ErrClosed
	}
	st := offload.Stats{Mode: d.Name(), Drops: map[string]uint64{}}
	sts, err := d.k.listStates()
	if err != nil {
		return st, fmt.Errorf("stats: %w", err)
	}
	children := d.lineage.Clone()
	for k, e := range d.sas {
		c := offload.SACounters{SPI: k.spi, Dir: k.dir, OffloadInEffect: e.offload,
			Bytes: e.bytes, Packets: e.packets}
		if !e.gone {
			if ks := findState(sts, &e.id); ks != nil {
				c.Bytes, c.Packets = ks.Statistics.Bytes, ks.Statistics.Packets
				c.ReplayDrops = uint64(ks.Statistics.Replay)
				c.IntegrityFailures = uint64(ks.Statistics.Failed)
				if ks.Statistics.UseTime > 0 {
					c.LastUsed = time.Unix(int64(ks.Statistics.UseTime), 0)
				}
				// Remembered so that a state the kernel removes
				// before DelSA asks keeps its last known traffic.
				e.bytes, e.packets = c.Bytes, c.Packets
			}
		}
		children.Add(e.cfg.Conn, e.cfg.Child, k.dir, c.Bytes, c.Packets)
		st.SAs = append(st.SAs, c)
	}
	slices.SortFunc(st.SAs, func(a, b offload.SACounters) int {
		return cmp.Or(cmp.Compare(a.SPI, b.SPI), cmp.Compare(a.Dir, b.Dir))
	})
	st.Children = children.List()
	if d.stat != nil {
		raw, err := d.stat.read()
		if err != nil {
			return st, fmt.Errorf("stats: %w", err)
		}
		st.Drops = dropsOf(raw)
	}
	return st, nil
}

// dropName maps the kernel's XFRM MIB counters onto the drop reasons the
// other data planes report; the rest keep the kernel's names.
func dropName(mib string) string {
	switch mib {
	case "XfrmInNoStates":
		return "unknown_spi"
	case "XfrmInStateSeqError":
		return "replay"
	case "XfrmInStateProtoError":
		// ESP's ICV check fails with EBADMSG, which XFRM counts here.
		return "auth"
	case "XfrmInTmplMismatch", "XfrmInNoPols":
		return "selector"
	case "XfrmInHdrError":
		return "malformed"
	}
	return mib
}

func dropsOf(raw map[string]uint64) map[string]uint64 {
	out := make(map[string]uint64, len(raw))
	for name, v := range raw {
		out[dropName(name)] += v
	}
	return out
}

// parseXfrmStat reads /proc/net/xfrm_stat: one "Name value" per line.
func parseXfrmStat(r io.Reader) (map[string]uint64, error) {
	out := map[string]uint64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		v, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("xfrm_stat %s: %w", f[0], err)
		}
		out[f[0]] = v
	}
	return out, sc.Err()
}

// statFile is /proc/net/xfrm_stat of the data plane's namespace. A proc
// net file shows the namespace of whoever opened it, so it is opened
// once, from a thread inside the namespace, and re-read from the start.
type statFile struct {
	mu sync.Mutex
	f  *os.File
}

func openStat(ns netns.NsHandle) (*statFile, error) {
	if !ns.IsOpen() {
		f, err := os.Open("/proc/self/net/xfrm_stat")
		if err != nil {
			return nil, err
		}
		return &statFile{f: f}, nil
	}
	var f *os.File
	err := onLockedThread(func() error {
		if err := netns.Set(ns); err != nil {
			return err
		}
		var err error
		f, err = os.Open("/proc/thread-self/net/xfrm_stat")
		return err
	})
	if err != nil {
		return nil, err
	}
	return &statFile{f: f}, nil
}

func (s *statFile) read() (map[string]uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("xfrm_stat: %w", err)
	}
	b, err := io.ReadAll(s.f)
	if err != nil {
		return nil, fmt.Errorf("xfrm_stat: %w", err)
	}
	return parseXfrmStat(bytes.NewReader(b))
}

func (s *statFile) close() {
	if s != nil {
		s.f.Close()
	}
}
