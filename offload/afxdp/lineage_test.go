package afxdp

import (
	"reflect"
	"testing"

	"github.com/xdpsec/xdpsec/offload"
	"github.com/xdpsec/xdpsec/offload/esp"
)

func TestLineage(t *testing.T) {
	type add struct {
		conn, child    string
		dir            offload.Direction
		bytes, packets uint64
	}
	for _, tc := range []struct {
		name string
		adds []add
		want []offload.ChildCounters
	}{
		{"empty", nil, nil},
		{"rekeys sum up", []add{
			{"a", "net", offload.Out, 100, 1},
			{"a", "net", offload.Out, 200, 2},
			{"a", "net", offload.In, 50, 1},
		}, []offload.ChildCounters{
			{Conn: "a", Child: "net", Dir: offload.In, Bytes: 50, Packets: 1},
			{Conn: "a", Child: "net", Dir: offload.Out, Bytes: 300, Packets: 3},
		}},
		{"sorted by conn, child, dir", []add{
			{"b", "x", offload.In, 1, 1},
			{"a", "y", offload.Out, 2, 1},
			{"a", "x", offload.Out, 3, 1},
			{"a", "x", offload.In, 4, 1},
		}, []offload.ChildCounters{
			{Conn: "a", Child: "x", Dir: offload.In, Bytes: 4, Packets: 1},
			{Conn: "a", Child: "x", Dir: offload.Out, Bytes: 3, Packets: 1},
			{Conn: "a", Child: "y", Dir: offload.Out, Bytes: 2, Packets: 1},
			{Conn: "b", Child: "x", Dir: offload.In, Bytes: 1, Packets: 1},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := lineage{}
			for _, a := range tc.adds {
				l.add(a.conn, a.child, a.dir, a.bytes, a.packets)
			}
			c := l.clone()
			c.add("zz", "copy", offload.In, 1, 1)
			if _, ok := l[lineageKey{"zz", "copy", offload.In}]; ok {
				t.Fatal("clone shares its map with the original")
			}
			if got := l.list(); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("list = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestStatsKeepDeletedTraffic: an outbound SA's traffic stays in its
// child's totals after DelSA, and a successor's adds to it. Outbound SAs
// need neither XDP nor sockets to be added by hand and deleted.
func TestStatsKeepDeletedTraffic(t *testing.T) {
	d := &Dataplane{
		sadb:     esp.NewSADB(),
		sas:      map[saKey]*saEntry{},
		policies: map[policyKey]*policyEntry{},
		lineage:  lineage{},
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
