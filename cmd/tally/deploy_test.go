package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/tally-ml/tally/node"
)

// parseServeArgs parses args (after "serve") as `tally serve` would: every
// flag must be one serve has. It returns the parsed flags.
func parseServeArgs(t *testing.T, where string, args []string) serveFlags {
	t.Helper()
	serve := serveCmd()
	for i := 0; i < len(args); i++ {
		name, _, hasValue := strings.Cut(strings.TrimPrefix(args[i], "--"), "=")
		fl := serve.Flags().Lookup(name)
		if !strings.HasPrefix(args[i], "--") || fl == nil {
			t.Errorf("%s: %q is not a flag of tally serve", where, args[i])
			continue
		}
		if !hasValue && fl.Value.Type() != "bool" {
			i++ // --flag value
		}
	}
	var f serveFlags
	cmd := &cobra.Command{Use: "serve"}
	f.register(cmd)
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatalf("%s: tally serve %v: %v", where, args, err)
	}
	return f
}

// TestDeployKubernetes: deploy/kubernetes/tally.yaml is a headless service
// and a StatefulSet of 3 whose pods name themselves, find their peers in
// that service, take the cluster key from a Secret, and report readiness
// on /readyz; its `tally serve` arguments parse into a valid cluster
// config for every pod.
func TestDeployKubernetes(t *testing.T) {
	f, err := os.Open("../../deploy/kubernetes/tally.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type container struct {
		Args []string `yaml:"args"`
		Env  []struct {
			Name      string `yaml:"name"`
			ValueFrom struct {
				FieldRef *struct {
					FieldPath string `yaml:"fieldPath"`
				} `yaml:"fieldRef"`
				SecretKeyRef *struct{ Name, Key string } `yaml:"secretKeyRef"`
			} `yaml:"valueFrom"`
		} `yaml:"env"`
		Ports []struct {
			Name          string `yaml:"name"`
			ContainerPort int    `yaml:"containerPort"`
		} `yaml:"ports"`
		ReadinessProbe struct {
			HTTPGet struct {
				Path string `yaml:"path"`
				Port string `yaml:"port"`
			} `yaml:"httpGet"`
		} `yaml:"readinessProbe"`
	}
	type doc struct {
		Kind     string `yaml:"kind"`
		Metadata struct {
			Name string `yaml:"name"`
		} `yaml:"metadata"`
		Spec struct {
			ClusterIP                string `yaml:"clusterIP"`
			PublishNotReadyAddresses bool   `yaml:"publishNotReadyAddresses"`
			ServiceName              string `yaml:"serviceName"`
			Replicas                 int    `yaml:"replicas"`
			PodManagementPolicy      string `yaml:"podManagementPolicy"`
			Template                 struct {
				Spec struct {
					Containers []container `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	dec := yaml.NewDecoder(f)
	var docs []doc
	for {
		var d doc
		if err := dec.Decode(&d); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, d)
	}
	var sts *doc
	services := map[string]doc{}
	for i, d := range docs {
		switch d.Kind {
		case "StatefulSet":
			sts = &docs[i]
		case "Service":
			services[d.Metadata.Name] = d
		}
	}
	if sts == nil {
		t.Fatal("no StatefulSet")
	}
	s := sts.Spec
	if s.Replicas != 3 || s.PodManagementPolicy != "Parallel" {
		t.Errorf("StatefulSet: %d replicas, podManagementPolicy %q; want 3 and Parallel (the cluster forms once all its nodes are up)", s.Replicas, s.PodManagementPolicy)
	}
	if h, ok := services[s.ServiceName]; !ok || h.Spec.ClusterIP != "None" || !h.Spec.PublishNotReadyAddresses {
		t.Errorf("serviceName %q: want a headless service (clusterIP None) publishing not-ready addresses, got %+v", s.ServiceName, h.Spec)
	}
	if len(s.Template.Spec.Containers) != 1 {
		t.Fatalf("%d containers", len(s.Template.Spec.Containers))
	}
	c := s.Template.Spec.Containers[0]
	if c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("readiness probe on %q, want /readyz", c.ReadinessProbe.HTTPGet.Path)
	}
	var podName, keyFromSecret bool
	for _, e := range c.Env {
		podName = podName || e.Name == "POD_NAME" && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name"
		keyFromSecret = keyFromSecret || e.Name == "TALLY_CLUSTER_KEY" && e.ValueFrom.SecretKeyRef != nil
	}
	if !podName || !keyFromSecret {
		t.Errorf("env: POD_NAME from metadata.name %v, TALLY_CLUSTER_KEY from a Secret %v; want both", podName, keyFromSecret)
	}
	ports := map[string]int{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if len(c.Args) == 0 || c.Args[0] != "serve" {
		t.Fatalf("args %v: want tally serve ...", c.Args)
	}
	t.Setenv("TALLY_CLUSTER_KEY", "a-cluster-key-for-the-test-0123456789")
	var want []string
	for i := range s.Replicas {
		want = append(want, fmt.Sprintf("%s-%d=%s-%d.%s:%d", sts.Metadata.Name, i, sts.Metadata.Name, i, s.ServiceName, ports["cluster"]))
	}
	for i := range s.Replicas {
		pod := fmt.Sprintf("%s-%d", sts.Metadata.Name, i)
		var args []string
		for _, a := range c.Args[1:] {
			args = append(args, strings.ReplaceAll(a, "$(POD_NAME)", pod))
		}
		sf := parseServeArgs(t, pod, args)
		sf.cluster.merge(node.ClusterConfig{})
		cc, err := sf.cluster.config(sf.dataDir, sf.listen, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatalf("%s: %v", pod, err)
		}
		var peers []string
		for _, p := range cc.Peers {
			peers = append(peers, p.ID+"="+p.ClusterAddr)
		}
		if cc.NodeID != pod || !slices.Equal(peers, want) || cc.Advertise != fmt.Sprintf("%s.%s:%d", pod, s.ServiceName, ports["cluster"]) {
			t.Errorf("%s: node id %q, advertise %q, peers %v; want its pod name, its name in %s, and %v", pod, cc.NodeID, cc.Advertise, peers, s.ServiceName, want)
		}
		if !strings.HasSuffix(cc.ClusterAddr, fmt.Sprintf(":%d", ports["cluster"])) || !strings.HasSuffix(sf.listen, fmt.Sprintf(":%d", ports["http"])) {
			t.Errorf("%s: cluster port %s, listen %s; the container ports are %v", pod, cc.ClusterAddr, sf.listen, ports)
		}
	}
}

// TestDeploySystemd: the unit's ExecStart is a valid `tally serve` command
// line, and the example config it reads loads and names this node among
// its peers.
func TestDeploySystemd(t *testing.T) {
	unit, err := os.ReadFile("../../deploy/systemd/tally.service")
	if err != nil {
		t.Fatal(err)
	}
	var exec []string
	sc := bufio.NewScanner(bytes.NewReader(unit))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "ExecStart="); ok {
			exec = strings.Fields(v)
		}
	}
	if len(exec) < 2 || filepath.Base(exec[0]) != "tally" || exec[1] != "serve" {
		t.Fatalf("ExecStart %v: want tally serve ...", exec)
	}
	sf := parseServeArgs(t, "tally.service", exec[2:])
	if sf.config != "/etc/tally/tally.yaml" {
		t.Fatalf("--config %q", sf.config)
	}
	cfg, err := node.LoadConfig("../../deploy/systemd/tally.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.APIKeys) == 0 {
		t.Error("the example config has no api_keys: a node listening beyond loopback needs them")
	}
	cl := cfg.Cluster
	if !slices.ContainsFunc(cl.Peers, func(p string) bool { return strings.HasPrefix(p, cl.NodeID+"="+cl.Addr) }) {
		t.Errorf("node %s at %s is not among its peers %v", cl.NodeID, cl.Addr, cl.Peers)
	}
	sf.cluster.keyFile = "" // /etc/tally/cluster.key is not here
	cl.KeyFile = ""
	t.Setenv("TALLY_CLUSTER_KEY", "a-cluster-key-for-the-test-0123456789")
	sf.cluster.merge(cl)
	if _, err := sf.cluster.config(cfg.DataDir, cfg.Listen, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
}
