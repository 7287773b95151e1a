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
/* The kernel's default reassembly timeout (net.ipv4.ipfrag_time). */
#define FRAG_TIMEOUT_NS (30 * NSEC_PER_SEC)

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
 * Fragments. Only a datagram's first fragment carries the SPI or the UDP
 * ports, so it is judged like an unfragmented packet; when it may go to the
 * stack (which reassembles), its datagram is remembered and the later
 * fragments follow it. ESP and UDP fragments of datagrams not remembered
 * are dropped: without this, fragments of any SPI would reach the stack.
 */
static __always_inline void frag_key_of(struct frag_key *k, const struct pkt_info *p)
{
	__builtin_memcpy(k->saddr, p->saddr, 16);
	__builtin_memcpy(k->daddr, p->daddr, 16);
	k->id = p->frag_id;
	k->proto = p->l4proto;
}

/* Lets a first fragment through and opens the way for the rest. */
static __always_inline int frag_first_pass(const struct pkt_info *p)
{
	struct frag_value v = { .first_ns = bpf_ktime_get_ns() };
	struct frag_key k = {};

	frag_key_of(&k, p);
	bpf_map_update_elem(&wan_frags, &k, &v, BPF_ANY);
	return verdict(WAN_PASS_FRAG, XDP_PASS);
}

static __always_inline int frag_later(const struct pkt_info *p)
{
	struct frag_value *v;
	struct frag_key k = {};

	/* Other protocols are not the front door's to judge. */
	if (p->l4proto != IPPROTO_ESP && p->l4proto != IPPROTO_UDP)
		return verdict(WAN_PASS_FRAG, XDP_PASS);
	frag_key_of(&k, p);
	v = bpf_map_lookup_elem(&wan_frags, &k);
	if (!v || bpf_ktime_get_ns() - v->first_ns > FRAG_TIMEOUT_NS)
		return verdict(WAN_DROP_FRAG_ORPHAN, XDP_DROP);
	return verdict(WAN_PASS_FRAG, XDP_PASS);
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

/* A first fragment of a known SA's ESP: the kernel reassembles for XFRM;
 * the afxdp engine takes whole packets only. */
static __always_inline int esp_frag(const struct pkt_info *p, const struct sa_value *sa)
{
	switch (sa->action) {
	case SA_ACTION_AFXDP:
		return verdict(WAN_DROP_FRAG, XDP_DROP);
	case SA_ACTION_XFRM:
	case SA_ACTION_PASS:
		return frag_first_pass(p);
	}
	return verdict(WAN_DROP_BAD_ACTION, XDP_DROP);
}

/*
 * ESP header at esp, len bytes of ESP according to the headers; in_udp
 * when it came in UDP 4500. The SA must have been negotiated for that form,
 * and raw ESP must come from the SA's peer, as the kernel's XFRM requires
 * of its states. ESP-in-UDP may come from any source: a NAT may have moved
 * the peer, which the data plane learns from packets whose ICV verified.
 */
static __always_inline int wan_esp(struct xdp_md *ctx, const struct pkt_info *p,
				   __u8 *esp, __u32 len, int in_udp)
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
	if (sa->encap != (in_udp ? SA_ENCAP_UDP : SA_ENCAP_NONE))
		return verdict(WAN_DROP_ENCAP, XDP_DROP);
	if (!in_udp && !addr_eq(sa->peer, p->saddr))
		return verdict(WAN_DROP_PEER, XDP_DROP);
	if (p->frag == FRAG_FIRST)
		return esp_frag(p, sa);

	cfg = bpf_map_lookup_elem(&wan_cfg, &zero);
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

/* An IKE message (or a datagram's first fragment of one) for the daemon. */
static __always_inline int wan_ike(const struct pkt_info *p, __u8 *ike, __u32 len,
				   void *end, __u32 pass_counter)
{
	__u32 zero = 0;

	/* Shorter than an IKE header: nothing the daemon could parse. */
	if (len < IKE_HDR_LEN || (void *)(ike + IKE_HDR_LEN) > end)
		return verdict(WAN_DROP_MALFORMED, XDP_DROP);
	if (ike_over_limit(p, ike, end, bpf_map_lookup_elem(&wan_cfg, &zero)))
		return verdict(WAN_DROP_IKE_RATELIMIT, XDP_DROP);
	if (p->frag == FRAG_FIRST)
		return frag_first_pass(p);
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
	if (ulen < sizeof(*udp))
		return verdict(WAN_DROP_MALFORMED, XDP_DROP);
	/* The UDP length, not the frame, bounds the payload: short frames
	 * carry Ethernet padding. A first fragment holds only the start of
	 * the datagram its UDP length describes. */
	if (p->frag == FRAG_FIRST)
		ulen = p->l4len;
	else if (ulen > p->l4len)
		return verdict(WAN_DROP_MALFORMED, XDP_DROP);
	plen = ulen - sizeof(*udp);
	payload = (__u8 *)(udp + 1);
	dport = bpf_ntohs(udp->dest);

	if (dport == IKE_PORT)
		return wan_ike(p, payload, plen, end, WAN_PASS_IKE);
	if (dport != NATT_PORT) {
		if (p->frag == FRAG_FIRST)
			return frag_first_pass(p);
		return verdict(WAN_PASS_OTHER, XDP_PASS);
	}

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
	return wan_esp(ctx, p, payload, plen, 1);
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
	if (p->frag == FRAG_LATER)
		return frag_later(p);
	if (p->l4proto == IPPROTO_ESP)
		return wan_esp(ctx, p, data + p->l4off, p->l4len, 0);
	if (p->l4proto == IPPROTO_UDP)
		return wan_udp(ctx, p);
	return verdict(p->frag == FRAG_FIRST ? WAN_PASS_FRAG : WAN_PASS_OTHER, XDP_PASS);
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
XDPSEC_EXPORT_TYPE(enum, wan_counter);
XDPSEC_EXPORT_TYPE(enum, sa_action);
XDPSEC_EXPORT_TYPE(enum, sa_encap);

char _license[] SEC("license") = "Dual BSD/GPL";
