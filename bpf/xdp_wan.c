//go:build ignore

/* The build tag keeps the go tool from taking this file for cgo source. */
// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * xdp_wan: the ciphertext side's front door. IKE goes to the stack (the
 * daemon's sockets), ESP of installed SAs to the data plane the SA names,
 * everything that cannot be ours and costs work (ESP for unknown SPIs,
 * keepalives, IKE_SA_INIT floods) is dropped here. Each packet increments
 * exactly one verdict counter.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "include/types.h"
#include "include/parse.h"
#include "include/wan_maps.h"

#define IKE_PORT 500
#define NATT_PORT 4500
#define IKE_HDR_LEN 28
#define IKE_EXCH_SA_INIT 34
#define IKE_FLAG_INITIATOR 0x08
#define IKE_FLAG_RESPONSE 0x20
#define ESP_HDR_LEN 8
#define NSEC_PER_SEC 1000000000ULL
#define NSEC_PER_MSEC 1000000ULL

static __always_inline int verdict(__u32 counter, int action)
{
	wan_count(counter);
	return action;
}

/*
 * Whether this IKE message is an IKE_SA_INIT request beyond the configured
 * per-source rate. Only the initial exchange is limited: it is the one that
 * costs the daemon a key exchange before the peer proved anything.
 */
static __always_inline int ike_over_limit(const struct pkt_info *p, __u8 *ike,
					  void *end, const struct wan_config *cfg)
{
	struct ike_rl_key key = {};
	struct ike_rl_value *st;
	__u64 now;

	if (!cfg || cfg->ike_init_rate == 0)
		return 0;
	if ((void *)(ike + IKE_HDR_LEN) > end)
		return 0;
	if (ike[18] != IKE_EXCH_SA_INIT || !(ike[19] & IKE_FLAG_INITIATOR) ||
	    (ike[19] & IKE_FLAG_RESPONSE))
		return 0;

	__builtin_memcpy(key.saddr, p->saddr, 16);
	now = bpf_ktime_get_ns();
	st = bpf_map_lookup_elem(&ike_rl, &key);
	if (!st) {
		struct ike_rl_value fresh = { .window_start_ns = now, .count = 1 };

		bpf_map_update_elem(&ike_rl, &key, &fresh, BPF_ANY);
		return 0;
	}
	if (now - st->window_start_ns >= NSEC_PER_SEC) {
		/* A racing CPU may reset too: at worst a few extra requests. */
		st->window_start_ns = now;
		st->count = 1;
		return 0;
	}
	return __sync_fetch_and_add(&st->count, 1) + 1 > cfg->ike_init_rate;
}

/*
 * Remembers the outer source of a known SA and reports a change (NAT
 * rebinding) on the ring buffer, at most once per interval per SA. The
 * record is updated even when the event is suppressed, so the daemon can
 * always read the latest source from the map.
 */
static __always_inline void track_peer(const struct sa_key *key,
				       const struct pkt_info *p, __u16 sport,
				       const struct wan_config *cfg)
{
	struct sa_peer *peer = bpf_map_lookup_elem(&sa_peers, key);
	struct nat_event ev = {};
	__u64 now, gap;

	if (!peer) {
		struct sa_peer first = { .sport = sport };

		/* The first packet sets the baseline; nothing changed yet. */
		__builtin_memcpy(first.saddr, p->saddr, 16);
		bpf_map_update_elem(&sa_peers, key, &first, BPF_NOEXIST);
		return;
	}
	if (peer->sport == sport && addr_eq(peer->saddr, p->saddr))
		return;

	ev.spi = key->spi;
	ev.old_sport = peer->sport;
	ev.new_sport = sport;
	__builtin_memcpy(ev.daddr, key->daddr, 16);
	__builtin_memcpy(ev.old_saddr, peer->saddr, 16);
	__builtin_memcpy(ev.new_saddr, p->saddr, 16);
	__builtin_memcpy(peer->saddr, p->saddr, 16);
	peer->sport = sport;

	now = bpf_ktime_get_ns();
	gap = cfg && cfg->event_interval_ms ? cfg->event_interval_ms * NSEC_PER_MSEC
					      : 1000 * NSEC_PER_MSEC;
	if (peer->last_event_ns && now - peer->last_event_ns < gap) {
		wan_count(WAN_EVENT_NAT_SUPPRESSED);
		return;
	}
	peer->last_event_ns = now;
	if (bpf_ringbuf_output(&wan_events, &ev, sizeof(ev), 0))
		wan_count(WAN_EVENT_LOST);
	else
		wan_count(WAN_EVENT_NAT);
}

/* Picks a CPU for an xfrm SA: by the SPI alone (one CPU per SA, inner
 * flows stay in order) or, for one busy SA, by SPI and sequence number,
 * spreading it over all slots (the kernel's replay window copes with the
 * reordering; the inner flows see some). */
static __always_inline int to_cpu(__u32 spi, __u32 seq, const struct wan_config *cfg)
{
	__u32 slots = cfg ? cfg->cpu_slots : 0;
	__u32 h, slot, *cpu;

	if (slots == 0 || slots > CPU_SLOTS_MAX)
		return verdict(WAN_PASS_CPU_MISS, XDP_PASS);
	if (cfg->cpu_per_sa)
		seq = 0;
	h = (spi ^ seq) * 0x9e3779b1U;
	h ^= h >> 16;
	slot = h % slots;
	cpu = bpf_map_lookup_elem(&cpu_slots, &slot);
	if (!cpu)
		return verdict(WAN_PASS_CPU_MISS, XDP_PASS);
	/* Without a CPU entry the stack still decrypts: pass, not drop. */
	if (bpf_redirect_map(&cpus, *cpu, XDP_PASS) == XDP_REDIRECT)
		return verdict(WAN_REDIRECT_CPU, XDP_REDIRECT);
	return verdict(WAN_PASS_CPU_MISS, XDP_PASS);
}

/* ESP header at esp, len bytes of ESP according to the headers. */
static __always_inline int wan_esp(struct xdp_md *ctx, const struct pkt_info *p,
				   __u8 *esp, __u32 len, __u16 sport)
{
	void *end = (void *)(long)ctx->data_end;
	struct wan_config *cfg;
	struct sa_value *sa;
	struct sa_key key = {};
	__u32 zero = 0, seq;

	if (len < ESP_HDR_LEN || (void *)(esp + ESP_HDR_LEN) > end)
		return verdict(WAN_DROP_MALFORMED, XDP_DROP);
	__builtin_memcpy(&key.spi, esp, 4);
	key.spi = bpf_ntohl(key.spi);
	__builtin_memcpy(&seq, esp + 4, 4);
	seq = bpf_ntohl(seq);
	__builtin_memcpy(key.daddr, p->daddr, 16);

	sa = bpf_map_lookup_elem(&sa_in, &key);
	if (!sa)
		return verdict(WAN_DROP_UNKNOWN_SPI, XDP_DROP);

	cfg = bpf_map_lookup_elem(&wan_cfg, &zero);
	track_peer(&key, p, sport, cfg);

	switch (sa->action) {
	case SA_ACTION_AFXDP:
		/* Fail closed: no socket on this queue means drop. */
		if (bpf_redirect_map(&wan_xsks, ctx->rx_queue_index, XDP_DROP) == XDP_REDIRECT)
			return verdict(WAN_REDIRECT_XSK, XDP_REDIRECT);
		return verdict(WAN_DROP_XSK_MISS, XDP_DROP);
	case SA_ACTION_XFRM:
		return to_cpu(key.spi, seq, cfg);
	case SA_ACTION_PASS:
		return verdict(WAN_PASS_SA, XDP_PASS);
	}
	return verdict(WAN_DROP_BAD_ACTION, XDP_DROP);
}

static __always_inline int wan_ike(const struct pkt_info *p, __u8 *ike, __u32 len,
				   void *end, __u32 pass_counter)
{
	__u32 zero = 0;

	/* Shorter than an IKE header: nothing the daemon could parse. */
	if (len < IKE_HDR_LEN || (void *)(ike + IKE_HDR_LEN) > end)
		return verdict(WAN_DROP_MALFORMED, XDP_DROP);
	if (ike_over_limit(p, ike, end, bpf_map_lookup_elem(&wan_cfg, &zero)))
		return verdict(WAN_DROP_IKE_RATELIMIT, XDP_DROP);
	return verdict(pass_counter, XDP_PASS);
}

static __always_inline int wan_udp(struct xdp_md *ctx, const struct pkt_info *p)
{
	void *end = (void *)(long)ctx->data_end;
	struct udphdr *udp = (void *)(long)ctx->data + p->l4off;
	__u8 *payload;
	__u32 ulen, plen;
	__u16 dport;

	if ((void *)(udp + 1) > end || p->l4len < sizeof(*udp))
		return verdict(WAN_DROP_MALFORMED, XDP_DROP);
	ulen = bpf_ntohs(udp->len);
	/* The UDP length, not the frame, bounds the payload: short frames
	 * carry Ethernet padding. */
	if (ulen < sizeof(*udp) || ulen > p->l4len)
		return verdict(WAN_DROP_MALFORMED, XDP_DROP);
	plen = ulen - sizeof(*udp);
	payload = (__u8 *)(udp + 1);
	dport = bpf_ntohs(udp->dest);

	if (dport == IKE_PORT)
		return wan_ike(p, payload, plen, end, WAN_PASS_IKE);
	if (dport != NATT_PORT)
		return verdict(WAN_PASS_OTHER, XDP_PASS);

	/* RFC 3948: a single 0xFF is a keepalive, four zero bytes mark IKE,
	 * anything else is an ESP header. */
	if (plen == 1) {
		if ((void *)(payload + 1) > end)
			return verdict(WAN_DROP_MALFORMED, XDP_DROP);
		if (payload[0] == 0xff)
			return verdict(WAN_DROP_KEEPALIVE, XDP_DROP);
		return verdict(WAN_DROP_MALFORMED, XDP_DROP);
	}
	if (plen < 4 || (void *)(payload + 4) > end)
		return verdict(WAN_DROP_MALFORMED, XDP_DROP);
	if (payload[0] == 0 && payload[1] == 0 && payload[2] == 0 && payload[3] == 0)
		return wan_ike(p, payload + 4, plen - 4, end, WAN_PASS_IKE_NATT);
	return wan_esp(ctx, p, payload, plen, bpf_ntohs(udp->source));
}

/*
 * Everything after parsing, as a global function: verified once with the
 * parse results as unknown values rather than once per header layout
 * (VLAN tags x IPv6 extension chains), which keeps the verifier's work
 * linear.
 */
__attribute__((noinline)) int wan_classify(struct xdp_md *ctx, struct pkt_info *p)
{
	void *data = (void *)(long)ctx->data;

	if (!p || p->l4off > L4OFF_MAX)
		return verdict(WAN_DROP_MALFORMED, XDP_DROP);
	if (p->frag != FRAG_NONE)
		return verdict(WAN_PASS_FRAG, XDP_PASS);
	if (p->l4proto == IPPROTO_ESP)
		return wan_esp(ctx, p, data + p->l4off, p->l4len, 0);
	if (p->l4proto == IPPROTO_UDP)
		return wan_udp(ctx, p);
	return verdict(WAN_PASS_OTHER, XDP_PASS);
}

SEC("xdp")
int xdp_wan(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct pkt_info p = {};

	switch (parse_l3(data, end, &p)) {
	case PARSE_OK:
		break;
	case PARSE_NOT_IP:
		return verdict(WAN_PASS_OTHER, XDP_PASS);
	case PARSE_EXT_LIMIT:
		return verdict(WAN_DROP_EXT_LIMIT, XDP_DROP);
	default:
		return verdict(WAN_DROP_MALFORMED, XDP_DROP);
	}
	return wan_classify(ctx, &p);
}

/* Types bpf2go exports although no map names them. */
XDPSEC_EXPORT_TYPE(struct, nat_event);
XDPSEC_EXPORT_TYPE(enum, wan_counter);
XDPSEC_EXPORT_TYPE(enum, sa_action);

char _license[] SEC("license") = "Dual BSD/GPL";
