package cluster

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Usage is what /proc says a process has used so far.
type Usage struct {
	// CPU is user plus system time.
	CPU time.Duration
	// PeakRSS is the largest resident set size the process has had (VmHWM),
	// in bytes.
	PeakRSS int64
}

// clockTick is USER_HZ, the unit of utime and stime in /proc/PID/stat. It is
// 100 on every Linux architecture Go supports.
const clockTick = 100

// ProcessUsage reads the CPU time and peak memory of process pid.
func ProcessUsage(pid int) (Usage, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Usage{}, err
	}
	// The command name (field 2) may hold spaces; the fields after its
	// closing parenthesis are fixed: state is field 3, utime 14, stime 15.
	end := strings.LastIndexByte(string(stat), ')')
	if end < 0 {
		return Usage{}, fmt.Errorf("reading /proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(string(stat[end+1:]))
	if len(fields) < 13 {
		return Usage{}, fmt.Errorf("reading /proc/%d/stat: %d fields", pid, len(fields))
	}
	var ticks int64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return Usage{}, fmt.Errorf("reading /proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	u := Usage{CPU: time.Duration(ticks) * time.Second / clockTick}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Usage{}, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			u.PeakRSS = kb * 1024
			return u, err
		}
	}
	return Usage{}, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}
