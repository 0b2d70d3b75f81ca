//go:build !linux

package job

import "os"

// syncOutputs fsyncs each output and its directory (no syncfs here).
func syncOutputs(_ string, outs []string, dirs map[string]bool) error {
	for _, p := range outs {
		if err := syncPath(p); err != nil {
			return err
		}
	}
	for d := range dirs {
		if err := syncPath(d); err != nil {
			return err
		}
	}
	return nil
}

// renameNoReplace renames tmp to dst unless dst exists (os.ErrExist).
func renameNoReplace(tmp, dst string) error {
	if _, err := os.Lstat(dst); err == nil {
		return os.ErrExist
	}
	return os.Rename(tmp, dst)
}
