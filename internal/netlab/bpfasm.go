package netlab

import (
	"encoding/binary"

	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

// MatchIPv4UDPPort is the instructions that jump to miss unless the frame
// between the packet pointers in data and end is Ethernet, IPv4 without
// options and UDP to port: the classifier of the small BPF programs that
// tests build with asm. It uses R4 and leaves data and end as they were.
func MatchIPv4UDPPort(data, end asm.Register, port uint16, miss string) asm.Instructions {
	return asm.Instructions{
		asm.Mov.Reg(asm.R4, data),
		asm.Add.Imm(asm.R4, 14+20+8),
		asm.JGT.Reg(asm.R4, end, miss),
		asm.LoadMem(asm.R4, data, 12, asm.Half),
		asm.JNE.Imm(asm.R4, BE16(unix.ETH_P_IP), miss),
		asm.LoadMem(asm.R4, data, 14, asm.Byte),
		asm.JNE.Imm(asm.R4, 0x45, miss),
		asm.LoadMem(asm.R4, data, 14+9, asm.Byte),
		asm.JNE.Imm(asm.R4, unix.IPPROTO_UDP, miss),
		asm.LoadMem(asm.R4, data, 14+20+2, asm.Half),
		asm.JNE.Imm(asm.R4, BE16(port), miss),
	}
}

// BE16 is the immediate that a 16-bit load of the big-endian field v
// compares equal to: packet fields are big endian, loads in host order.
func BE16(v uint16) int32 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return int32(binary.NativeEndian.Uint16(b[:]))
}
