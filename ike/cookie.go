package ike

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
	"sync"
	"time"
)

// cookieSecretLifetime is how long a COOKIE secret is used before a new one
// replaces it; the previous one is still accepted, so a cookie stays valid
// for between one and two periods (RFC 7296 2.6).
const cookieSecretLifetime = 2 * time.Minute

// cookieJar makes and checks stateless cookies:
// cookie = <VersionIDofSecret> | SHA-256(Ni | IPi | SPIi | <secret>).
type cookieJar struct {
	mu      sync.Mutex
	now     func() time.Time
	version byte
	cur     [32]byte
	prev    [32]byte
	hasPrev bool
	rotated time.Time
}

func newCookieJar(now func() time.Time) *cookieJar {
	j := &cookieJar{now: now, rotated: now()}
	_, _ = rand.Read(j.cur[:])
	return j
}

func (j *cookieJar) rotateLocked() {
	if j.now().Sub(j.rotated) < cookieSecretLifetime {
		return
	}
	j.prev, j.hasPrev = j.cur, true
	_, _ = rand.Read(j.cur[:])
	j.version++
	j.rotated = j.now()
}

func cookieHash(version byte, secret *[32]byte, ni []byte, ip netip.Addr, spii uint64) []byte {
	h := sha256.New()
	h.Write(ni)
	ab := ip.Unmap().AsSlice()
	h.Write(ab)
	var s [8]byte
	binary.BigEndian.PutUint64(s[:], spii)
	h.Write(s[:])
	h.Write(secret[:])
	return h.Sum([]byte{version})
}

func (j *cookieJar) make(ni []byte, ip netip.Addr, spii uint64) []byte {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.rotateLocked()
	return cookieHash(j.version, &j.cur, ni, ip, spii)
}

func (j *cookieJar) valid(cookie, ni []byte, ip netip.Addr, spii uint64) bool {
	if len(cookie) != 1+sha256.Size {
		return false
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.rotateLocked()
	switch {
	case cookie[0] == j.version:
		return hmac.Equal(cookie, cookieHash(j.version, &j.cur, ni, ip, spii))
	case j.hasPrev && cookie[0] == j.version-1:
		return hmac.Equal(cookie, cookieHash(j.version-1, &j.prev, ni, ip, spii))
	}
	return false
}
