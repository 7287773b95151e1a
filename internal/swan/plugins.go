package swan

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
)

// DefaultPluginDir is where Debian's strongSwan packages install charon's
// loadable plugins (libstrongswan-NAME.so).
const DefaultPluginDir = "/usr/lib/ipsec/plugins"

// pluginPackage names the Debian package that ships a loadable plugin, for
// the plugins these tests load or may load; "" for plugins built into
// libcharon (socket-default, vici) or not known here. Debian installs
// strongswan-charon without the standard and extra plugins when
// recommends are off, and charon then exits with status 66.
func pluginPackage(plugin string) string {
	switch plugin {
	case "nonce", "kdf", "kernel-netlink", "random", "pem", "pkcs1", "pkcs8",
		"x509", "pubkey", "sha2", "hmac", "aes", "revocation", "constraints":
		return "libstrongswan"
	case "openssl", "gcm", "agent", "xcbc", "cmac", "ctr", "ccm", "mgf1":
		return "libstrongswan-standard-plugins"
	case "chapoly", "curve25519", "ed25519":
		return "libstrongswan-extra-plugins"
	case "kernel-libipsec", "eap-identity", "eap-mschapv2", "xauth-eap":
		return "libcharon-extra-plugins"
	}
	return ""
}

// checkPlugins reports every listed plugin whose shared object is missing
// from dir, with the package to install, before charon is started: its
// own message ("failed to load 3 critical plugin features") names neither.
func checkPlugins(dir string, plugins []string) error {
	var errs []error
	for _, p := range plugins {
		pkg := pluginPackage(p)
		if pkg == "" {
			continue
		}
		so := filepath.Join(dir, "libstrongswan-"+p+".so")
		if _, err := os.Stat(so); err != nil {
			errs = append(errs, fmt.Errorf("swan: charon plugin %s is missing (%s): install Debian's %s (scripts/deps.sh does)", p, so, pkg))
		}
	}
	return errors.Join(errs...)
}

// pluginFailRE matches charon's lines about plugins it could not load, e.g.
// "plugin 'openssl' failed to load: ... cannot open shared object file"
// and "feature CUSTOM:kernel-ipsec in critical plugin 'kernel-libipsec' has unmet dependency".
var pluginFailRE = regexp.MustCompile(`(?m)^.*(plugin '[^']+' failed to load|critical plugin|failed to load \d+ critical plugin).*$`)

var pluginNameRE = regexp.MustCompile(`plugin '([^']+)'`)

// pluginFailures extracts charon's plugin errors from its log for an error
// message, each followed by the package that would fix it where known.
func pluginFailures(log string) string {
	lines := pluginFailRE.FindAllString(log, 8)
	if len(lines) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("; charon said:")
	for _, l := range lines {
		l = strings.TrimSpace(l)
		b.WriteString("\n  " + l)
		if m := pluginNameRE.FindStringSubmatch(l); m != nil {
			if pkg := pluginPackage(m[1]); pkg != "" {
				b.WriteString(" (install Debian's " + pkg + ")")
			}
		}
	}
	return b.String()
}

// tailWriter keeps the last max bytes written to it.
type tailWriter struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if over := len(w.buf) - w.max; over > 0 {
		w.buf = append(w.buf[:0], w.buf[over:]...)
	}
	return len(p), nil
}

func (w *tailWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.buf)
}
