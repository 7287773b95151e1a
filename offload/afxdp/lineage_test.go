package afxdp

import (
	"testing"

	"github.com/xdpsec/xdpsec/offload"
	"github.com/xdpsec/xdpsec/offload/esp"
)

// TestStatsKeepDeletedTraffic: an outbound SA's traffic stays in its
// child's totals after DelSA, and a successor's adds to it. Outbound SAs
// need neither XDP nor sockets to be added by hand and deleted.
func TestStatsKeepDeletedTraffic(t *testing.T) {
	d := &Dataplane{
		sadb:     esp.NewSADB(),
		sas:      map[saKey]*saEntry{},
		policies: map[offload.PolicyKey]*policyEntry{},
		lineage:  offload.Lineage{},
	}
	d.spd.Store(buildSPD(nil))
	w := esp.NewWorker()
	install := func(spi uint32, packets int) {
		cfg := validSA(offload.Out)
		cfg.Conn, cfg.Child, cfg.SPI = "site-b", "net", spi
		c, err := espConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		sa, err := esp.NewSA(c)
		if err != nil {
			t.Fatal(err)
		}
		for range packets {
			pkt := ipv4Packet(64, 100, false)
			buf := make([]byte, sa.Headroom()+len(pkt)+sa.Tailroom())
			copy(buf[sa.Headroom():], pkt)
			p := esp.Packet{Buf: buf, Off: sa.Headroom(), Len: len(pkt)}
			if v := w.Encrypt(sa, &p); v != esp.Accept {
				t.Fatalf("encrypt: %v", v)
			}
		}
		d.sas[saKey{spi, offload.Out}] = &saEntry{cfg: cfg, sa: sa, out: &outSA{sa: sa, spi: spi}}
	}
	total := func() offload.ChildCounters {
		st, err := d.Stats(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Children) != 1 {
			t.Fatalf("children = %+v, want one lineage", st.Children)
		}
		return st.Children[0]
	}
	install(0x1000, 3)
	first := total()
	if first.Packets != 3 || first.Bytes == 0 || first.Conn != "site-b" || first.Child != "net" || first.Dir != offload.Out {
		t.Fatalf("first SA's totals = %+v", first)
	}
	install(0x2000, 2) // the rekey's successor
	if err := d.DelSA(t.Context(), 0x1000, offload.Out); err != nil {
		t.Fatal(err)
	}
	after := total()
	if after.Packets != 5 || after.Bytes <= first.Bytes {
		t.Fatalf("totals after the rekey = %+v, want 5 packets and more than %d bytes", after, first.Bytes)
	}
}
