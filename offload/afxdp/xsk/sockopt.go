package xsk

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// x/sys/unix has no typed wrappers for the SOL_XDP options that take
// structs, so they go through the raw system calls. The pointers are
// converted to uintptr inside the Syscall6 argument lists, which keeps the
// referenced memory alive and in place for the call.

func getsockopt(fd, name int, val unsafe.Pointer, size uintptr) (uintptr, error) {
	l := uint32(size)
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(name),
		uintptr(val), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return 0, e
	}
	return uintptr(l), nil
}

func setsockopt(fd, name int, val unsafe.Pointer, size uintptr) error {
	_, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(name),
		uintptr(val), size, 0)
	if e != 0 {
		return e
	}
	return nil
}

// kick is sendto(fd, NULL, 0, MSG_DONTWAIT, NULL, 0): it makes the kernel
// process the TX ring. The raw call returns a bare Errno, so the data path
// never boxes an error.
func kick(fd int) unix.Errno {
	_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	return e
}

// wakeRX is recvfrom(fd, NULL, 0, MSG_DONTWAIT, NULL, NULL): it lets a
// zero-copy driver that sleeps on an empty fill ring look at it again.
func wakeRX(fd int) unix.Errno {
	_, _, e := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	return e
}
