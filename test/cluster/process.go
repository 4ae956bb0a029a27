package cluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// process is one component the cluster started itself (scheduler,
// controller-manager, kwok). Each runs in its own process group so that a
// terminal's Ctrl-C reaches only the Go program, which then stops them in order.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func startProcess(name, binary string, args []string, logPath string) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening log of %s: %w", name, err)
	}
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Pdeathsig covers the case where the Go program dies without running any
	// cleanup (SIGKILL, go test's timeout panic); the watchdog covers the rest.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended, and how.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// stop sends SIGTERM to the process group, then SIGKILL after grace.
func (p *process) stop(grace time.Duration) error {
	if done, _ := p.exited(); done {
		return nil
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) did not exit after SIGKILL", p.name, p.cmd.Process.Pid)
	}
}

// kill sends SIGKILL to the process group and waits for it to end; tests use
// it to simulate a crash.
func (p *process) kill() error {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) did not exit after SIGKILL", p.name, p.cmd.Process.Pid)
	}
}

// watchdog is a small shell process outside our process group that kills
// every recorded process group once the Go program is gone, however it died.
// envtest starts etcd and kube-apiserver without a parent-death signal, so
// without it a killed test binary would leave them running.
type watchdog struct {
	pidFile string
	cmd     *exec.Cmd
	mu      sync.Mutex
}

func startWatchdog(dir string) (*watchdog, error) {
	w := &watchdog{pidFile: filepath.Join(dir, "process-groups")}
	if err := os.WriteFile(w.pidFile, nil, 0o644); err != nil {
		return nil, err
	}
	script := `while kill -0 "$1" 2>/dev/null; do sleep 1; done
for g in $(cat "$2"); do kill -KILL "-$g" 2>/dev/null; done`
	w.cmd = exec.Command("/bin/sh", "-c", script, "watchdog", strconv.Itoa(os.Getpid()), w.pidFile)
	w.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := w.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting watchdog: %w", err)
	}
	go func() { _ = w.cmd.Wait() }()
	return w, nil
}

// track records process groups the watchdog must kill.
func (w *watchdog) track(pgids ...int) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	f, err := os.OpenFile(w.pidFile, os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	for _, g := range pgids {
		if _, err := fmt.Fprintln(f, g); err != nil {
			_ = f.Close()
			return err
		}
	}
	return f.Close()
}

func (w *watchdog) stop() {
	if w.cmd.Process != nil {
		_ = syscall.Kill(-w.cmd.Process.Pid, syscall.SIGKILL)
	}
}

// childGroups lists the process groups of this process's direct children
// whose command name is one of names. envtest puts each of its processes in a
// group of its own, so the group id is the child's pid.
func childGroups(names ...string) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	var groups []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Format: pid (comm) state ppid pgrp ...; comm may contain spaces.
		s := string(stat)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		comm, fields := s[open+1:end], strings.Fields(s[end+1:])
		if len(fields) < 3 {
			continue
		}
		ppid, _ := strconv.Atoi(fields[1])
		pgrp, _ := strconv.Atoi(fields[2])
		if ppid != self || !nameIn(comm, names) {
			continue
		}
		if pgrp == pid {
			groups = append(groups, pgrp)
		}
	}
	return groups, nil
}

func nameIn(comm string, names []string) bool {
	for _, n := range names {
		// /proc truncates comm to 15 bytes.
		if len(n) > 15 {
			n = n[:15]
		}
		if comm == n {
			return true
		}
	}
	return false
}

// Live clusters, stopped on SIGINT/SIGTERM before the program exits.
var (
	liveMu      sync.Mutex
	live        = map[*Cluster]struct{}{}
	signalsOnce sync.Once
)

func register(c *Cluster) {
	liveMu.Lock()
	live[c] = struct{}{}
	liveMu.Unlock()
	signalsOnce.Do(func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
		go func() {
			sig := <-ch
			fmt.Fprintf(os.Stderr, "\ncluster: %v received, stopping every local cluster\n", sig)
			liveMu.Lock()
			clusters := make([]*Cluster, 0, len(live))
			for c := range live {
				clusters = append(clusters, c)
			}
			liveMu.Unlock()
			var errs []error
			for _, c := range clusters {
				errs = append(errs, c.Stop())
			}
			if err := errors.Join(errs...); err != nil {
				fmt.Fprintln(os.Stderr, "cluster:", err)
			}
			os.Exit(130)
		}()
	})
}

func unregister(c *Cluster) {
	liveMu.Lock()
	delete(live, c)
	liveMu.Unlock()
}
