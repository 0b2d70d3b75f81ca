// Package audit writes kmsd audit log.
package audit
