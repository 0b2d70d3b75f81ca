//go:build !linux

package job

import (
	"os"

	"github.com/kmsd/kmsd/batch/esdk"
)

// Encrypting through mappings is implemented on Linux only (fallocate):
// elsewhere Config.Mmap falls back to pread and pwrite.

func reserve(*os.File, int64) error { return errNoMap }

func (j *Job) mappedWindow(*esdk.Sealer, *os.File, *os.File) window { return nil }
