package iperf

import (
	"strings"
	"testing"
)

func TestParseTCP(t *testing.T) {
	got, err := ParseTCP([]byte(`{"end":{"sum_sent":{"bits_per_second":9e8},"sum_received":{"bits_per_second":8.5e8}}}`))
	if err != nil || got != 850 {
		t.Errorf("got %v, %v; want 850 Mbit/s", got, err)
	}
	// What iperf3 3.12 prints, with exit status 0, when the server is not
	// listening yet: an error, never a rate of 0.
	refused := `{"start":{"connected":[],"version":"iperf 3.12"},"intervals":[],"end":{},
		"error":"unable to connect to server: Connection refused"}`
	if _, err := ParseTCP([]byte(refused)); err == nil || !strings.Contains(err.Error(), "unable to connect") {
		t.Errorf("refused connection: error %v, want iperf3's message", err)
	}
	if _, err := ParseTCP([]byte(`{"end":{"sum_received":{"bits_per_second":0}}}`)); err == nil {
		t.Error("a transfer of nothing parsed as a rate")
	}
}
