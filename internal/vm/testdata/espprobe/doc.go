// Package espprobe is a test binary for the vm rig: its tests pass only
// where the kernel has ESP (xfrm_user, esp4/esp6, the AEAD templates) and
// veth, i.e. inside the guest and not on the build machines.
package espprobe
