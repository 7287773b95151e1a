// Package bpf holds xdpsec's XDP programs, compiled ahead of time by bpf2go
// so that building the daemon never needs clang: xdp_wan (the ciphertext
// side's front door) and xdp_lan (the plaintext side's SPD). The generated
// *_bpfel.go / *_bpfel.o files are committed; `make generate` rebuilds them
// and TestGeneratedUpToDate fails when they lag behind the C sources.
//
// Only the loader package uses these objects; everything else goes through
// its typed methods.
package bpf

// The flags are spelled out once here and reused by the staleness test, so
// the check compiles exactly what `go generate` does. -mcpu=v3 needs Linux
// 5.1 (atomics with fetch need 5.12, which the rate limiter uses).
//go:generate go tool bpf2go -cc clang -target bpfel -cflags "-O2 -mcpu=v3 -g -Wall -Werror -I/usr/include -I/usr/include/x86_64-linux-gnu" -type sa_key -type sa_value -type sa_encap -type frag_key -type frag_value -type wan_config -type ike_rl_key -type ike_rl_value -type wan_counter -type sa_action Wan xdp_wan.c
//go:generate go tool bpf2go -cc clang -target bpfel -cflags "-O2 -mcpu=v3 -g -Wall -Werror -I/usr/include -I/usr/include/x86_64-linux-gnu" -type spd_key4 -type spd_key6 -type spd_entry -type spd_action -type trap_event -type trap_rl_value -type lan_config -type lan_counter Lan xdp_lan.c
