package onnx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// This file decodes the subset of onnx.proto (ModelProto and what it holds)
// that the evaluator needs, by field number, with protowire. Unknown fields
// are skipped. Every allocation is bounded by the bytes it decodes from, so a
// hostile file can make Parse allocate at most a small multiple of its length.

// Field numbers from onnx/onnx.proto3.
const (
	modelIRVersion   = 1
	modelGraph       = 7
	modelOpsetImport = 8
	modelProducer    = 2

	opsetDomain  = 1
	opsetVersion = 2

	graphNode        = 1
	graphName        = 2
	graphInitializer = 5
	graphInput       = 11
	graphOutput      = 12

	nodeInput     = 1
	nodeOutput    = 2
	nodeName      = 3
	nodeOpType    = 4
	nodeAttribute = 5
	nodeDomain    = 7

	attrName    = 1
	attrF       = 2
	attrI       = 3
	attrS       = 4
	attrT       = 5
	attrG       = 6
	attrFloats  = 7
	attrInts    = 8
	attrStrings = 9
	attrType    = 20

	tensorDims       = 1
	tensorDataType   = 2
	tensorFloatData  = 4
	tensorInt32Data  = 5
	tensorStringData = 6
	tensorInt64Data  = 7
	tensorName       = 8
	tensorRawData    = 9
	tensorDoubleData = 10
	tensorDataLoc    = 14

	valueInfoName = 1
	valueInfoType = 2

	typeTensor   = 1
	typeSequence = 4
	typeMap      = 5

	tensorTypeElem  = 1
	tensorTypeShape = 2
	shapeDim        = 1
	dimValue        = 1
	dimParam        = 2
)

// ONNX TensorProto.DataType values the evaluator knows.
const (
	dtUndefined = 0
	dtFloat     = 1
	dtUint8     = 2
	dtInt8      = 3
	dtInt32     = 6
	dtInt64     = 7
	dtString    = 8
	dtBool      = 9
	dtDouble    = 11
)

// maxTypeDepth bounds recursion through nested TypeProtos (sequence of map of ...).
const maxTypeDepth = 8

var errTruncated = errors.New("truncated or malformed protobuf")

type modelProto struct {
	irVersion int64
	producer  string
	opsets    []opsetProto
	graph     *graphProto
}

type opsetProto struct {
	domain  string
	version int64
}

type graphProto struct {
	name         string
	nodes        []*nodeProto
	initializers []*tensorProto
	inputs       []*valueInfoProto
	outputs      []*valueInfoProto
}

type nodeProto struct {
	name    string
	opType  string
	domain  string
	inputs  []string
	outputs []string
	attrs   []*attrProto
}

type attrProto struct {
	name    string
	typ     int64
	f       float32
	i       int64
	s       []byte
	t       *tensorProto
	g       []byte // a subgraph, unparsed: only Scan's body is read (scanBody)
	floats  []float32
	ints    []int64
	strings [][]byte
}

type tensorProto struct {
	name       string
	dims       []int64
	dataType   int64
	floatData  []float32
	int32Data  []int64
	int64Data  []int64
	doubleData []float64
	stringData [][]byte
	rawData    []byte
	external   bool
}

type valueInfoProto struct {
	name string
	typ  *typeProto
}

// typeProto is a flattened onnx TypeProto: a tensor (elem, dims), a sequence
// of elem, or a map from key to elem.
type typeProto struct {
	kind    string // "tensor", "sequence", "map", or "" (unknown)
	elem    int64  // tensor element type
	dims    []int64
	params  []string // symbolic dim names ("" when the dim has a value)
	hasDims bool
	key     int64      // map key type
	inner   *typeProto // sequence element or map value
}

// fields calls fn for each field of a message, with the field's raw value:
// v for varint and fixed types, b for length-delimited ones.
func fields(data []byte, fn func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error) error {
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		if n < 0 {
			return errTruncated
		}
		data = data[n:]
		var (
			v uint64
			b []byte
		)
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(data)
		case protowire.Fixed32Type:
			var x uint32
			x, n = protowire.ConsumeFixed32(data)
			v = uint64(x)
		case protowire.Fixed64Type:
			v, n = protowire.ConsumeFixed64(data)
		case protowire.BytesType:
			b, n = protowire.ConsumeBytes(data)
		default:
			n = protowire.ConsumeFieldValue(num, typ, data)
			if n < 0 {
				return errTruncated
			}
			data = data[n:]
			continue
		}
		if n < 0 {
			return errTruncated
		}
		data = data[n:]
		if err := fn(num, typ, v, b); err != nil {
			return err
		}
	}
	return nil
}

func parseModel(data []byte) (*modelProto, error) {
	m := &modelProto{}
	err := fields(data, func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error {
		switch {
		case num == modelIRVersion && typ == protowire.VarintType:
			m.irVersion = int64(v)
		case num == modelProducer && typ == protowire.BytesType:
			m.producer = string(b)
		case num == modelOpsetImport && typ == protowire.BytesType:
			var o opsetProto
			err := fields(b, func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error {
				switch {
				case num == opsetDomain && typ == protowire.BytesType:
					o.domain = string(b)
				case num == opsetVersion && typ == protowire.VarintType:
					o.version = int64(v)
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("opset_import: %w", err)
			}
			m.opsets = append(m.opsets, o)
		case num == modelGraph && typ == protowire.BytesType:
			g, err := parseGraph(b)
			if err != nil {
				return fmt.Errorf("graph: %w", err)
			}
			m.graph = g
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

func parseGraph(data []byte) (*graphProto, error) {
	g := &graphProto{}
	err := fields(data, func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case graphName:
			g.name = string(b)
		case graphNode:
			n, err := parseNode(b)
			if err != nil {
				return fmt.Errorf("node %d: %w", len(g.nodes), err)
			}
			g.nodes = append(g.nodes, n)
		case graphInitializer:
			t, err := parseTensor(b)
			if err != nil {
				return fmt.Errorf("initializer %d: %w", len(g.initializers), err)
			}
			g.initializers = append(g.initializers, t)
		case graphInput, graphOutput:
			vi, err := parseValueInfo(b)
			if err != nil {
				return fmt.Errorf("value info: %w", err)
			}
			if num == graphInput {
				g.inputs = append(g.inputs, vi)
			} else {
				g.outputs = append(g.outputs, vi)
			}
		}
		return nil
	})
	return g, err
}

func parseNode(data []byte) (*nodeProto, error) {
	n := &nodeProto{}
	err := fields(data, func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case nodeInput:
			n.inputs = append(n.inputs, string(b))
		case nodeOutput:
			n.outputs = append(n.outputs, string(b))
		case nodeName:
			n.name = string(b)
		case nodeOpType:
			n.opType = string(b)
		case nodeDomain:
			n.domain = string(b)
		case nodeAttribute:
			a, err := parseAttr(b)
			if err != nil {
				return fmt.Errorf("attribute: %w", err)
			}
			n.attrs = append(n.attrs, a)
		}
		return nil
	})
	return n, err
}

func parseAttr(data []byte) (*attrProto, error) {
	a := &attrProto{}
	err := fields(data, func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error {
		var err error
		switch num {
		case attrName:
			if typ == protowire.BytesType {
				a.name = string(b)
			}
		case attrType:
			a.typ = int64(v)
		case attrF:
			if typ == protowire.Fixed32Type {
				a.f = math.Float32frombits(uint32(v))
			}
		case attrI:
			if typ == protowire.VarintType {
				a.i = int64(v)
			}
		case attrS:
			if typ == protowire.BytesType {
				a.s = b
			}
		case attrT:
			if typ == protowire.BytesType {
				a.t, err = parseTensor(b)
			}
		case attrG:
			if typ == protowire.BytesType {
				a.g = b
			}
		case attrFloats:
			a.floats, err = appendFloats(a.floats, typ, v, b)
		case attrInts:
			a.ints, err = appendInts(a.ints, typ, v, b)
		case attrStrings:
			if typ == protowire.BytesType {
				a.strings = append(a.strings, b)
			}
		}
		return err
	})
	return a, err
}

func parseTensor(data []byte) (*tensorProto, error) {
	t := &tensorProto{}
	err := fields(data, func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error {
		var err error
		switch num {
		case tensorDims:
			t.dims, err = appendInts(t.dims, typ, v, b)
		case tensorDataType:
			t.dataType = int64(v)
		case tensorFloatData:
			t.floatData, err = appendFloats(t.floatData, typ, v, b)
		case tensorInt32Data:
			t.int32Data, err = appendInts(t.int32Data, typ, v, b)
		case tensorInt64Data:
			t.int64Data, err = appendInts(t.int64Data, typ, v, b)
		case tensorDoubleData:
			t.doubleData, err = appendDoubles(t.doubleData, typ, v, b)
		case tensorStringData:
			if typ == protowire.BytesType {
				t.stringData = append(t.stringData, b)
			}
		case tensorName:
			if typ == protowire.BytesType {
				t.name = string(b)
			}
		case tensorRawData:
			if typ == protowire.BytesType {
				t.rawData = b
			}
		case tensorDataLoc:
			t.external = v == 1
		}
		return err
	})
	return t, err
}

func parseValueInfo(data []byte) (*valueInfoProto, error) {
	vi := &valueInfoProto{}
	err := fields(data, func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case valueInfoName:
			vi.name = string(b)
		case valueInfoType:
			t, err := parseType(b, 0)
			if err != nil {
				return err
			}
			vi.typ = t
		}
		return nil
	})
	return vi, err
}

func parseType(data []byte, depth int) (*typeProto, error) {
	if depth > maxTypeDepth {
		return nil, errors.New("type nested too deeply")
	}
	t := &typeProto{}
	err := fields(data, func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case typeTensor:
			t.kind = "tensor"
			return fields(b, func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error {
				switch {
				case num == tensorTypeElem && typ == protowire.VarintType:
					t.elem = int64(v)
				case num == tensorTypeShape && typ == protowire.BytesType:
					t.hasDims = true
					return fields(b, func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error {
						if num != shapeDim || typ != protowire.BytesType {
							return nil
						}
						d, p := int64(-1), ""
						err := fields(b, func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error {
							switch {
							case num == dimValue && typ == protowire.VarintType:
								d = int64(v)
							case num == dimParam && typ == protowire.BytesType:
								p = string(b)
							}
							return nil
						})
						t.dims = append(t.dims, d)
						t.params = append(t.params, p)
						return err
					})
				}
				return nil
			})
		case typeSequence:
			t.kind = "sequence"
			return fields(b, func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error {
				if num == 1 && typ == protowire.BytesType {
					in, err := parseType(b, depth+1)
					t.inner = in
					return err
				}
				return nil
			})
		case typeMap:
			t.kind = "map"
			return fields(b, func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error {
				switch {
				case num == 1 && typ == protowire.VarintType:
					t.key = int64(v)
				case num == 2 && typ == protowire.BytesType:
					in, err := parseType(b, depth+1)
					t.inner = in
					return err
				}
				return nil
			})
		}
		return nil
	})
	return t, err
}

// appendInts decodes one occurrence of a repeated int64/int32 field, packed or not.
func appendInts(dst []int64, typ protowire.Type, v uint64, b []byte) ([]int64, error) {
	switch typ {
	case protowire.VarintType:
		return append(dst, int64(v)), nil
	case protowire.BytesType:
		// Each varint takes at least one byte: len(b) bounds the count.
		if len(dst) == 0 {
			dst = make([]int64, 0, countVarints(b))
		}
		for len(b) > 0 {
			x, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return nil, errTruncated
			}
			dst = append(dst, int64(x))
			b = b[n:]
		}
		return dst, nil
	}
	return dst, nil
}

func countVarints(b []byte) int {
	n := 0
	for _, c := range b {
		if c < 0x80 {
			n++
		}
	}
	return n
}

func appendFloats(dst []float32, typ protowire.Type, v uint64, b []byte) ([]float32, error) {
	switch typ {
	case protowire.Fixed32Type:
		return append(dst, math.Float32frombits(uint32(v))), nil
	case protowire.BytesType:
		if len(b)%4 != 0 {
			return nil, errTruncated
		}
		if len(dst) == 0 {
			dst = make([]float32, 0, len(b)/4)
		}
		for i := 0; i < len(b); i += 4 {
			dst = append(dst, math.Float32frombits(binary.LittleEndian.Uint32(b[i:])))
		}
		return dst, nil
	}
	return dst, nil
}

func appendDoubles(dst []float64, typ protowire.Type, v uint64, b []byte) ([]float64, error) {
	switch typ {
	case protowire.Fixed64Type:
		return append(dst, math.Float64frombits(v)), nil
	case protowire.BytesType:
		if len(b)%8 != 0 {
			return nil, errTruncated
		}
		if len(dst) == 0 {
			dst = make([]float64, 0, len(b)/8)
		}
		for i := 0; i < len(b); i += 8 {
			dst = append(dst, math.Float64frombits(binary.LittleEndian.Uint64(b[i:])))
		}
		return dst, nil
	}
	return dst, nil
}

// numElems is the product of dims, or an error when a dim is negative or the
// product exceeds limit (callers pass a bound derived from the file length).
func numElems(dims []int64, limit int64) (int64, error) {
	n := int64(1)
	for _, d := range dims {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension %d", d)
		}
		if d != 0 && n > limit/d {
			return 0, fmt.Errorf("tensor of shape %v is larger than the file", dims)
		}
		n *= d
	}
	if n > limit {
		return 0, fmt.Errorf("tensor of shape %v is larger than the file", dims)
	}
	return n, nil
}

// floats64 returns a numeric tensor's values as float64 (int and bool types
// included), checking the element count against dims.
func (t *tensorProto) floats64() ([]float64, error) {
	if t.external {
		return nil, errors.New("external tensor data is not supported")
	}
	// A tensor's data is in the file, so its count is bounded by the file:
	// 1 byte per element at least (uint8 raw), never more than the bytes held.
	limit := int64(len(t.rawData) + 8*len(t.floatData) + 8*len(t.int32Data) + 8*len(t.int64Data) + 8*len(t.doubleData) + 1)
	n, err := numElems(t.dims, limit)
	if err != nil {
		return nil, err
	}
	out := make([]float64, 0, n)
	if t.rawData != nil {
		raw := t.rawData
		size := map[int64]int{dtFloat: 4, dtDouble: 8, dtInt64: 8, dtInt32: 4, dtUint8: 1, dtInt8: 1, dtBool: 1}[t.dataType]
		if size == 0 {
			return nil, fmt.Errorf("tensor data type %d is not supported", t.dataType)
		}
		if int64(len(raw)) != n*int64(size) {
			return nil, fmt.Errorf("tensor raw data has %d bytes, shape %v needs %d", len(raw), t.dims, n*int64(size))
		}
		for i := 0; i < len(raw); i += size {
			var x float64
			switch t.dataType {
			case dtFloat:
				x = float64(math.Float32frombits(binary.LittleEndian.Uint32(raw[i:])))
			case dtDouble:
				x = math.Float64frombits(binary.LittleEndian.Uint64(raw[i:]))
			case dtInt64:
				x = float64(int64(binary.LittleEndian.Uint64(raw[i:])))
			case dtInt32:
				x = float64(int32(binary.LittleEndian.Uint32(raw[i:])))
			case dtInt8:
				x = float64(int8(raw[i]))
			default:
				x = float64(raw[i])
			}
			out = append(out, x)
		}
		return out, nil
	}
	switch t.dataType {
	case dtFloat:
		for _, x := range t.floatData {
			out = append(out, float64(x))
		}
	case dtDouble:
		out = append(out, t.doubleData...)
	case dtInt64:
		for _, x := range t.int64Data {
			out = append(out, float64(x))
		}
	case dtInt32, dtUint8, dtInt8, dtBool:
		for _, x := range t.int32Data {
			out = append(out, float64(x))
		}
	default:
		return nil, fmt.Errorf("tensor data type %d is not supported", t.dataType)
	}
	if int64(len(out)) != n {
		return nil, fmt.Errorf("tensor holds %d values, shape %v needs %d", len(out), t.dims, n)
	}
	return out, nil
}
