// Package smallfs gives a test a real, small file system to run out of
// space on: a tmpfs of a given size mounted on a temporary directory, so
// that ENOSPC comes from the kernel (fallocate, write, rename) rather than
// from a simulated disk (walfs.Mem). Mounting needs root (CI runs as root);
// a test that cannot mount is skipped with the reason.
package smallfs
