package xfrm

import (
	"fmt"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// fakeKernel is an XFRM database in memory: states by SPI and
// destination, policies by direction and selector, as the kernel keys
// them.
type fakeKernel struct {
	mu       sync.Mutex
	states   map[string]stateSpec
	counters map[string][2]uint64 // bytes, packets
	policies map[string]netlink.XfrmPolicy
	// addErr, when set, decides the outcome of each addState.
	addErr func(s stateSpec) error
	// inForce is what offloadOf reports for offloaded states; "" means
	// the requested kind.
	inForce   *string
	polErr    func(p *netlink.XfrmPolicy) error
	addStates []stateSpec // every successful add, in order
	updates   int         // updatePolicy calls that wrote a policy
}

func newFakeKernel() *fakeKernel {
	return &fakeKernel{states: map[string]stateSpec{}, counters: map[string][2]uint64{},
		policies: map[string]netlink.XfrmPolicy{}}
}

func stateID(st *netlink.XfrmState) string {
	return fmt.Sprintf("%08x/%s", uint32(st.Spi), st.Dst)
}

func policyID(p *netlink.XfrmPolicy) string {
	return fmt.Sprintf("%s/%s/%s/%d", p.Dir, p.Src, p.Dst, p.Proto)
}

func (k *fakeKernel) addState(s stateSpec) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.addErr != nil {
		if err := k.addErr(s); err != nil {
			return err
		}
	}
	id := stateID(&s.st)
	if _, ok := k.states[id]; ok {
		return unix.EEXIST
	}
	k.states[id] = s
	k.addStates = append(k.addStates, s)
	return nil
}

func (k *fakeKernel) offloadOf(st *netlink.XfrmState) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	s, ok := k.states[stateID(st)]
	if !ok {
		return "", unix.ESRCH
	}
	if s.offload != nil && k.inForce != nil {
		return *k.inForce, nil
	}
	return s.offload.kind(), nil
}

func (k *fakeKernel) delState(st *netlink.XfrmState) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	id := stateID(st)
	if _, ok := k.states[id]; !ok {
		return unix.ESRCH
	}
	delete(k.states, id)
	return nil
}

func (k *fakeKernel) listStates() ([]netlink.XfrmState, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []netlink.XfrmState
	for id, s := range k.states {
		st := s.st
		c := k.counters[id]
		st.Statistics.Bytes, st.Statistics.Packets = c[0], c[1]
		out = append(out, st)
	}
	return out, nil
}

func (k *fakeKernel) setCounters(spi uint32, dst string, bytes, packets uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.counters[fmt.Sprintf("%08x/%s", spi, dst)] = [2]uint64{bytes, packets}
}

func (k *fakeKernel) updatePolicy(p *netlink.XfrmPolicy) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.polErr != nil {
		if err := k.polErr(p); err != nil {
			return err
		}
	}
	k.policies[policyID(p)] = *p
	k.updates++
	return nil
}

func (k *fakeKernel) delPolicy(p *netlink.XfrmPolicy) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	id := policyID(p)
	if _, ok := k.policies[id]; !ok {
		return unix.ENOENT
	}
	delete(k.policies, id)
	return nil
}

func (k *fakeKernel) listPolicies() ([]netlink.XfrmPolicy, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []netlink.XfrmPolicy
	for _, p := range k.policies {
		out = append(out, p)
	}
	return out, nil
}

func (k *fakeKernel) close() {}

func (k *fakeKernel) policy(dir netlink.Dir, src, dst string) (netlink.XfrmPolicy, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, p := range k.policies {
		if p.Dir == dir && p.Src.String() == src && p.Dst.String() == dst {
			return p, true
		}
	}
	return netlink.XfrmPolicy{}, false
}
