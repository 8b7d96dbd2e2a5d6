package bench

import (
	"bufio"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tally-ml/tally/features"
)

//go:embed feast/serve.py
var feastServePy []byte

const feastDiffers = "Feast 'feast serve' (Python, 2 worker processes, worker recycling after N requests turned off) on its Redis online store, serving the 16 windowed and table features precomputed by the harness at the preload's end (Feast has no streaming windows of its own: a job would recompute them); the 2 request-time features are not computed (an on-demand view would add pandas work per request); values are as fresh as the last write, not the request time"

// feastRate is the fixed-rate step for Feast: the design's 20k/s would only
// measure its queue.
const feastRate = 500

func (r *runner) runFeast(ctx context.Context) error {
	if !r.opts.wantPeer(PeerFeast) {
		return nil
	}
	st := PeerStatus{Name: PeerFeast, Setup: "scripts/bench-peers.sh feast", Differs: feastDiffers}
	notRun := func(reason string) error {
		st.Reason = reason
		r.rep.Peers = append(r.rep.Peers, st)
		r.add(Result{System: "feast", Scenario: "lookup", Mode: "-", NotRun: reason})
		r.logf("feast    not run: %s", reason)
		return nil
	}
	if !r.opts.want("lookup") {
		return notRun("the lookup scenario was not selected")
	}
	venv := filepath.Join(r.opts.RepoRoot, ".venv-bench")
	py := filepath.Join(venv, "bin", "python")
	if _, err := os.Stat(filepath.Join(venv, "bin", "feast")); err != nil {
		return notRun("Feast is not installed in " + venv + " (run scripts/bench-peers.sh feast)")
	}
	if out, err := exec.Command(filepath.Join(venv, "bin", "feast"), "version").Output(); err == nil {
		// "Feast SDK Version: "0.67.0"", with terminal colour codes.
		if v := regexp.MustCompile(`\d+\.\d+\.\d+`).FindString(string(out)); v != "" {
			st.Version = "feast " + v
		}
	}
	rp, _, err := startRedis(ctx, 4)
	if err != nil {
		return notRun("its online store: " + err.Error())
	}
	defer rp.stop()
	dir, err := os.MkdirTemp("", "tally-bench-feast-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := r.writeFeastData(dir); err != nil {
		return notRun("precomputing its values: " + err.Error())
	}
	script := filepath.Join(dir, "serve.py")
	if err := os.WriteFile(script, feastServePy, 0o644); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	redisPort := strings.TrimPrefix(rp.addr, "127.0.0.1:")
	cmd := exec.Command(py, script, dir, redisPort, strconv.Itoa(port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logPath := filepath.Join(dir, "feast.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	t := time.Now()
	if err := cmd.Start(); err != nil {
		return notRun("start: " + err.Error())
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the server and its workers
		<-exited
	}()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	c := newClient(addr, r.opts.Workers)
	defer c.close()
	bodies := r.feastBodies()
	ready := false
	for deadline := time.Now().Add(180 * time.Second); time.Now().Before(deadline) && ctx.Err() == nil; {
		select {
		case err := <-exited:
			exited <- err
			return notRun(fmt.Sprintf("feast serve exited (%v): %s", err, tail(logPath, 600)))
		case <-time.After(500 * time.Millisecond):
		}
		_, err := c.post(0, "/get-online-features", "application/json", bodies[0])
		var se *statusError
		if errors.As(err, &se) {
			return notRun(fmt.Sprintf("feast serve answered %s", err))
		}
		if err == nil {
			ready = true
			break
		}
	}
	if !ready {
		return notRun("feast serve did not answer within 180 s: " + tail(logPath, 600))
	}
	r.logf("feast    %s serving on %s (set up in %s)", st.Version, addr, time.Since(t).Round(time.Second))
	st.Ran = true
	r.rep.Peers = append(r.rep.Peers, st)
	return r.lookupSuite(ctx, "feast", feastRate, func(w int, i int64) error {
		_, err := c.post(w, "/get-online-features", "application/json", bodies[i%int64(len(bodies))])
		return err
	})
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	s := strings.TrimSpace(string(b))
	if len(s) > n {
		s = "..." + s[len(s)-n:]
	}
	return strings.ReplaceAll(s, "\n", " | ")
}

// feastBodies are the get-online-features requests of the lookup keys.
func (r *runner) feastBodies() [][]byte {
	repo, _ := features.Default()
	var refs []string
	for _, v := range repo.Views {
		for _, f := range v.Features {
			refs = append(refs, strconv.Quote(v.Name+":"+f.Name))
		}
	}
	for _, t := range repo.Tables {
		for _, f := range t.Features {
			refs = append(refs, strconv.Quote(t.Name+":"+f.Name))
		}
	}
	head := `{"features":[` + strings.Join(refs, ",") + `],"entities":{`
	out := make([][]byte, len(r.fix.lookups))
	for i, k := range r.fix.lookups {
		out[i] = []byte(head + `"user_id":[` + strconv.Quote(k.User) + `],"merchant":[` + strconv.Quote(k.Merchant) +
			`],"country":[` + strconv.Quote(k.Country) + `]},"full_feature_names":true}`)
	}
	return out
}

// writeFeastData writes each entity's feature values as of the preload's
// end, computed by the reference, as CSV: users.csv (the user views and the
// profile), merchants.csv, countries.csv. Columns are "<view>__<feature>".
func (r *runner) writeFeastData(dir string) error {
	repo, err := features.Default()
	if err != nil {
		return err
	}
	refs := r.references(repo, nil)
	keys := map[string][]string{}
	for _, u := range r.fix.users {
		keys["user_id"] = append(keys["user_id"], u.ID)
	}
	seen := map[string]bool{}
	for _, t := range r.fix.preload {
		for _, kv := range [][2]string{{"merchant", t.Merchant}, {"country", t.Country}} {
			if !seen[kv[0]+kv[1]] {
				seen[kv[0]+kv[1]] = true
				keys[kv[0]] = append(keys[kv[0]], kv[1])
			}
		}
	}
	for _, e := range []struct{ key, file string }{{"user_id", "users.csv"}, {"merchant", "merchants.csv"}, {"country", "countries.csv"}} {
		f, err := os.Create(filepath.Join(dir, e.file))
		if err != nil {
			return err
		}
		w := bufio.NewWriter(f)
		w.WriteString(e.key)
		for _, v := range repo.Views {
			if v.Entity.JoinKey == e.key {
				for _, ft := range v.Features {
					w.WriteString("," + v.Name + "__" + ft.Name)
				}
			}
		}
		if e.key == "user_id" {
			w.WriteString(",user_profile__home_lat,user_profile__home_long")
		}
		w.WriteString("\n")
		for _, k := range keys[e.key] {
			w.WriteString(k)
			for vi, v := range repo.Views {
				if v.Entity.JoinKey != e.key {
					continue
				}
				for _, val := range refs[vi].Read([]byte(k), r.fix.t0) {
					w.WriteString(",")
					if val.Present {
						w.WriteString(strconv.FormatFloat(val.Num, 'g', -1, 64))
					}
				}
			}
			if e.key == "user_id" {
				h := r.fix.homes[k]
				fmt.Fprintf(w, ",%v,%v", h[0], h[1])
			}
			w.WriteString("\n")
		}
		if err := w.Flush(); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	return nil
}
