package smallfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// Mount mounts a tmpfs of size bytes (rounded up to pages by the kernel) on
// a new directory under t.TempDir and returns it; it is unmounted when the
// test ends (lazily: a file a failed test left open does not keep it). It
// skips the test when the process may not mount (not root, or no
// CAP_SYS_ADMIN).
func Mount(t testing.TB, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("smallfs: mounting a small tmpfs to fill needs root (CI runs as root)")
	}
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("size=%d,mode=0755", size))
	if errors.Is(err, unix.EPERM) {
		t.Skipf("smallfs: mount a tmpfs on %s: %v (root without CAP_SYS_ADMIN, e.g. an unprivileged container)", dir, err)
	}
	if err != nil {
		t.Fatalf("smallfs: mount a tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("smallfs: unmount %s: %v", dir, err)
		}
	})
	return dir
}

// Free returns the bytes of dir's file system that a file can still take.
func Free(t testing.TB, dir string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// Fill creates the file name holding all of dir's free space but leave
// bytes (rounded down to a page), so that the next writes beyond that fail
// with ENOSPC; removing the file gives the space back.
func Fill(t testing.TB, name string, leave int64) {
	t.Helper()
	free := Free(t, filepath.Dir(name))
	n := (free - leave) &^ 4095
	if n <= 0 {
		t.Fatalf("smallfs: %d bytes free, fewer than the %d to leave", free, leave)
	}
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fallocate(int(f.Fd()), 0, 0, n); err != nil {
		t.Fatalf("smallfs: fill %s with %d bytes: %v", name, n, err)
	}
}
