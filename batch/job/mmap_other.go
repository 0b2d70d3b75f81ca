//go:build !linux

package job

import (
	"context"
	"errors"
	"os"
)

// errNoMap: encrypting through mappings is implemented on Linux only
// (fallocate); elsewhere files take the write path.
var errNoMap = errors.New("job: no mapped encryption on this system")

func (j *Job) sealMapped(context.Context, *encMaterials, *os.File, *os.File, int64) (int64, error) {
	return 0, errNoMap
}
