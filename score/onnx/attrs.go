package onnx

import (
	"fmt"
	"math"
)

// attrs indexes a node's attributes by name.
type attrs map[string]*attrProto

func newAttrs(n *nodeProto) attrs {
	a := make(attrs, len(n.attrs))
	for _, x := range n.attrs {
		a[x.name] = x
	}
	return a
}

func (a attrs) has(name string) bool { _, ok := a[name]; return ok }

func (a attrs) ints(name string) []int64 {
	if x := a[name]; x != nil {
		return x.ints
	}
	return nil
}

func (a attrs) floats(name string) []float64 {
	x := a[name]
	if x == nil {
		return nil
	}
	out := make([]float64, len(x.floats))
	for i, f := range x.floats {
		out[i] = float64(f)
	}
	return out
}

func (a attrs) strs(name string) []string {
	x := a[name]
	if x == nil {
		return nil
	}
	out := make([]string, len(x.strings))
	for i, s := range x.strings {
		out[i] = string(s)
	}
	return out
}

func (a attrs) str(name, def string) string {
	if x := a[name]; x != nil {
		return string(x.s)
	}
	return def
}

func (a attrs) int(name string, def int64) int64 {
	if x := a[name]; x != nil {
		return x.i
	}
	return def
}

// tensor returns a tensor attribute's values, nil when absent.
func (a attrs) tensor(name string) ([]float64, error) {
	x := a[name]
	if x == nil || x.t == nil {
		return nil, nil
	}
	v, err := x.t.floats64()
	if err != nil {
		return nil, fmt.Errorf("attribute %s: %w", name, err)
	}
	return v, nil
}

// floatsOrTensor returns the NAME_as_tensor attribute when present (the
// double-precision form of opset 3), else the float attribute NAME.
func (a attrs) floatsOrTensor(name string) ([]float64, error) {
	if a.has(name + "_as_tensor") {
		if a.has(name) && len(a[name].floats) > 0 {
			return nil, fmt.Errorf("both %s and %s_as_tensor are set", name, name)
		}
		return a.tensor(name + "_as_tensor")
	}
	return a.floats(name), nil
}

func (a attrs) modes(name string) ([]uint8, error) {
	ss := a.strs(name)
	out := make([]uint8, len(ss))
	for i, s := range ss {
		m, ok := modeNames[s]
		if !ok {
			return nil, fmt.Errorf("node mode %q is not known", s)
		}
		out[i] = m
	}
	return out, nil
}

func (a attrs) post() (postTransform, error) {
	s := a.str("post_transform", "NONE")
	p, ok := postNames[s]
	if !ok {
		return 0, fmt.Errorf("post_transform %q is not known", s)
	}
	return p, nil
}

// treeSpecV3 reads TreeEnsembleClassifier / TreeEnsembleRegressor attributes
// (ai.onnx.ml opsets 1 and 3). prefix is "class_" or "target_".
func treeSpecV3(a attrs, prefix string, nTargets int) (*treeSpec, error) {
	s := &treeSpec{nTargets: nTargets}
	var err error
	s.treeIDs = a.ints("nodes_treeids")
	s.nodeIDs = a.ints("nodes_nodeids")
	s.featIDs = a.ints("nodes_featureids")
	s.trueIDs = a.ints("nodes_truenodeids")
	s.falseIDs = a.ints("nodes_falsenodeids")
	if s.modes, err = a.modes("nodes_modes"); err != nil {
		return nil, err
	}
	for _, m := range a.ints("nodes_missing_value_tracks_true") {
		s.missing = append(s.missing, m == 1)
	}
	if s.thresholds, err = a.floatsOrTensor("nodes_values"); err != nil {
		return nil, err
	}
	s.wTree = a.ints(prefix + "treeids")
	s.wNode = a.ints(prefix + "nodeids")
	s.wTarget = a.ints(prefix + "ids")
	if s.weights, err = a.floatsOrTensor(prefix + "weights"); err != nil {
		return nil, err
	}
	if s.base, err = a.floatsOrTensor("base_values"); err != nil {
		return nil, err
	}
	agg := a.str("aggregate_function", "SUM")
	var ok bool
	if s.agg, ok = aggNames[agg]; !ok {
		return nil, fmt.Errorf("aggregate_function %q is not known", agg)
	}
	if s.post, err = a.post(); err != nil {
		return nil, err
	}
	return s, nil
}

// treeSpecV5 converts TreeEnsemble (ai.onnx.ml opset 5) attributes to the
// opset 3 layout the way onnxruntime does: a BRANCH_MEMBER node becomes a
// chain of BRANCH_EQ nodes, one per member, each falling through to the
// next and the last to the node's false branch.
func treeSpecV5(a attrs) (*treeSpec, error) {
	modesF, err := a.tensor("nodes_modes")
	if err != nil {
		return nil, err
	}
	splits, err := a.tensor("nodes_splits")
	if err != nil {
		return nil, err
	}
	members, err := a.tensor("membership_values")
	if err != nil {
		return nil, err
	}
	leafW, err := a.tensor("leaf_weights")
	if err != nil {
		return nil, err
	}
	feats := a.ints("nodes_featureids")
	trueIDs, falseIDs := a.ints("nodes_truenodeids"), a.ints("nodes_falsenodeids")
	trueLeaf, falseLeaf := a.ints("nodes_trueleafs"), a.ints("nodes_falseleafs")
	missing := a.ints("nodes_missing_value_tracks_true")
	leafT := a.ints("leaf_targetids")
	roots := a.ints("tree_roots")
	nn := len(modesF)
	for name, l := range map[string]int{"nodes_splits": len(splits), "nodes_featureids": len(feats),
		"nodes_truenodeids": len(trueIDs), "nodes_falsenodeids": len(falseIDs),
		"nodes_trueleafs": len(trueLeaf), "nodes_falseleafs": len(falseLeaf)} {
		if l != nn {
			return nil, fmt.Errorf("%s has %d entries, nodes_modes has %d", name, l, nn)
		}
	}
	if len(missing) != 0 && len(missing) != nn {
		return nil, fmt.Errorf("nodes_missing_value_tracks_true has %d entries, nodes_modes has %d", len(missing), nn)
	}
	if len(leafT) != len(leafW) {
		return nil, fmt.Errorf("leaf_targetids has %d entries, leaf_weights has %d", len(leafT), len(leafW))
	}
	modes := make([]uint8, nn)
	sets := make([][]float64, nn)
	mi := 0
	for i, m := range modesF {
		if m < 0 || m > 6 || m != math.Trunc(m) {
			return nil, fmt.Errorf("node %d has mode %v", i, m)
		}
		modes[i] = uint8(m) + modeLEQ // 0=LEQ ... 5=NEQ, 6=MEMBER
		if modes[i] == modeMember {
			for mi < len(members) && !math.IsNaN(members[mi]) {
				sets[i] = append(sets[i], members[mi])
				mi++
			}
			mi++
			if len(sets[i]) == 0 {
				return nil, fmt.Errorf("node %d is BRANCH_MEMBER with an empty set", i)
			}
		}
	}
	agg := a.int("aggregate_function", 1)
	post := a.int("post_transform", 0)
	if agg < 0 || agg > 3 {
		return nil, fmt.Errorf("aggregate_function %d is not known", agg)
	}
	if post < 0 || post > 4 {
		return nil, fmt.Errorf("post_transform %d is not known", post)
	}
	nTargets := a.int("n_targets", 0)
	if nTargets <= 0 || nTargets > int64(len(leafW))+1 {
		return nil, fmt.Errorf("n_targets %d does not fit %d leaf weights", nTargets, len(leafW))
	}
	// onnxruntime maps the integer codes through its own enum order
	// (NONE, LOGISTIC, SOFTMAX, SOFTMAX_ZERO, PROBIT), which is ours.
	s := &treeSpec{nTargets: int(nTargets), agg: aggregate(agg), post: postTransform(post)}
	limit := 4*(nn+len(leafW)+len(members)) + 16
	var emit func(cur int, tree, nodeID int64, memberIdx int, isLeaf bool, depth int) (int64, error)
	emit = func(cur int, tree, nodeID int64, memberIdx int, isLeaf bool, depth int) (int64, error) {
		if depth > maxTreeDepth {
			return 0, fmt.Errorf("tree %d is deeper than %d (or has a cycle)", tree, maxTreeDepth)
		}
		if len(s.nodeIDs) >= limit {
			return 0, fmt.Errorf("trees share too many nodes")
		}
		s.nodeIDs = append(s.nodeIDs, nodeID)
		s.treeIDs = append(s.treeIDs, tree)
		if isLeaf {
			if cur < 0 || cur >= len(leafW) {
				return 0, fmt.Errorf("leaf %d does not exist", cur)
			}
			s.modes = append(s.modes, modeLeaf)
			s.featIDs = append(s.featIDs, 0)
			s.thresholds = append(s.thresholds, 0)
			s.trueIDs = append(s.trueIDs, 0)
			s.falseIDs = append(s.falseIDs, 0)
			s.missing = append(s.missing, false)
			s.wTarget = append(s.wTarget, leafT[cur])
			s.wNode = append(s.wNode, nodeID)
			s.wTree = append(s.wTree, tree)
			s.weights = append(s.weights, leafW[cur])
			return nodeID, nil
		}
		if cur < 0 || cur >= nn {
			return 0, fmt.Errorf("node %d does not exist", cur)
		}
		s.featIDs = append(s.featIDs, feats[cur])
		s.missing = append(s.missing, len(missing) > 0 && missing[cur] == 1)
		if modes[cur] == modeMember {
			s.modes = append(s.modes, modeEQ)
			s.thresholds = append(s.thresholds, sets[cur][memberIdx])
		} else {
			s.modes = append(s.modes, modes[cur])
			s.thresholds = append(s.thresholds, splits[cur])
		}
		pos := len(s.falseIDs)
		s.falseIDs = append(s.falseIDs, 0)
		s.trueIDs = append(s.trueIDs, nodeID+1)
		last, err := emit(int(trueIDs[cur]), tree, nodeID+1, 0, trueLeaf[cur] != 0, depth+1)
		if err != nil {
			return 0, err
		}
		falseID := last + 1
		s.falseIDs[pos] = falseID
		if modes[cur] == modeMember && memberIdx+1 < len(sets[cur]) {
			return emit(cur, tree, falseID, memberIdx+1, false, depth+1)
		}
		return emit(int(falseIDs[cur]), tree, falseID, 0, falseLeaf[cur] != 0, depth+1)
	}
	for t, r := range roots {
		if r < 0 || r >= int64(nn) {
			return nil, fmt.Errorf("tree %d has root %d, there are %d nodes", t, r, nn)
		}
		isLeaf := falseIDs[r] == trueIDs[r]
		if _, err := emit(int(r), int64(t), 0, 0, isLeaf, 0); err != nil {
			return nil, err
		}
	}
	return s, nil
}
