/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Maps of the LAN program; pinned by the loader like the WAN ones.
 */
#ifndef XDPSEC_LAN_MAPS_H
#define XDPSEC_LAN_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "types.h"

/* Outbound SPD by destination prefix, one trie per family. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, SPD_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct spd_key4);
	__type(value, struct spd_entry);
} spd4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, SPD_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct spd_key6);
	__type(value, struct spd_entry);
} spd6 SEC(".maps");

/* AF_XDP sockets of the afxdp workers, by rx queue of the LAN NIC. */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, XSK_MAX);
	__type(key, __u32);
	__type(value, __u32);
} lan_xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lan_config);
} lan_cfg SEC(".maps");

/* Last trap event per policy id. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SPD_MAX);
	__type(key, __u32);
	__type(value, struct trap_rl_value);
} trap_rl SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LAN_COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} lan_counters SEC(".maps");

/* trap_event records for the daemon. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, EVENTS_SIZE);
} lan_events SEC(".maps");

static __always_inline void lan_count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&lan_counters, &idx);

	if (c)
		*c += 1;
}

#endif /* XDPSEC_LAN_MAPS_H */
