package vm

import (
	"reflect"
	"testing"
)

func TestParseConsole(t *testing.T) {
	for _, tc := range []struct {
		name string
		log  string
		want []BinaryResult
	}{
		{"nothing ran", "[    0.1] kernel noise\n=== VM-BOOTED\n", nil},
		{"one passes", "noise\r\n=== VM-RUN a\r\nPASS\r\n=== VM-EXIT a rc=0\r\n",
			[]BinaryResult{{Name: "a", Finished: true, Output: "PASS\n"}}},
		{"two, one fails", "=== VM-RUN a\nok\n=== VM-EXIT a rc=0\nbetween\n=== VM-RUN b\n--- FAIL\nFAIL\n=== VM-EXIT b rc=1\n",
			[]BinaryResult{
				{Name: "a", Finished: true, Output: "ok\n"},
				{Name: "b", ExitCode: 1, Finished: true, Output: "--- FAIL\nFAIL\n"},
			}},
		{"no final newline", "=== VM-RUN a\npartial=== VM-EXIT a rc=2\n",
			[]BinaryResult{{Name: "a", ExitCode: 2, Finished: true, Output: "partial"}}},
		{"killed mid-run", "=== VM-RUN a\nstarted\n",
			[]BinaryResult{{Name: "a", ExitCode: -1, Output: "started\n"}}},
		{"marker of another name is output", "=== VM-RUN a\n=== VM-EXIT b rc=0\n=== VM-EXIT a rc=0\n",
			[]BinaryResult{{Name: "a", Finished: true, Output: "=== VM-EXIT b rc=0\n"}}},
		{"malformed rc is output", "=== VM-RUN a\n=== VM-EXIT a rc=x\n=== VM-EXIT a rc=3\n",
			[]BinaryResult{{Name: "a", ExitCode: 3, Finished: true, Output: "=== VM-EXIT a rc=x\n"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseConsole(tc.log); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestModuleClosure(t *testing.T) {
	dep := parseModulesDep(`kernel/net/ipv4/esp4.ko: kernel/net/xfrm/xfrm_algo.ko kernel/crypto/authenc.ko.xz
kernel/net/xfrm/xfrm_algo.ko:
kernel/crypto/authenc.ko.xz:
kernel/drivers/net/veth.ko:
`)
	got, err := moduleClosure(dep, []string{"esp4"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"kernel/crypto/authenc.ko.xz", "kernel/net/ipv4/esp4.ko", "kernel/net/xfrm/xfrm_algo.ko"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("closure = %v, want %v", got, want)
	}
	if _, err := moduleClosure(dep, []string{"esp6"}); err == nil {
		t.Error("missing module not reported")
	}
}
