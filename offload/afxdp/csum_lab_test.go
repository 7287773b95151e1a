package afxdp

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/xdpsec/xdpsec/internal/netlab"
)

// TestChecksumOffloadedHosts runs TCP through the tunnel between hosts
// whose veths keep TX checksum offload on, the veth default and what
// containers on a gateway host have: their segments reach the gateways
// with the TCP checksum left for later (CHECKSUM_PARTIAL), and AF_XDP
// hands the workers those bytes as they are. The workers must complete
// the checksums (counted as csum_completed) or the far host drops every
// segment and the connection times out, while ping still works.
func TestChecksumOffloadedHosts(t *testing.T) {
	netlab.RequireRoot(t)
	lab := netlab.NewTestLab(t, netlab.LabOptions{NoGatewayRoutes: true})
	for _, h := range []*netlab.NS{lab.HostA, lab.HostB} {
		if err := h.SetTxChecksumOffload(netlab.HostIf, true); err != nil {
			t.Fatal(err)
		}
	}
	a := startSite(t, lab.GwA, lab.Prefix+"-gwA")
	b := startSite(t, lab.GwB, lab.Prefix+"-gwB")
	install(t, lab.V4, a, b, newKeys(t, aes256gcm16), newKeys(t, aes256gcm16), nil)
	pingThrough(t, lab, lab.V4.HostB)

	// 256 KiB each way: many full-size segments, both hosts sending.
	msg := make([]byte, 256<<10)
	if _, err := rand.Read(msg); err != nil {
		t.Fatal(err)
	}
	if err := tcpEcho(t, lab.HostA, lab.HostB, lab.V4.HostB, msg); err != nil {
		t.Fatalf("TCP through the tunnel between offloading hosts: %v (drops gwA %v, gwB %v)",
			err, nonzero(drops(t, a)), nonzero(drops(t, b)))
	}
	for _, s := range []*site{a, b} {
		if n := s.dp.WorkerEvents()["csum_completed"]; n == 0 {
			t.Errorf("%s: csum_completed 0 after TCP from an offloading host", s.ns.Name)
		}
	}
	iperfFrom(t, lab, lab.HostA, nil, a, b)
}

// tcpEcho listens in server on dst, dials it from client, sends msg and
// expects it echoed back in full within 10 s.
func tcpEcho(t *testing.T, client, server *netlab.NS, dst netip.Addr, msg []byte) error {
	t.Helper()
	var ln net.Listener
	err := server.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(dst, 0).String())
		return err
	})
	if err != nil {
		return err
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = io.Copy(c, c)
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var c net.Conn
	err = client.Do(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, "tcp", ln.Addr().String())
		return err
	})
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(msg)
		errc <- err
	}()
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("read echo: %w", err)
	}
	if err := <-errc; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo differs from what was sent")
	}
	return nil
}

func nonzero(m map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range m {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}
