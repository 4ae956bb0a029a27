package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The local cluster's processes go away with the program that started
// them, however it ends: Ctrl-C (SIGINT) stops them in order, and even
// SIGKILL, which runs no clean-up at all, leaves nothing behind (the
// watchdog kills them).
func TestClusterProcessesDieWithTheirProgram(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "dev-cluster")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/dev-cluster").CombinedOutput(); err != nil {
		t.Fatalf("building dev-cluster: %v\n%s", err, out)
	}
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(bin, "--nodes", "1", "--dir", dir)
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			waitForLine(t, stdout, "Press Ctrl-C")
			pids := recordedGroups(t, dir)
			if len(pids) != 5 {
				t.Fatalf("the cluster recorded %d processes, want 5", len(pids))
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()
			deadline := time.Now().Add(15 * time.Second)
			for _, pid := range pids {
				for alive(pid) && time.Now().Before(deadline) {
					time.Sleep(100 * time.Millisecond)
				}
				if alive(pid) {
					t.Errorf("process %d still running after the program got %v", pid, sig)
					_ = syscall.Kill(-pid, syscall.SIGKILL)
				}
			}
		})
	}
}

func waitForLine(t *testing.T, r interface{ Read([]byte) (int, error) }, want string) {
	t.Helper()
	found := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if strings.Contains(sc.Text(), want) {
				found <- true
				for sc.Scan() { // keep draining so the program never blocks
				}
				return
			}
		}
		found <- false
	}()
	select {
	case ok := <-found:
		if !ok {
			t.Fatalf("program ended before printing %q", want)
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("no %q within 2 minutes", want)
	}
}

func recordedGroups(t *testing.T, dir string) []int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "process-groups"))
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}
