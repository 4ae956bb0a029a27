// Command bench compares NodeAgentSet's manager with the upstream DaemonSet
// controller on a local cluster of kwok nodes (see test/bench) and writes
// the tables and a chart to a results folder. `make bench` runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nodeagentset/nodeagentset/test/bench"
)

func main() {
	cfg := bench.Config{Logf: log.Printf}
	sizes := flag.String("nodes", "100,500,1000", "node counts, comma-separated, smallest first")
	flag.IntVar(&cfg.Rounds, "rounds", 3, "rounds per contender, size and mode")
	flag.IntVar(&cfg.Joins, "joins", 50, "nodes that join after each rolling update")
	flag.DurationVar(&cfg.JoinInterval, "join-interval", 250*time.Millisecond, "time between two joins")
	flag.IntVar(&cfg.UnrelatedPods, "unrelated-pods", 20000, "pods of the busy-cluster rounds at the largest size (0: none)")
	// As high as the local cluster's scheduler gets: no client limit holds
	// either controller back, so the controllers themselves are compared.
	flag.Float64Var(&cfg.EqualQPS, "equal-qps", 5000, "both controllers' client QPS in the equal-limits mode")
	flag.IntVar(&cfg.EqualBurst, "equal-burst", 10000, "both controllers' client burst in the equal-limits mode")
	modes := flag.String("modes", "equal,shipped", "modes to run: equal (both at the same client limits), shipped (each at its defaults)")
	flag.StringVar(&cfg.ManagerBinary, "manager", "bin/manager", "the manager binary (make build)")
	flag.StringVar(&cfg.CRDDir, "crds", "config/crd/bases", "folder of the NodeAgentSet CRD")
	flag.StringVar(&cfg.Dir, "dir", "", "folder for the cluster's logs (default: a new temporary folder)")
	flag.DurationVar(&cfg.PhaseTimeout, "phase-timeout", 5*time.Minute, "longest wait for one phase")
	managerArgs := flag.String("manager-args", "", "extra manager flags, space-separated (e.g. --pprof-bind-address=127.0.0.1:6060)")
	out := flag.String("out", "test/bench/results", "results folder")
	flag.Parse()
	log.SetFlags(log.Ltime)
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			log.Fatalf("-nodes: %q is not a node count", s)
		}
		cfg.Sizes = append(cfg.Sizes, n)
	}
	cfg.ManagerExtraArgs = strings.Fields(*managerArgs)
	if *modes != "equal,shipped" {
		cfg.OnlyModes = strings.Split(*modes, ",")
	}
	if _, err := os.Stat(cfg.ManagerBinary); err != nil {
		log.Fatalf("-manager: %v (run make build)", err)
	}
	if err := run(cfg, *out); err != nil {
		log.Fatal(err)
	}
}

// run benchmarks and writes what was measured, even when a later round
// failed.
func run(cfg bench.Config, out string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := bench.Run(ctx, cfg)
	if len(res.Samples) > 0 {
		if werr := res.WriteFiles(out); werr != nil {
			log.Print(werr)
		}
		fmt.Println(res.Markdown())
		log.Printf("results in %s", out)
	}
	return err
}
