package onnx

import (
	"encoding/binary"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// Hand-built ONNX models for tests: protobuf bytes assembled field by field.

func pbBytes(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func pbVarint(b []byte, num protowire.Number, v int64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(v))
}

func pbInts(name string, v ...int64) []byte {
	b := pbBytes(nil, attrName, []byte(name))
	b = pbVarint(b, attrType, 7)
	var packed []byte
	for _, x := range v {
		packed = protowire.AppendVarint(packed, uint64(x))
	}
	return pbBytes(b, attrInts, packed)
}

func pbInt(name string, v int64) []byte {
	b := pbBytes(nil, attrName, []byte(name))
	b = pbVarint(b, attrType, 2)
	return pbVarint(b, attrI, v)
}

func pbFloat(name string, v float32) []byte {
	b := pbBytes(nil, attrName, []byte(name))
	b = pbVarint(b, attrType, 1)
	b = protowire.AppendTag(b, attrF, protowire.Fixed32Type)
	return protowire.AppendFixed32(b, math.Float32bits(v))
}

func pbFloats(name string, v ...float32) []byte {
	b := pbBytes(nil, attrName, []byte(name))
	b = pbVarint(b, attrType, 6)
	var packed []byte
	for _, x := range v {
		packed = binary.LittleEndian.AppendUint32(packed, math.Float32bits(x))
	}
	return pbBytes(b, attrFloats, packed)
}

func pbString(name, v string) []byte {
	b := pbBytes(nil, attrName, []byte(name))
	b = pbVarint(b, attrType, 3)
	return pbBytes(b, attrS, []byte(v))
}

func pbStrings(name string, v ...string) []byte {
	b := pbBytes(nil, attrName, []byte(name))
	b = pbVarint(b, attrType, 8)
	for _, s := range v {
		b = pbBytes(b, attrStrings, []byte(s))
	}
	return b
}

// pbTensorF32 is a float tensor attribute (raw data); pbTensorU8 a uint8 one.
func pbTensorF32(name string, v ...float32) []byte {
	t := pbVarint(nil, tensorDims, int64(len(v)))
	t = pbVarint(t, tensorDataType, dtFloat)
	var raw []byte
	for _, x := range v {
		raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(x))
	}
	t = pbBytes(t, tensorRawData, raw)
	b := pbBytes(nil, attrName, []byte(name))
	b = pbVarint(b, attrType, 4)
	return pbBytes(b, attrT, t)
}

func pbTensorU8(name string, v ...uint8) []byte {
	t := pbVarint(nil, tensorDims, int64(len(v)))
	t = pbVarint(t, tensorDataType, dtUint8)
	t = pbBytes(t, tensorRawData, v)
	b := pbBytes(nil, attrName, []byte(name))
	b = pbVarint(b, attrType, 4)
	return pbBytes(b, attrT, t)
}

func node(op, domain string, in, out []string, attrs ...[]byte) []byte {
	b := pbBytes(nil, nodeOpType, []byte(op))
	if domain != "" {
		b = pbBytes(b, nodeDomain, []byte(domain))
	}
	for _, s := range in {
		b = pbBytes(b, nodeInput, []byte(s))
	}
	for _, s := range out {
		b = pbBytes(b, nodeOutput, []byte(s))
	}
	for _, a := range attrs {
		b = pbBytes(b, nodeAttribute, a)
	}
	return b
}

// valueInfo is a tensor of elem type with dims (-1 for a symbolic batch dim).
func valueInfo(name string, elem int64, dims ...int64) []byte {
	var shape []byte
	for _, d := range dims {
		var dim []byte
		if d < 0 {
			dim = pbBytes(nil, dimParam, []byte("N"))
		} else {
			dim = pbVarint(nil, dimValue, d)
		}
		shape = pbBytes(shape, shapeDim, dim)
	}
	tt := pbVarint(nil, tensorTypeElem, elem)
	tt = pbBytes(tt, tensorTypeShape, shape)
	typ := pbBytes(nil, typeTensor, tt)
	b := pbBytes(nil, valueInfoName, []byte(name))
	return pbBytes(b, valueInfoType, typ)
}

func model(nodes, inputs, outputs [][]byte, mlOpset int64) []byte {
	var g []byte
	for _, n := range nodes {
		g = pbBytes(g, graphNode, n)
	}
	for _, i := range inputs {
		g = pbBytes(g, graphInput, i)
	}
	for _, o := range outputs {
		g = pbBytes(g, graphOutput, o)
	}
	b := pbVarint(nil, modelIRVersion, 8)
	for _, o := range [][2]any{{"", int64(17)}, {"ai.onnx.ml", mlOpset}} {
		op := pbBytes(nil, opsetDomain, []byte(o[0].(string)))
		op = pbVarint(op, opsetVersion, o[1].(int64))
		b = pbBytes(b, modelOpsetImport, op)
	}
	return pbBytes(b, modelGraph, g)
}

// stump is a TreeEnsembleRegressor of one tree: node 0 tests feature 0
// against thr with mode, true -> leaf 1 (weight 10), false -> leaf 2 (20).
func stump(mode string, thr float32, missingTrue bool, extra ...[]byte) []byte {
	miss := int64(0)
	if missingTrue {
		miss = 1
	}
	attrs := append([][]byte{
		pbInts("nodes_treeids", 0, 0, 0),
		pbInts("nodes_nodeids", 0, 1, 2),
		pbInts("nodes_featureids", 0, 0, 0),
		pbStrings("nodes_modes", mode, "LEAF", "LEAF"),
		pbFloats("nodes_values", thr, 0, 0),
		pbInts("nodes_truenodeids", 1, 0, 0),
		pbInts("nodes_falsenodeids", 2, 0, 0),
		pbInts("nodes_missing_value_tracks_true", miss, 0, 0),
		pbInts("target_treeids", 0, 0),
		pbInts("target_nodeids", 1, 2),
		pbInts("target_ids", 0, 0),
		pbFloats("target_weights", 10, 20),
		pbInt("n_targets", 1),
	}, extra...)
	n := node("TreeEnsembleRegressor", "ai.onnx.ml", []string{"X"}, []string{"Y"}, attrs...)
	return model([][]byte{n}, [][]byte{valueInfo("X", dtFloat, -1, 1)}, [][]byte{valueInfo("Y", dtFloat, -1, 1)}, 3)
}
