// Command dev-cluster runs the local cluster of test/cluster with fake nodes
// until interrupted, for trying the controller by hand.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nodeagentset/nodeagentset/test/cluster"
)

func main() {
	nodes := flag.Int("nodes", 10, "number of fake nodes")
	dir := flag.String("dir", "", "folder for logs and kubeconfigs (default: a new temporary folder)")
	audit := flag.Bool("audit", false, "log every API write to logs/audit.log")
	flag.Parse()
	log.SetFlags(log.Ltime)
	if err := run(*nodes, *dir, *audit); err != nil {
		log.Fatal(err)
	}
}

func run(nodes int, dir string, audit bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := cluster.Start(ctx, cluster.Options{OwnSignals: true, Dir: dir, Audit: audit, Logf: log.Printf})
	if err != nil {
		return err
	}
	if err := addNodes(ctx, c, nodes); err != nil {
		return errors.Join(err, c.Stop())
	}
	fmt.Printf(`
Local cluster running with %d fake nodes (kwok), kube-scheduler and kube-controller-manager.

  export KUBECONFIG=%s
  kubectl get nodes

Logs: %s/logs
Press Ctrl-C to stop every process of the cluster.
`, nodes, c.Kubeconfig, c.Dir)
	<-ctx.Done()
	if err := c.Stop(); err != nil {
		return err
	}
	log.Print("Cluster stopped")
	return nil
}

// addNodes spreads the nodes over three zones so selectors have something
// to select.
func addNodes(ctx context.Context, c *cluster.Cluster, n int) error {
	specs := cluster.Nodes("kwok-node", n)
	zones := []string{"zone-a", "zone-b", "zone-c"}
	for i := range specs {
		specs[i].Labels = map[string]string{"topology.kubernetes.io/zone": zones[i%len(zones)]}
	}
	if err := c.AddNodes(ctx, specs...); err != nil {
		return err
	}
	return c.WaitNodesReady(ctx, time.Minute, cluster.Names(specs)...)
}
