package cluster

import (
	"embed"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

//go:embed stages/*.yaml
var stages embed.FS

// auditPolicy records every write with its user and nothing of reads, which
// keeps the log small enough for a 1000-node benchmark.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: None
  verbs: ["get", "list", "watch"]
- level: Metadata
`

func (c *Cluster) startScheduler() error {
	_, kubeconfig, err := c.AddUser(UserScheduler, "system:masters")
	if err != nil {
		return err
	}
	port, err := FreePort()
	if err != nil {
		return err
	}
	// The default client limit (50 QPS) would make binding, not our
	// controller, the bottleneck of a 1000-node test.
	config := fmt.Sprintf(`apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: %q
  qps: 5000
  burst: 10000
leaderElection:
  leaderElect: false
`, kubeconfig)
	path := filepath.Join(c.Dir, "kube-scheduler.yaml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		return err
	}
	return c.StartProcess("kube-scheduler", filepath.Join(c.bin, "kube-scheduler"),
		"--config="+path,
		"--bind-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(port),
		"--cert-dir="+filepath.Join(c.Dir, "pki", "kube-scheduler"),
	)
}

func (c *Cluster) startControllerManager() error {
	controllers := c.opts.Controllers
	if len(controllers) == 0 {
		controllers = DefaultControllers
	}
	return c.StartControllerManager("kube-controller-manager", UserControllerManager, controllers, c.opts.ControllerManagerArgs...)
}

// StartControllerManager runs one more kube-controller-manager as component
// name, with its own client certificate for user (so the audit log tells its
// writes apart) and only the given controllers. The benchmark runs the
// DaemonSet controller this way, alone in its process, so that process's CPU
// and memory are the controller's own.
func (c *Cluster) StartControllerManager(name, user string, controllers []string, args ...string) error {
	_, kubeconfig, err := c.AddUser(user, "system:masters")
	if err != nil {
		return err
	}
	port, err := FreePort()
	if err != nil {
		return err
	}
	flags := []string{
		"--kubeconfig=" + kubeconfig,
		"--controllers=" + strings.Join(controllers, ","),
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + filepath.Join(c.Dir, "pki", safeName(name)),
	}
	return c.StartProcess(name, filepath.Join(c.bin, "kube-controller-manager"), append(flags, args...)...)
}

func (c *Cluster) startKwok() error {
	_, kubeconfig, err := c.AddUser(UserKwok, "system:masters")
	if err != nil {
		return err
	}
	config, err := kwokConfig()
	if err != nil {
		return err
	}
	path := filepath.Join(c.Dir, "kwok.yaml")
	if err := os.WriteFile(path, config, 0o644); err != nil {
		return err
	}
	port, err := FreePort()
	if err != nil {
		return err
	}
	return c.StartProcess("kwok", filepath.Join(c.bin, "kwok"),
		"--kubeconfig="+kubeconfig,
		"--config="+path,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector="+FakeNodeAnnotation+"=fake",
		"--node-lease-duration-seconds=0",
		"--server-address=127.0.0.1:"+strconv.Itoa(port),
	)
}

// kwokOptions lets kwok play 16 pods' stages at once instead of its
// default 4. A real cluster has one kubelet per node, all acting at once;
// kwok plays every node's kubelet through one pool of workers, so with 4 a
// rollout that asks several kubelet steps of each pod queued behind the
// pool: on 200 nodes an in-place update (about 4.5 kwok writes a pod)
// took 21.5 s, 7.5 s with 16, and recreation 6.3 s, then 4.6 s (2 cores,
// load average about 25). The pool's other sizes are kwok's defaults,
// which a configuration file must name (kwok refuses zero).
const kwokOptions = `apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
options:
  podPlayStageParallelism: 16
  nodePlayStageParallelism: 4
  nodeLeaseParallelism: 4
  podsOnNodeSyncParallelism: 1`

// kwokConfig joins the Stage definitions kept in stages/ into one file,
// and kwok's options.
func kwokConfig() ([]byte, error) {
	files, err := stages.ReadDir("stages")
	if err != nil {
		return nil, err
	}
	var docs []string
	for _, f := range files {
		b, err := stages.ReadFile("stages/" + f.Name())
		if err != nil {
			return nil, err
		}
		docs = append(docs, strings.TrimSpace(string(b)))
	}
	docs = append(docs, kwokOptions)
	return []byte(strings.Join(docs, "\n---\n") + "\n"), nil
}

// StartProcess runs binary as a component of this cluster: its output goes
// to logs/<name>.log, it is stopped by Stop and killed by the watchdog if the
// program dies. Names are unique among running components.
func (c *Cluster) StartProcess(name, binary string, args ...string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return fmt.Errorf("starting %s: cluster is stopped", name)
	}
	if p := c.procs[name]; p != nil {
		if done, _ := p.exited(); !done {
			return fmt.Errorf("starting %s: already running", name)
		}
	}
	p, err := startProcess(name, binary, args, c.LogPath(name))
	if err != nil {
		return err
	}
	c.procs[name] = p
	if err := c.watchdog.track(p.cmd.Process.Pid); err != nil {
		return err
	}
	c.logf("started %s (pid %d)", name, p.cmd.Process.Pid)
	return nil
}

// StopProcess stops a component started by StartProcess (SIGTERM, then
// SIGKILL after grace).
func (c *Cluster) StopProcess(name string, grace time.Duration) error {
	p, err := c.process(name)
	if err != nil {
		return err
	}
	return p.stop(grace)
}

// KillProcess kills a component with SIGKILL, as a crash would.
func (c *Cluster) KillProcess(name string) error {
	p, err := c.process(name)
	if err != nil {
		return err
	}
	return p.kill()
}

// Pid is the process id of a running component.
func (c *Cluster) Pid(name string) (int, error) {
	p, err := c.process(name)
	if err != nil {
		return 0, err
	}
	return p.cmd.Process.Pid, nil
}

func (c *Cluster) process(name string) (*process, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.procs[name]
	if p == nil {
		return nil, fmt.Errorf("no component %q", name)
	}
	return p, nil
}

// FreePort returns a loopback TCP port nothing listens on (for a component
// or a test's own server).
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// binDir finds the folder holding the pinned binaries.
func binDir(dir string) (string, error) {
	if dir == "" {
		dir = os.Getenv("KUBEBUILDER_ASSETS")
	}
	if dir == "" {
		root, err := repoRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, "bin")
	}
	for _, b := range []string{"etcd", "kube-apiserver", "kube-scheduler", "kube-controller-manager", "kwok"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return "", fmt.Errorf("%s not found in %s: run `make tools` first", b, dir)
		}
	}
	return filepath.Abs(dir)
}

// repoRoot walks up from the working directory to the folder of this
// repository's go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(string(b), "module github.com/nodeagentset/nodeagentset\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no bin folder given and not inside the nodeagentset repository")
		}
		dir = parent
	}
}

func prepareDir(dir string) (string, error) {
	var err error
	if dir == "" {
		if dir, err = os.MkdirTemp("", "nodeagentset-cluster-"); err != nil {
			return "", err
		}
	}
	for _, sub := range []string{"logs", "kubeconfigs", "pki"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return "", err
		}
	}
	return filepath.Abs(dir)
}

func safeName(name string) string {
	return strings.NewReplacer(":", "-", "/", "-").Replace(name)
}

// BinPath is the path of one of the pinned binaries (kubectl, say).
func (c *Cluster) BinPath(name string) string { return filepath.Join(c.bin, name) }
