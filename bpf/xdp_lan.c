//go:build ignore

/* The build tag keeps the go tool from taking this file for cgo source. */
// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * xdp_lan: the plaintext side. Packets covered by a protect policy go to
 * the afxdp workers for encryption and never leave in clear: without a
 * socket or an SA they are dropped (and an SA-less policy asks the daemon
 * to negotiate). Discard policies drop, bypass and uncovered traffic
 * passes. Each packet increments exactly one verdict counter.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "include/types.h"
#include "include/parse.h"
#include "include/lan_maps.h"

#define TCP_OPT_EOL 0
#define TCP_OPT_NOP 1
#define TCP_OPT_MSS 2
#define TCP_OPT_MSS_LEN 4
#define TCP_OPTS_MAX 40
#define NSEC_PER_MSEC 1000000ULL

static __always_inline int verdict(__u32 counter, int action)
{
	lan_count(counter);
	return action;
}

/* L4 ports of the packet in host order; -1 when truncated. */
static __always_inline int read_ports(const struct pkt_info *p, void *l4, void *end,
				      __u16 *sport, __u16 *dport)
{
	__be16 *ports = l4;

	*sport = 0;
	*dport = 0;
	if (p->frag == FRAG_LATER)
		return 0;
	if (p->l4proto != IPPROTO_TCP && p->l4proto != IPPROTO_UDP)
		return 0;
	if ((void *)(ports + 2) > end || p->l4len < 4)
		return -1;
	*sport = bpf_ntohs(ports[0]);
	*dport = bpf_ntohs(ports[1]);
	return 0;
}

/*
 * Whether the rest of the entry's selector covers the packet. Later
 * fragments carry no ports: RFC 4301 calls them OPAQUE and they match any
 * port selector, so a protected flow's fragment tails are never sent in
 * clear.
 */
static __always_inline int selector_match(const struct spd_entry *e,
					  const struct pkt_info *p,
					  __u16 sport, __u16 dport)
{
	if (!prefix_match(p->saddr, e->src, e->src_plen))
		return 0;
	if (e->proto && e->proto != p->l4proto)
		return 0;
	if (!e->sport && !e->dport)
		return 1;
	if (p->frag == FRAG_LATER)
		return 1;
	if (p->l4proto != IPPROTO_TCP && p->l4proto != IPPROTO_UDP)
		return 0;
	if (e->sport && e->sport != sport)
		return 0;
	if (e->dport && e->dport != dport)
		return 0;
	return 1;
}

/*
 * The folded sum of the TCP pseudo header of p, host order: what a sender
 * with TX checksum offload leaves in the checksum field (CHECKSUM_PARTIAL,
 * the veth default and so every container's), for whoever completes it
 * to sum the segment over. The addresses are summed in their mapped form:
 * an IPv4 one adds ::ffff, and 0xffff is zero in one's complement.
 */
static __always_inline __u16 tcp_pseudo_fold(const struct pkt_info *p)
{
	__u32 sum = IPPROTO_TCP + p->l4len;

#pragma unroll
	for (int i = 0; i < 16; i += 2)
		sum += ((__u32)p->saddr[i] << 8 | p->saddr[i + 1]) +
		       ((__u32)p->daddr[i] << 8 | p->daddr[i + 1]);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return sum;
}

/*
 * Rewrites the MSS option at o (offset off into the options) to mss when it
 * is larger. Returns as clamp_mss does.
 */
static __always_inline int rewrite_mss(struct tcphdr *th, __u8 *o, __u32 off,
				       __u32 optlen, void *end, __u16 mss,
				       __u16 partial)
{
	__u16 old, new, check;

	if ((void *)(o + TCP_OPT_MSS_LEN) > end || off + TCP_OPT_MSS_LEN > optlen ||
	    o[1] != TCP_OPT_MSS_LEN)
		return -1;
	old = (__u16)o[2] << 8 | o[3];
	if (old <= mss)
		return 0;
	new = mss;
	o[2] = new >> 8;
	o[3] = new & 0xff;
	/* A partial checksum (see tcp_pseudo_fold) covers no option yet:
	 * whoever completes it sums the new MSS, and an update here would
	 * corrupt it. A finished checksum that merely equals the
	 * pseudo-header sum is left stale by this, and the worker, which
	 * completes every checksum in that state that does not verify,
	 * repairs it. */
	if (bpf_ntohs(th->check) == partial)
		return 1;
	/* The checksum sums 16-bit words from the start of the TCP header:
	 * at an odd offset the value straddles two words and enters the sum
	 * byte-swapped. */
	if (off & 1) {
		old = __builtin_bswap16(old);
		new = __builtin_bswap16(new);
	}
	check = csum_replace16(bpf_ntohs(th->check), old, new);
	th->check = bpf_htons(check);
	return 1;
}

/*
 * Lowers the MSS option of a TCP SYN (or SYN-ACK) to mss, so that the
 * peer's segments still fit the path MTU once ESP overhead is added.
 * Returns 1 when the packet was rewritten, 0 when it needed nothing, -1
 * when its TCP header is malformed.
 *
 * The walk is written for the verifier, which explores every path through
 * it: each iteration either ends the walk or continues on one path, so the
 * cost grows with the number of iterations and not with the layouts of
 * NOPs and options (branching on NOP made it quadratic, and Linux 6.1's
 * verifier took minutes to load the program).
 */
static __always_inline int clamp_mss(const struct pkt_info *p, void *l4, void *end,
				     __u16 mss)
{
	struct tcphdr *th = l4;
	__u32 doff, optlen, off = 0;
	__u16 partial;
	__u8 *opts;

	if ((void *)(th + 1) > end || p->l4len < sizeof(*th))
		return -1;
	if (!th->syn)
		return 0;
	doff = th->doff * 4;
	if (doff < sizeof(*th) || doff > p->l4len)
		return -1;
	optlen = doff - sizeof(*th);
	opts = (__u8 *)(th + 1);
	partial = tcp_pseudo_fold(p);

	for (int i = 0; i < TCP_OPTS_MAX; i++) {
		__u8 *o, *lenp, kind, len;
		__u64 has_len;

		if (off >= optlen || off >= TCP_OPTS_MAX)
			return 0;
		o = opts + off;
		if ((void *)(o + 1) > end)
			return -1;
		kind = o[0];
		if (kind == TCP_OPT_EOL)
			return 0;
		if (kind == TCP_OPT_MSS)
			return rewrite_mss(th, o, off, optlen, end, mss, partial);
		/* A NOP is one byte without a length field. Its own byte (1) is
		 * read as its length, chosen by arithmetic and not by a branch:
		 * has_len is 0 for a NOP and 1 for anything else. */
		has_len = ((__u64)(kind ^ TCP_OPT_NOP) + 0xff) >> 8;
		lenp = o + has_len;
		if ((void *)(lenp + 1) > end)
			return -1;
		len = *lenp;
		if (len < 1 + has_len || off + len > optlen)
			return -1;
		off += len;
	}
	return 0;
}

/* Asks the daemon to negotiate an SA for this policy, once per interval. */
static __always_inline void trap_event(const struct spd_entry *e,
				       const struct pkt_info *p,
				       __u16 sport, __u16 dport)
{
	struct trap_rl_value *rl, fresh = {};
	struct lan_config *cfg;
	struct trap_event ev = {};
	__u32 zero = 0, id = e->policy_id;
	__u64 now = bpf_ktime_get_ns(), gap = 1000 * NSEC_PER_MSEC;

	cfg = bpf_map_lookup_elem(&lan_cfg, &zero);
	if (cfg && cfg->trap_interval_ms)
		gap = cfg->trap_interval_ms * NSEC_PER_MSEC;
	rl = bpf_map_lookup_elem(&trap_rl, &id);
	if (rl) {
		if (now - rl->last_event_ns < gap) {
			lan_count(LAN_EVENT_TRAP_SUPPRESSED);
			return;
		}
		rl->last_event_ns = now;
	} else {
		fresh.last_event_ns = now;
		bpf_map_update_elem(&trap_rl, &id, &fresh, BPF_ANY);
	}

	ev.policy_id = id;
	ev.proto = p->l4proto;
	ev.sport = sport;
	ev.dport = dport;
	__builtin_memcpy(ev.saddr, p->saddr, 16);
	__builtin_memcpy(ev.daddr, p->daddr, 16);
	if (bpf_ringbuf_output(&lan_events, &ev, sizeof(ev), 0))
		lan_count(LAN_EVENT_LOST);
	else
		lan_count(LAN_EVENT_TRAP);
}

static __always_inline struct spd_entry *spd_lookup(const struct pkt_info *p)
{
	if (p->is_v6) {
		struct spd_key6 k6 = { .prefixlen = 128 };

		__builtin_memcpy(k6.addr, p->daddr, 16);
		return bpf_map_lookup_elem(&spd6, &k6);
	}
	struct spd_key4 k4 = { .prefixlen = 32 };

	__builtin_memcpy(k4.addr, p->daddr + 12, 4);
	return bpf_map_lookup_elem(&spd4, &k4);
}

/*
 * Everything after parsing. A global function is verified once, with the
 * parse results as unknown values, instead of once per header layout the
 * parser can walk through (VLANs x IPv6 extension chains x TCP options
 * would exceed the verifier's budget).
 */
__attribute__((noinline)) int lan_classify(struct xdp_md *ctx, struct pkt_info *p)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct spd_entry *e;
	__u16 sport, dport;
	void *l4;

	if (!p || p->l4off > L4OFF_MAX)
		return verdict(LAN_DROP_MALFORMED, XDP_DROP);
	l4 = data + p->l4off;

	e = spd_lookup(p);
	if (!e)
		return verdict(LAN_PASS_NOMATCH, XDP_PASS);
	if (read_ports(p, l4, end, &sport, &dport) < 0)
		return verdict(LAN_DROP_MALFORMED, XDP_DROP);
	if (!selector_match(e, p, sport, dport))
		return verdict(LAN_PASS_NOMATCH, XDP_PASS);

	switch (e->action) {
	case SPD_BYPASS:
		return verdict(LAN_PASS_BYPASS, XDP_PASS);
	case SPD_DISCARD:
		return verdict(LAN_DROP_DISCARD, XDP_DROP);
	case SPD_PROTECT:
		break;
	default:
		return verdict(LAN_DROP_BAD_ACTION, XDP_DROP);
	}

	if (e->spi == 0) {
		trap_event(e, p, sport, dport);
		return verdict(LAN_DROP_TRAP, XDP_DROP);
	}
	if (e->mss && p->l4proto == IPPROTO_TCP && p->frag != FRAG_LATER) {
		int r = clamp_mss(p, l4, end, e->mss);

		if (r < 0)
			return verdict(LAN_DROP_MALFORMED, XDP_DROP);
		if (r > 0)
			lan_count(LAN_MSS_CLAMPED);
	}
	/* Fail closed: no socket on this queue means drop, never pass. */
	if (bpf_redirect_map(&lan_xsks, ctx->rx_queue_index, XDP_DROP) == XDP_REDIRECT)
		return verdict(LAN_REDIRECT_XSK, XDP_REDIRECT);
	return verdict(LAN_DROP_XSK_MISS, XDP_DROP);
}

SEC("xdp")
int xdp_lan(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct pkt_info p = {};

	switch (parse_l3(data, end, &p)) {
	case PARSE_OK:
		break;
	case PARSE_NOT_IP:
		return verdict(LAN_PASS_OTHER, XDP_PASS);
	case PARSE_EXT_LIMIT:
		return verdict(LAN_DROP_EXT_LIMIT, XDP_DROP);
	default:
		return verdict(LAN_DROP_MALFORMED, XDP_DROP);
	}
	return lan_classify(ctx, &p);
}

/* Types bpf2go exports although no map names them. */
XDPSEC_EXPORT_TYPE(struct, trap_event);
XDPSEC_EXPORT_TYPE(enum, lan_counter);
XDPSEC_EXPORT_TYPE(enum, spd_action);

char _license[] SEC("license") = "Dual BSD/GPL";
