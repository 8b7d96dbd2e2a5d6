//go:build !linux

package localcluster

import "syscall"

// procAttr puts a child in its own process group (a terminal's Ctrl-C
// reaches the parent, which stops the nodes in order).
func procAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
