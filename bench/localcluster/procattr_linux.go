package localcluster

import "syscall"

// procAttr puts a child in its own process group (a terminal's Ctrl-C
// reaches the parent, which stops the nodes in order) and kills it when
// the parent dies.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
