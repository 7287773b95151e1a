package config

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/xdpsec/xdpsec/ike/dn"
)

// IDType is an IKEv2 identification type (RFC 7296 3.5).
type IDType uint8

// Identification types. IDAny (0) is no configured identity: the local
// side then uses the address the IKE SA runs over, the remote side
// accepts any identity the peer authenticates.
const (
	IDAny        IDType = 0
	IDIPv4Addr   IDType = 1
	IDFQDN       IDType = 2
	IDRFC822Addr IDType = 3
	IDIPv6Addr   IDType = 5
	IDDERASN1DN  IDType = 9
)

// String returns the lower-case kind name ("ipv4", "ipv6", "fqdn",
// "rfc822", "dn", "any"), the kinds ike.NewIdentity takes.
func (t IDType) String() string {
	switch t {
	case IDAny:
		return "any"
	case IDIPv4Addr:
		return "ipv4"
	case IDFQDN:
		return "fqdn"
	case IDRFC822Addr:
		return "rfc822"
	case IDIPv6Addr:
		return "ipv6"
	case IDDERASN1DN:
		return "dn"
	}
	return fmt.Sprintf("IDType(%d)", uint8(t))
}

// Identity is an IKE identity, written as in swanctl.conf: an IP
// address, an FQDN (optionally "@"-prefixed), user@fqdn, or a DN such as
// "CN=gw,O=Example".
type Identity struct {
	Type  IDType
	Value string
}

// String returns the identity as configured; "%any" for IDAny.
func (id Identity) String() string {
	switch id.Type {
	case IDAny:
		return anyAddr
	case IDFQDN:
		// Keep the "@" marker when the name would otherwise read as
		// an address, so the string parses back to an FQDN.
		if _, err := netip.ParseAddr(id.Value); err == nil || strings.Contains(id.Value, "=") {
			return "@" + id.Value
		}
	}
	return id.Value
}

// IsZero reports whether no identity is configured (%any).
func (id Identity) IsZero() bool { return id.Type == IDAny }

// MarshalYAML implements yaml.Marshaler.
func (id Identity) MarshalYAML() (any, error) { return id.String(), nil }

// ParseIdentity parses an identity string. The type follows from the
// form, as strongSwan infers it: address, DN (contains '='), user@fqdn,
// "@name" (FQDN, forced), or a plain host name (FQDN).
func ParseIdentity(s string) (Identity, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return Identity{}, fmt.Errorf("empty identity")
	case s == anyAddr:
		return Identity{}, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return Identity{}, fmt.Errorf("address identity %q has a zone", s)
		}
		if a.Is4() || a.Is4In6() {
			return Identity{IDIPv4Addr, a.Unmap().String()}, nil
		}
		return Identity{IDIPv6Addr, a.String()}, nil
	}
	if name, ok := strings.CutPrefix(s, "@"); ok {
		if err := checkFQDN(name); err != nil {
			return Identity{}, err
		}
		return Identity{IDFQDN, name}, nil
	}
	if strings.Contains(s, "=") {
		// The encoder ike uses on the wire, so whatever is accepted
		// here can be sent.
		if _, err := dn.Encode(s); err != nil {
			return Identity{}, err
		}
		return Identity{IDDERASN1DN, s}, nil
	}
	if user, domain, ok := strings.Cut(s, "@"); ok {
		if user == "" || strings.ContainsAny(user, " \t\"<>()[]\\,;:") {
			return Identity{}, fmt.Errorf("invalid user part %q in user@fqdn identity", user)
		}
		if err := checkFQDN(domain); err != nil {
			return Identity{}, err
		}
		return Identity{IDRFC822Addr, s}, nil
	}
	if err := checkFQDN(s); err != nil {
		return Identity{}, fmt.Errorf("not an address, FQDN, user@fqdn or DN: %w", err)
	}
	return Identity{IDFQDN, s}, nil
}

func checkFQDN(s string) error {
	name := strings.TrimSuffix(s, ".")
	if name == "" || len(name) > 253 {
		return fmt.Errorf("invalid host name %q", s)
	}
	allDigits := true
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("invalid host name %q", s)
		}
		for _, r := range label {
			switch {
			case r >= '0' && r <= '9':
			case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r == '-':
				allDigits = false
			default:
				return fmt.Errorf("invalid host name %q: bad character %q", s, r)
			}
		}
	}
	if allDigits {
		// "10.1.2" and the like are malformed addresses, not names.
		return fmt.Errorf("invalid host name %q: looks like a malformed address", s)
	}
	return nil
}
