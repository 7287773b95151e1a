/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Structures and enums shared with Go. bpf2go exports each of them with
 * -type (see gen.go), so the loader and the programs agree on the layout by
 * construction. Every struct is padded explicitly: Go sees the same bytes
 * and the kernel never copies uninitialised holes into map values.
 *
 * Addresses are always 16 bytes: IPv6, or IPv4 as an IPv4-mapped IPv6
 * address (::ffff:a.b.c.d), which is what netip.Addr.As16 gives in Go. Only
 * the IPv4 LPM trie key holds a bare 4-byte address, because its prefix
 * length must count IPv4 bits.
 */
#ifndef XDPSEC_TYPES_H
#define XDPSEC_TYPES_H

#include <linux/types.h>

/* Sizes of the maps, shared with Go so the loader can validate input. */
#define SA_MAX 16384
#define SPD_MAX 16384
#define XSK_MAX 256
#define CPU_SLOTS_MAX 128
#define IKE_RL_MAX 65536
#define FRAG_MAX 8192
#define EVENTS_SIZE (256 * 1024)

/* What the WAN program does with ESP of a known inbound SA. */
enum sa_action {
	SA_ACTION_AFXDP = 1, /* XSKMAP slot of the rx queue, fail closed */
	SA_ACTION_XFRM = 2,  /* CPUMAP slot, hashed on SPI and sequence */
	SA_ACTION_PASS = 3,  /* to the stack as is */
};

/* Key of the inbound SA map: what RFC 4303 says identifies an SA. */
struct sa_key {
	__u32 spi;      /* host byte order */
	__u8 daddr[16]; /* outer destination */
};

/* How the SA's ESP was negotiated to arrive: the kernel's XFRM checks the
 * same (a state's encap type against the socket the packet came through). */
enum sa_encap {
	SA_ENCAP_NONE = 0, /* raw ESP, IP protocol 50 */
	SA_ENCAP_UDP = 1,  /* ESP-in-UDP on port 4500 (RFC 3948) */
};

struct sa_value {
	__u32 action; /* enum sa_action */
	__u8 encap;   /* enum sa_encap */
	__u8 pad[3];
	/* The peer's outer address. Raw ESP must come from it; ESP-in-UDP may
	 * come from anywhere before its ICV is checked, since a NAT may have
	 * rebound it (the data plane learns that from authentic packets). */
	__u8 peer[16];
};

/*
 * Key of the fragment map: one IP datagram (RFC 791 / RFC 8200 say the
 * addresses, the protocol and the identification name it).
 */
struct frag_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 id;    /* IPv4 identification or IPv6 fragment header id */
	__u8 proto;  /* IPPROTO_* of the fragmented payload */
	__u8 pad[3];
};

/* A datagram whose first fragment the WAN program let through. */
struct frag_value {
	__u64 first_ns; /* when; older than FRAG_TIMEOUT_NS it is forgotten */
};

/* Runtime knobs of the WAN program: a single entry at index 0. */
struct wan_config {
	/* IKE_SA_INIT requests accepted per source and second; 0 = no limit. */
	__u32 ike_init_rate;
	/* Number of valid entries of cpu_slots for SA_ACTION_XFRM. */
	__u32 cpu_slots;
	/* 1: all of an SA's packets go to one CPU (hash of the SPI alone),
	 * which keeps each SA's inner flows in order; 0: the sequence
	 * number is hashed too, spreading one busy SA over every slot. */
	__u32 cpu_per_sa;
};

/* Per-source state of the IKE_SA_INIT rate limit. */
struct ike_rl_key {
	__u8 saddr[16];
};

struct ike_rl_value {
	__u64 window_start_ns;
	__u32 count;
	__u32 pad;
};

/*
 * WAN counters, one per-CPU slot each. Every packet ends in exactly one of
 * the verdict counters (PASS_*, DROP_*, REDIRECT_*); the EVENT_* ones count
 * side effects.
 */
enum wan_counter {
	WAN_PASS_IKE = 0,          /* UDP 500 */
	WAN_PASS_IKE_NATT,         /* UDP 4500 with the non-ESP marker */
	WAN_PASS_FRAG,             /* fragments the stack reassembles: of xfrm SAs, IKE, other traffic */
	WAN_PASS_OTHER,            /* not IP, not ESP, not IKE */
	WAN_PASS_SA,               /* known SA whose action is pass */
	WAN_PASS_CPU_MISS,         /* xfrm SA but no CPU slot: the stack does it */
	WAN_REDIRECT_XSK,          /* known afxdp SA, to the socket of the queue */
	WAN_REDIRECT_CPU,          /* known xfrm SA, to a CPU */
	WAN_DROP_KEEPALIVE,        /* NAT-T keepalive, RFC 3948 2.3 */
	WAN_DROP_UNKNOWN_SPI,      /* ESP for no installed SA */
	WAN_DROP_XSK_MISS,         /* afxdp SA, no socket on this queue */
	WAN_DROP_MALFORMED,        /* truncated or inconsistent headers */
	WAN_DROP_IKE_RATELIMIT,    /* IKE_SA_INIT beyond the per-source rate */
	WAN_DROP_EXT_LIMIT,        /* more IPv6 extension headers than parsed */
	WAN_DROP_BAD_ACTION,       /* SA entry with an unknown action */
	WAN_DROP_ENCAP,            /* ESP in a form its SA was not negotiated in */
	WAN_DROP_PEER,             /* raw ESP from a source other than its SA's peer */
	WAN_DROP_FRAG,             /* fragmented ESP of an afxdp SA: the engine does not reassemble */
	WAN_DROP_FRAG_ORPHAN,      /* later ESP/UDP fragment whose first fragment was not let through */
	WAN_COUNTER_MAX,
};

/* LPM trie keys of the outbound SPD, by destination. */
struct spd_key4 {
	__u32 prefixlen;
	__u8 addr[4];
};

struct spd_key6 {
	__u32 prefixlen;
	__u8 addr[16];
};

enum spd_action {
	SPD_PROTECT = 1,
	SPD_DISCARD = 2,
	SPD_BYPASS = 3,
};

/*
 * An outbound policy. The trie matches the destination; the rest of the
 * selector is checked here. A packet that fails these checks is not covered
 * by the policy and passes like one that matched nothing.
 */
struct spd_entry {
	__u32 policy_id; /* the daemon's handle, echoed in trap events */
	__u32 spi;       /* outbound SA; 0 = none yet (trap) */
	__u8 action;     /* enum spd_action */
	__u8 proto;      /* IP protocol; 0 = any */
	__u8 src_plen;   /* source prefix length over the 16-byte form */
	__u8 pad;
	__u16 sport;     /* host byte order; 0 = any */
	__u16 dport;     /* host byte order; 0 = any */
	__u16 mss;       /* clamp TCP MSS to this on SYN; 0 = no clamp */
	__u16 pad2;
	__u8 src[16];
};

/* Ring-buffer record: traffic for a protect policy that has no SA yet. */
struct trap_event {
	__u32 policy_id;
	__u8 proto;
	__u8 pad;
	__u16 sport; /* host byte order */
	__u16 dport; /* host byte order */
	__u16 pad2;
	__u8 saddr[16];
	__u8 daddr[16];
};

/* Per-policy state of the trap event rate limit. */
struct trap_rl_value {
	__u64 last_event_ns;
};

/* Runtime knobs of the LAN program: a single entry at index 0. */
struct lan_config {
	/* Minimum gap between two trap_events of one policy; 0 = 1000 ms. */
	__u32 trap_interval_ms;
	__u32 pad;
};

/* LAN counters; same rules as wan_counter. */
enum lan_counter {
	LAN_PASS_BYPASS = 0,    /* matched a bypass policy */
	LAN_PASS_NOMATCH,       /* IP, covered by no policy */
	LAN_PASS_OTHER,         /* not IP */
	LAN_REDIRECT_XSK,       /* protect, to the socket of the queue */
	LAN_DROP_DISCARD,       /* matched a discard policy */
	LAN_DROP_TRAP,          /* protect without SA: negotiation pending */
	LAN_DROP_XSK_MISS,      /* protect, no socket on this queue */
	LAN_DROP_MALFORMED,     /* truncated or inconsistent headers */
	LAN_DROP_EXT_LIMIT,     /* more IPv6 extension headers than parsed */
	LAN_DROP_BAD_ACTION,    /* policy with an unknown action */
	LAN_MSS_CLAMPED,        /* SYN whose MSS option was lowered */
	LAN_EVENT_TRAP,         /* trap_event emitted */
	LAN_EVENT_TRAP_SUPPRESSED, /* trap within the rate limit */
	LAN_EVENT_LOST,         /* ring buffer full */
	LAN_COUNTER_MAX,
};

/*
 * The event structs travel through ring buffers, which carry no value type,
 * the enums only appear as constants, and clang emits BTF only for types
 * that reach a map, a global or a function signature. These never-loaded pointers put them in the BTF so
 * that bpf2go can export them to Go.
 */
#define XDPSEC_EXPORT_TYPE(kind, t) \
	const kind t *__xdpsec_export_##t __attribute__((section(".xdpsec.types"), unused))

#endif /* XDPSEC_TYPES_H */
