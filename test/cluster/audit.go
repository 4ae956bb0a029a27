package cluster

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// AuditLogPath is where the API server writes its audit log when
// Options.Audit is set.
func (c *Cluster) AuditLogPath() string { return filepath.Join(c.Dir, "logs", "audit.log") }

// Write is one write request as the audit log recorded it.
type Write struct {
	User     string
	Verb     string
	Resource string
	// Subresource is empty for the object itself ("status", "binding", ...).
	Subresource string
	// Name is the object's name (empty for a create with generateName).
	Name string
	Code int32
	// At is when the API server finished the request.
	At time.Time
}

// Writes reads every write the audit log holds so far, in order. Reads are
// not logged (see auditPolicy).
func (c *Cluster) Writes() ([]Write, error) {
	writes, _, err := c.WritesFrom(0)
	return writes, err
}

// WritesFrom reads the writes logged from byte offset on (0, or what an
// earlier call returned) and returns the offset to read on from. A long
// benchmark reads only what each round added to a log of millions of lines.
func (c *Cluster) WritesFrom(offset int64) ([]Write, int64, error) {
	if !c.opts.Audit {
		return nil, 0, fmt.Errorf("audit logging is off for this cluster")
	}
	f, err := os.Open(c.AuditLogPath())
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil, 0, err
	}
	var writes []Write
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		// The API server may be midway through a line; leave it for the
		// next call.
		if len(line) == 0 || line[len(line)-1] != '}' {
			break
		}
		offset += int64(len(line)) + 1
		var e struct {
			Stage     string                    `json:"stage"`
			At        time.Time                 `json:"stageTimestamp"`
			Verb      string                    `json:"verb"`
			User      struct{ Username string } `json:"user"`
			ObjectRef *struct {
				Resource    string `json:"resource"`
				Subresource string `json:"subresource"`
				Name        string `json:"name"`
			} `json:"objectRef"`
			ResponseStatus *struct {
				Code int32 `json:"code"`
			} `json:"responseStatus"`
		}
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, 0, fmt.Errorf("reading audit log: %w", err)
		}
		// One event per request: the one written when the response is done.
		if e.Stage != "ResponseComplete" {
			continue
		}
		w := Write{User: e.User.Username, Verb: e.Verb, At: e.At}
		if e.ObjectRef != nil {
			w.Resource, w.Subresource, w.Name = e.ObjectRef.Resource, e.ObjectRef.Subresource, e.ObjectRef.Name
		}
		if e.ResponseStatus != nil {
			w.Code = e.ResponseStatus.Code
		}
		writes = append(writes, w)
	}
	return writes, offset, sc.Err()
}
