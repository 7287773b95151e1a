/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Header parsers shared by the WAN and LAN programs. Every access is
 * preceded by a check against data_end that the verifier can see; lengths
 * claimed by the headers themselves (IPv4 total length, IPv6 payload
 * length, extension header lengths) are checked separately, so a packet
 * whose headers lie about its size is reported as malformed rather than
 * read past its end.
 */
#ifndef XDPSEC_PARSE_H
#define XDPSEC_PARSE_H

#include <linux/types.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifndef ETH_P_8021AD
#define ETH_P_8021AD 0x88A8
#endif

/* Extension headers walked before giving up on an IPv6 packet. */
#define IPV6_EXT_MAX 6

enum parse_result {
	PARSE_OK = 0,
	PARSE_NOT_IP,    /* not IPv4 or IPv6 (or more VLAN tags than parsed) */
	PARSE_MALFORMED, /* truncated or inconsistent */
	PARSE_EXT_LIMIT, /* IPv6 extension chain longer than IPV6_EXT_MAX */
};

enum frag_kind {
	FRAG_NONE = 0,
	FRAG_FIRST, /* offset 0, more fragments: L4 header present */
	FRAG_LATER, /* offset > 0: no L4 header */
};

struct vlan_hdr {
	__be16 tci;
	__be16 proto;
};

/*
 * What the L3 parser learnt. Addresses use the 16-byte form of types.h.
 * Only scalars, no packet pointers: the struct can be handed to a global
 * (separately verified) function, which is what keeps the verifier's state
 * count linear in the number of header layouts.
 */
struct pkt_info {
	__u32 l4off;   /* offset of the IP payload (after extension headers) */
	__u32 l4len;   /* its length according to the IP header */
	__u8 l4proto;  /* IPPROTO_* of the payload */
	__u8 frag;     /* enum frag_kind */
	__u8 is_v6;
	__u8 pad;
	__u32 frag_id; /* identification of a fragment's datagram */
	__u8 saddr[16];
	__u8 daddr[16];
};

/* ::ffff:a.b.c.d; word by word, since a constant array would land in a
 * .rodata map. */
static __always_inline void addr_from_v4(__u8 *dst, __be32 a)
{
	__u32 zero = 0, mapped = bpf_htonl(0xffff);

	__builtin_memcpy(dst, &zero, 4);
	__builtin_memcpy(dst + 4, &zero, 4);
	__builtin_memcpy(dst + 8, &mapped, 4);
	__builtin_memcpy(dst + 12, &a, 4);
}

static __always_inline int addr_eq(const __u8 *a, const __u8 *b)
{
	__u64 a0, a1, b0, b1;

	__builtin_memcpy(&a0, a, 8);
	__builtin_memcpy(&a1, a + 8, 8);
	__builtin_memcpy(&b0, b, 8);
	__builtin_memcpy(&b1, b + 8, 8);
	return a0 == b0 && a1 == b1;
}

/* Whether the first plen bits of a and p agree (plen over 128 bits). */
static __always_inline int prefix_match(const __u8 *a, const __u8 *p, __u32 plen)
{
	if (plen > 128)
		return 0;
#pragma unroll
	for (int i = 0; i < 4; i++) {
		__u32 bits = plen > 32 ? 32 : plen;
		__u32 wa, wp, mask;

		if (bits == 0)
			break;
		plen -= bits;
		mask = bits == 32 ? 0xffffffff : ~(0xffffffffU >> bits);
		__builtin_memcpy(&wa, a + 4 * i, 4);
		__builtin_memcpy(&wp, p + 4 * i, 4);
		if ((bpf_ntohl(wa) ^ bpf_ntohl(wp)) & mask)
			return 0;
	}
	return 1;
}

/*
 * Ethernet with up to two VLAN tags (802.1Q or QinQ): stores the EtherType
 * after them in host order; -1 when truncated.
 */
static __always_inline int parse_eth(void **pos, void *end, __u16 *out)
{
	struct ethhdr *eth = *pos;
	__u16 proto;

	if ((void *)(eth + 1) > end)
		return -1;
	proto = bpf_ntohs(eth->h_proto);
	*pos = eth + 1;
#pragma unroll
	for (int i = 0; i < 2; i++) {
		struct vlan_hdr *vh = *pos;

		if (proto != ETH_P_8021Q && proto != ETH_P_8021AD)
			break;
		if ((void *)(vh + 1) > end)
			return -1;
		proto = bpf_ntohs(vh->proto);
		*pos = vh + 1;
	}
	*out = proto;
	return 0;
}

static __always_inline int parse_ipv4(void *data, void *pos, void *end,
				      struct pkt_info *p)
{
	struct iphdr *ip = pos;
	__u32 hlen, tot;
	__u16 frag;

	if ((void *)(ip + 1) > end)
		return PARSE_MALFORMED;
	if (ip->version != 4)
		return PARSE_MALFORMED;
	hlen = ip->ihl * 4;
	tot = bpf_ntohs(ip->tot_len);
	/* Options are skipped, not read: the header length is enough, but it
	 * must lie inside both the packet and the total length. */
	if (hlen < sizeof(*ip) || tot < hlen || tot > (__u32)(end - pos))
		return PARSE_MALFORMED;
	frag = bpf_ntohs(ip->frag_off);
	if (frag & 0x1fff)
		p->frag = FRAG_LATER;
	else if (frag & 0x2000)
		p->frag = FRAG_FIRST;
	p->frag_id = bpf_ntohs(ip->id);
	p->l4off = pos + hlen - data;
	p->l4len = tot - hlen;
	p->l4proto = ip->protocol;
	addr_from_v4(p->saddr, ip->saddr);
	addr_from_v4(p->daddr, ip->daddr);
	return PARSE_OK;
}

/*
 * IPv6 and the extension headers that may precede ESP or a transport
 * header: hop-by-hop, routing, destination options and fragment, at most
 * IPV6_EXT_MAX of them. Anything else (including AH) ends the chain.
 */
static __always_inline int parse_ipv6(void *data, void *pos, void *end,
				      struct pkt_info *p)
{
	struct ipv6hdr *ip6 = pos;
	__u32 len;
	__u8 next;

	if ((void *)(ip6 + 1) > end)
		return PARSE_MALFORMED;
	if (ip6->version != 6)
		return PARSE_MALFORMED;
	len = bpf_ntohs(ip6->payload_len);
	pos = ip6 + 1;
	if (len > (__u32)(end - pos))
		return PARSE_MALFORMED;
	next = ip6->nexthdr;
	p->is_v6 = 1;
	__builtin_memcpy(p->saddr, &ip6->saddr, 16);
	__builtin_memcpy(p->daddr, &ip6->daddr, 16);

#pragma unroll
	for (int i = 0; i < IPV6_EXT_MAX; i++) {
		__u8 *h = pos;
		__u32 hl;

		switch (next) {
		case IPPROTO_HOPOPTS:
		case IPPROTO_ROUTING:
		case IPPROTO_DSTOPTS:
			if ((void *)(h + 2) > end || len < 2)
				return PARSE_MALFORMED;
			hl = ((__u32)h[1] + 1) * 8;
			if (hl > len || hl > (__u32)(end - pos))
				return PARSE_MALFORMED;
			next = h[0];
			pos += hl;
			len -= hl;
			break;
		case IPPROTO_FRAGMENT: {
			struct frag_hdr {
				__u8 nexthdr;
				__u8 reserved;
				__be16 frag_off;
				__be32 id;
			} *fh = pos;
			__u16 off;

			if ((void *)(fh + 1) > end || len < sizeof(*fh))
				return PARSE_MALFORMED;
			off = bpf_ntohs(fh->frag_off);
			p->frag_id = bpf_ntohl(fh->id);
			next = fh->nexthdr;
			pos = fh + 1;
			len -= sizeof(*fh);
			if (off & 0xfff8) {
				/* No L4 header follows: stop here. */
				p->frag = FRAG_LATER;
				goto done;
			}
			if (off & 1)
				p->frag = FRAG_FIRST;
			break;
		}
		default:
			goto done;
		}
	}
	/* The chain went on past what we walk. */
	switch (next) {
	case IPPROTO_HOPOPTS:
	case IPPROTO_ROUTING:
	case IPPROTO_DSTOPTS:
	case IPPROTO_FRAGMENT:
		return PARSE_EXT_LIMIT;
	}
done:
	p->l4off = pos - data;
	p->l4len = len;
	p->l4proto = next;
	return PARSE_OK;
}

/* Ethernet, VLANs and IP: fills p or says why not. */
static __always_inline int parse_l3(void *data, void *end, struct pkt_info *p)
{
	void *pos = data;
	__u16 proto;

	if (parse_eth(&pos, end, &proto) < 0)
		return PARSE_MALFORMED;
	if (proto == ETH_P_IP)
		return parse_ipv4(data, pos, end, p);
	if (proto == ETH_P_IPV6)
		return parse_ipv6(data, pos, end, p);
	return PARSE_NOT_IP;
}

/*
 * Largest L4 offset parse_l3 can produce (Ethernet, two tags, IPv6 and
 * IPV6_EXT_MAX extension headers of up to 2048 bytes each), rounded up to
 * a mask; code that gets an offset from elsewhere checks it against this
 * before adding it to a packet pointer.
 */
#define L4OFF_MAX 0x3fff

/*
 * RFC 1624 eqn. 3: the checksum after a 16-bit word of the summed data
 * changed from old to new. All three in host order.
 */
static __always_inline __u16 csum_replace16(__u16 check, __u16 old, __u16 new)
{
	__u32 sum = (__u16)~check + (__u16)~old + (__u32)new;

	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

#endif /* XDPSEC_PARSE_H */
