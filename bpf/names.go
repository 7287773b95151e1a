package bpf

import "fmt"

// String gives the counter's metric label: the C name without its
// WAN_ prefix, lower case ("drop_unknown_spi").
func (c WanWanCounter) String() string {
	switch c {
	case WanWanCounterWAN_PASS_IKE:
		return "pass_ike"
	case WanWanCounterWAN_PASS_IKE_NATT:
		return "pass_ike_natt"
	case WanWanCounterWAN_PASS_FRAG:
		return "pass_frag"
	case WanWanCounterWAN_PASS_OTHER:
		return "pass_other"
	case WanWanCounterWAN_PASS_SA:
		return "pass_sa"
	case WanWanCounterWAN_PASS_CPU_MISS:
		return "pass_cpu_miss"
	case WanWanCounterWAN_REDIRECT_XSK:
		return "redirect_xsk"
	case WanWanCounterWAN_REDIRECT_CPU:
		return "redirect_cpu"
	case WanWanCounterWAN_DROP_KEEPALIVE:
		return "drop_keepalive"
	case WanWanCounterWAN_DROP_UNKNOWN_SPI:
		return "drop_unknown_spi"
	case WanWanCounterWAN_DROP_XSK_MISS:
		return "drop_xsk_miss"
	case WanWanCounterWAN_DROP_MALFORMED:
		return "drop_malformed"
	case WanWanCounterWAN_DROP_IKE_RATELIMIT:
		return "drop_ike_ratelimit"
	case WanWanCounterWAN_DROP_EXT_LIMIT:
		return "drop_ext_limit"
	case WanWanCounterWAN_DROP_BAD_ACTION:
		return "drop_bad_action"
	case WanWanCounterWAN_DROP_ENCAP:
		return "drop_encap"
	case WanWanCounterWAN_DROP_PEER:
		return "drop_peer"
	case WanWanCounterWAN_DROP_FRAG:
		return "drop_frag"
	case WanWanCounterWAN_DROP_FRAG_ORPHAN:
		return "drop_frag_orphan"
	}
	return fmt.Sprintf("wan_counter_%d", uint32(c))
}

// String gives the counter's metric label, like WanWanCounter.String.
func (c LanLanCounter) String() string {
	switch c {
	case LanLanCounterLAN_PASS_BYPASS:
		return "pass_bypass"
	case LanLanCounterLAN_PASS_NOMATCH:
		return "pass_nomatch"
	case LanLanCounterLAN_PASS_OTHER:
		return "pass_other"
	case LanLanCounterLAN_REDIRECT_XSK:
		return "redirect_xsk"
	case LanLanCounterLAN_DROP_DISCARD:
		return "drop_discard"
	case LanLanCounterLAN_DROP_TRAP:
		return "drop_trap"
	case LanLanCounterLAN_DROP_XSK_MISS:
		return "drop_xsk_miss"
	case LanLanCounterLAN_DROP_MALFORMED:
		return "drop_malformed"
	case LanLanCounterLAN_DROP_EXT_LIMIT:
		return "drop_ext_limit"
	case LanLanCounterLAN_DROP_BAD_ACTION:
		return "drop_bad_action"
	case LanLanCounterLAN_MSS_CLAMPED:
		return "mss_clamped"
	case LanLanCounterLAN_EVENT_TRAP:
		return "event_trap"
	case LanLanCounterLAN_EVENT_TRAP_SUPPRESSED:
		return "event_trap_suppressed"
	case LanLanCounterLAN_EVENT_LOST:
		return "event_lost"
	}
	return fmt.Sprintf("lan_counter_%d", uint32(c))
}
