package offload

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
)

// SPIReservations are the inbound SPIs a data plane handed out for
// negotiations that have not installed their SA yet. Callers hold their own
// lock; the map is not safe for concurrent use.
type SPIReservations map[uint32]struct{}

// Reserve picks a random free SPI and reserves it. SPIs are random so that
// they do not reveal how many SAs a gateway has set up; values below 256
// are reserved by RFC 4303 2.1. installed reports SPIs of installed
// inbound SAs, which are not free either.
func (r SPIReservations) Reserve(installed func(spi uint32) bool) (uint32, error) {
	var b [4]byte
	for range 64 {
		if _, err := rand.Read(b[:]); err != nil {
			return 0, fmt.Errorf("random spi: %w", err)
		}
		spi := binary.BigEndian.Uint32(b[:])
		if _, taken := r[spi]; spi < 256 || taken || installed(spi) {
			continue
		}
		r[spi] = struct{}{}
		return spi, nil
	}
	return 0, fmt.Errorf("no free spi after 64 tries")
}

// Release gives back a reserved SPI that was never installed.
func (r SPIReservations) Release(spi uint32) error {
	if _, ok := r[spi]; !ok {
		return fmt.Errorf("release spi %08x: %w", spi, ErrNotFound)
	}
	delete(r, spi)
	return nil
}
