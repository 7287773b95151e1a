package swan

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckPlugins(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"nonce", "kdf", "kernel-netlink"} {
		if err := os.WriteFile(filepath.Join(dir, "libstrongswan-"+p+".so"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		plugins []string
		want    []string // substrings of the error; none: no error
	}{
		{"all present", []string{"nonce", "kdf", "kernel-netlink"}, nil},
		{"built-in plugins have no file", []string{"nonce", "socket-default", "vici"}, nil},
		{"standard plugins missing", []string{"nonce", "openssl", "gcm"},
			[]string{"plugin openssl is missing", "plugin gcm is missing", "libstrongswan-standard-plugins"}},
		{"extra plugins missing", []string{"chapoly", "curve25519"},
			[]string{"plugin chapoly", "plugin curve25519", "libstrongswan-extra-plugins"}},
		{"libipsec missing", []string{"kernel-libipsec"}, []string{"libcharon-extra-plugins"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkPlugins(dir, tt.plugins)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("checkPlugins: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("checkPlugins: no error for missing plugins")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestPluginFailures(t *testing.T) {
	log := `12:00:01 00[DMN] Starting IKE charon daemon (strongSwan 5.9.8, Linux 6.18, x86_64)
12:00:01 00[LIB] plugin 'openssl' failed to load: /usr/lib/ipsec/plugins/libstrongswan-openssl.so: cannot open shared object file: No such file or directory
12:00:01 00[LIB] failed to load 3 critical plugin features
12:00:01 00[DMN] initialization failed - aborting charon
`
	got := pluginFailures(log)
	for _, w := range []string{"plugin 'openssl' failed to load", "install Debian's libstrongswan-standard-plugins", "3 critical plugin features"} {
		if !strings.Contains(got, w) {
			t.Errorf("pluginFailures = %q, lacks %q", got, w)
		}
	}
	if strings.Contains(got, "Starting IKE") {
		t.Errorf("pluginFailures kept an unrelated line: %q", got)
	}
	if got := pluginFailures("12:00:01 00[DMN] some other failure\n"); got != "" {
		t.Errorf("pluginFailures of a log without plugin errors = %q", got)
	}
}

func TestTailWriterKeepsTheEnd(t *testing.T) {
	w := &tailWriter{max: 8}
	for _, s := range []string{"abc", "defgh", "ijklmn"} {
		if _, err := w.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	if got := w.String(); got != "ghijklmn" {
		t.Fatalf("tail = %q, want %q", got, "ghijklmn")
	}
}

// TestDefaultPluginsInstalled fails where scripts/deps.sh did not install
// what the interop tests' charon loads (a fresh machine once did).
func TestDefaultPluginsInstalled(t *testing.T) {
	if _, err := os.Stat(DefaultCharon); err != nil {
		t.Skipf("strongSwan not installed (%v): run scripts/deps.sh as root", err)
	}
	if err := checkPlugins(DefaultPluginDir, append(DefaultPlugins(), "gcm", "chapoly", "curve25519")); err != nil {
		t.Fatal(err)
	}
}
