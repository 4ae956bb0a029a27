package cluster

import (
	"fmt"
	"syscall"
	"time"
)

// RestartAPIServer kills kube-apiserver (SIGKILL: a crash, which is also
// the quick way down; a graceful stop can take more than 20s), waits
// downtime, and starts it again on the same etcd, port and certificates, so
// clients reconnect to the same address with the same credentials.
func (c *Cluster) RestartAPIServer(downtime time.Duration) error {
	groups, err := childGroups("kube-apiserver")
	if err != nil {
		return err
	}
	for _, g := range groups {
		_ = syscall.Kill(-g, syscall.SIGKILL)
	}
	api := c.env.ControlPlane.APIServer
	// The process is gone; this lets envtest notice and reset its state.
	if err := api.Stop(); err != nil {
		return fmt.Errorf("stopping kube-apiserver: %w", err)
	}
	time.Sleep(downtime)
	if err := api.Start(); err != nil {
		return fmt.Errorf("starting kube-apiserver again: %w", err)
	}
	if groups, err = childGroups("kube-apiserver"); err != nil {
		return err
	}
	c.mu.Lock()
	c.controlPlane = append(c.controlPlane, groups...)
	c.mu.Unlock()
	return c.watchdog.track(groups...)
}
