package job

import (
	"os"

	"golang.org/x/sys/unix"
)

// syncOutputs makes the outputs under root durable with one syncfs(2) of
// root's file system: cheaper than an fsync per file when files are many.
func syncOutputs(root string, _ []string, _ map[string]bool) error {
	f, err := os.Open(root)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

// renameNoReplace renames tmp to dst unless dst exists (os.ErrExist),
// atomically where the file system supports RENAME_NOREPLACE.
func renameNoReplace(tmp, dst string) error {
	err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, dst, unix.RENAME_NOREPLACE)
	switch err {
	case nil:
		return nil
	case unix.EEXIST:
		return os.ErrExist
	case unix.EINVAL, unix.ENOSYS:
		if _, err := os.Lstat(dst); err == nil {
			return os.ErrExist
		}
		return os.Rename(tmp, dst)
	}
	return &os.LinkError{Op: "rename", Old: tmp, New: dst, Err: err}
}
