/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Maps of the WAN program. The loader pins every one of them by name under
 * the instance's bpffs directory, so a restarted daemon finds its SAs,
 * counters and sockets' slots where it left them.
 */
#ifndef XDPSEC_WAN_MAPS_H
#define XDPSEC_WAN_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "types.h"

/* Inbound SAs by (SPI, outer destination). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SA_MAX);
	__type(key, struct sa_key);
	__type(value, struct sa_value);
} sa_in SEC(".maps");

/*
 * Datagrams whose first fragment was let through, so that their later
 * fragments (which carry no SPI or port) may follow it to the stack. LRU:
 * a flood of first fragments evicts the oldest, whose later fragments are
 * then dropped and counted, never passed unchecked.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FRAG_MAX);
	__type(key, struct frag_key);
	__type(value, struct frag_value);
} wan_frags SEC(".maps");

/* AF_XDP sockets of the afxdp workers, by rx queue. */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, XSK_MAX);
	__type(key, __u32);
	__type(value, __u32);
} wan_xsks SEC(".maps");

/* CPUs that run the kernel's XFRM for SA_ACTION_XFRM, by CPU number. */
struct {
	__uint(type, BPF_MAP_TYPE_CPUMAP);
	__uint(max_entries, CPU_SLOTS_MAX);
	__type(key, __u32);
	__type(value, struct bpf_cpumap_val);
} cpus SEC(".maps");

/* Hash slot -> CPU number, so any subset of CPUs can be used. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, CPU_SLOTS_MAX);
	__type(key, __u32);
	__type(value, __u32);
} cpu_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct wan_config);
} wan_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, IKE_RL_MAX);
	__type(key, struct ike_rl_key);
	__type(value, struct ike_rl_value);
} ike_rl SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, WAN_COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} wan_counters SEC(".maps");

static __always_inline void wan_count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&wan_counters, &idx);

	/* Per-CPU slot: no other writer, no atomic needed. */
	if (c)
		*c += 1;
}

#endif /* XDPSEC_WAN_MAPS_H */
