package esp

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// SADB maps SPIs to inbound SAs. Lookups are lock-free: writers copy the map
// and publish the copy, which suits a table read per packet and written per
// rekey.
type SADB struct {
	mu    sync.Mutex // serialises writers
	m     atomic.Pointer[map[uint32]*SA]
	drops dropCounters
}

// NewSADB returns an empty SADB.
func NewSADB() *SADB {
	db := new(SADB)
	m := map[uint32]*SA{}
	db.m.Store(&m)
	return db
}

// Lookup returns the SA with spi, or nil.
func (db *SADB) Lookup(spi uint32) *SA { return (*db.m.Load())[spi] }

// Add installs sa; its SPI must be free.
func (db *SADB) Add(sa *SA) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	old := *db.m.Load()
	if _, ok := old[sa.spi]; ok {
		return fmt.Errorf("sa %#x: spi in use", sa.spi)
	}
	m := make(map[uint32]*SA, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[sa.spi] = sa
	db.m.Store(&m)
	return nil
}

// Remove deletes the SA with spi and returns it, or nil if there was none.
func (db *SADB) Remove(spi uint32) *SA {
	db.mu.Lock()
	defer db.mu.Unlock()
	old := *db.m.Load()
	sa, ok := old[spi]
	if !ok {
		return nil
	}
	m := make(map[uint32]*SA, len(old))
	for k, v := range old {
		if k != spi {
			m[k] = v
		}
	}
	db.m.Store(&m)
	return sa
}

// Len returns the number of SAs.
func (db *SADB) Len() int { return len(*db.m.Load()) }

// Drops returns the drops counted before an SA was found: malformed packets
// and unknown SPIs.
func (db *SADB) Drops() DropCounts { return db.drops.snapshot() }

func (db *SADB) drop(v Verdict) Verdict {
	db.drops[v].Add(1)
	return v
}
