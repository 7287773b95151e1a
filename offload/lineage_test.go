package offload

import (
	"reflect"
	"testing"
)

func TestLineage(t *testing.T) {
	type add struct {
		conn, child    string
		dir            Direction
		bytes, packets uint64
	}
	for _, tc := range []struct {
		name string
		adds []add
		want []ChildCounters
	}{
		{"empty", nil, nil},
		{"rekeys sum up", []add{
			{"a", "net", Out, 100, 1},
			{"a", "net", Out, 200, 2},
			{"a", "net", In, 50, 1},
		}, []ChildCounters{
			{Conn: "a", Child: "net", Dir: In, Bytes: 50, Packets: 1},
			{Conn: "a", Child: "net", Dir: Out, Bytes: 300, Packets: 3},
		}},
		{"sorted by conn, child, dir", []add{
			{"b", "x", In, 1, 1},
			{"a", "y", Out, 2, 1},
			{"a", "x", Out, 3, 1},
			{"a", "x", In, 4, 1},
		}, []ChildCounters{
			{Conn: "a", Child: "x", Dir: In, Bytes: 4, Packets: 1},
			{Conn: "a", Child: "x", Dir: Out, Bytes: 3, Packets: 1},
			{Conn: "a", Child: "y", Dir: Out, Bytes: 2, Packets: 1},
			{Conn: "b", Child: "x", Dir: In, Bytes: 1, Packets: 1},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := Lineage{}
			for _, a := range tc.adds {
				l.Add(a.conn, a.child, a.dir, a.bytes, a.packets)
			}
			c := l.Clone()
			c.Add("zz", "copy", In, 1, 1)
			if _, ok := l[lineageKey{"zz", "copy", In}]; ok {
				t.Fatal("clone shares its map with the original")
			}
			if got := l.List(); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("list = %+v, want %+v", got, tc.want)
			}
		})
	}
}
