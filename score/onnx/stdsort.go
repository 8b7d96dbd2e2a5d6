package onnx

import "math/bits"

// libstdc++'s std::nth_element and std::sort (GCC's introselect and
// introsort), which onnxruntime's TopK runs when k is large for the axis.
// With a strict weak order any correct selection and sort give the same
// result, but onnxruntime's comparison is none when values are NaN (a NaN
// neither beats nor loses to anything), so the order these algorithms
// happen to leave matters; they are reproduced step for step.

// topOrder is onnxruntime's TopK comparison of two indices into x: the
// better value first, the lower index first between equal values.
type topOrder struct {
	x       []float64
	largest bool
}

func (o topOrder) less(i, j float64) bool {
	a, b := o.x[int(i)], o.x[int(j)]
	if o.largest {
		return a > b || (a == b && i < j)
	}
	return a < b || (a == b && i < j)
}

// lg is std::__lg: the floor of log2(n), n > 0.
func lg(n int) int { return bits.Len(uint(n)) - 1 }

// stdNthElement is std::nth_element(v, v+nth, v+len(v), o).
func stdNthElement(v []float64, nth int, o topOrder) {
	if len(v) == 0 || nth == len(v) {
		return
	}
	first, last := 0, len(v)
	depth := 2 * lg(last)
	for last-first > 3 {
		if depth == 0 {
			heapSelect(v[first:last], nth-first+1, o)
			v[first], v[nth] = v[nth], v[first]
			return
		}
		depth--
		cut := partitionPivot(v, first, last, o)
		if cut <= nth {
			first = cut
		} else {
			last = cut
		}
	}
	insertionSort(v[first:last], o)
}

// stdSort is std::sort(v, v+len(v), o).
func stdSort(v []float64, o topOrder) {
	if len(v) < 2 {
		return
	}
	introsortLoop(v, 0, len(v), 2*lg(len(v)), o)
	const threshold = 16
	if len(v) > threshold {
		insertionSort(v[:threshold], o)
		for i := threshold; i < len(v); i++ {
			unguardedLinearInsert(v, i, o)
		}
	} else {
		insertionSort(v, o)
	}
}

func introsortLoop(v []float64, first, last, depth int, o topOrder) {
	for last-first > 16 {
		if depth == 0 {
			s := v[first:last]
			heapSelect(s, len(s), o)
			for n := len(s); n > 1; n-- {
				popHeap(s, n-1, n-1, o)
			}
			return
		}
		depth--
		cut := partitionPivot(v, first, last, o)
		introsortLoop(v, cut, last, depth, o)
		last = cut
	}
}

// partitionPivot is std::__unguarded_partition_pivot: the median of
// v[first+1], v[mid], v[last-1] moved to v[first], then a Hoare partition
// of v[first+1:last] around it. The scans stop at the range's ends, where
// a consistent order would stop them anyway.
func partitionPivot(v []float64, first, last int, o topOrder) int {
	mid := first + (last-first)/2
	moveMedianToFirst(v, first, first+1, mid, last-1, o)
	pivot := first
	lo, hi := first+1, last
	for {
		for lo < last && o.less(v[lo], v[pivot]) {
			lo++
		}
		hi--
		for hi > first && o.less(v[pivot], v[hi]) {
			hi--
		}
		if !(lo < hi) {
			return lo
		}
		v[lo], v[hi] = v[hi], v[lo]
		lo++
	}
}

func moveMedianToFirst(v []float64, result, a, b, c int, o topOrder) {
	var m int
	switch {
	case o.less(v[a], v[b]):
		switch {
		case o.less(v[b], v[c]):
			m = b
		case o.less(v[a], v[c]):
			m = c
		default:
			m = a
		}
	case o.less(v[a], v[c]):
		m = a
	case o.less(v[b], v[c]):
		m = c
	default:
		m = b
	}
	v[result], v[m] = v[m], v[result]
}

func insertionSort(v []float64, o topOrder) {
	for i := 1; i < len(v); i++ {
		if o.less(v[i], v[0]) {
			x := v[i]
			copy(v[1:i+1], v[:i])
			v[0] = x
		} else {
			unguardedLinearInsert(v, i, o)
		}
	}
}

func unguardedLinearInsert(v []float64, i int, o topOrder) {
	x := v[i]
	for i > 0 && o.less(x, v[i-1]) {
		v[i] = v[i-1]
		i--
	}
	v[i] = x
}

// heapSelect is std::__heap_select(v, v+middle, v+len(v)): a max-heap of
// the first middle elements, each later element that goes before its top
// swapped in.
func heapSelect(v []float64, middle int, o topOrder) {
	if middle > 1 {
		for parent := (middle - 2) / 2; ; parent-- {
			adjustHeap(v, parent, middle, v[parent], o)
			if parent == 0 {
				break
			}
		}
	}
	for i := middle; i < len(v); i++ {
		if o.less(v[i], v[0]) {
			popHeap(v, middle, i, o)
		}
	}
}

// popHeap is std::__pop_heap(v, v+n, v+result).
func popHeap(v []float64, n, result int, o topOrder) {
	x := v[result]
	v[result] = v[0]
	adjustHeap(v, 0, n, x, o)
}

func adjustHeap(v []float64, hole, n int, x float64, o topOrder) {
	top := hole
	child := hole
	for child < (n-1)/2 {
		child = 2 * (child + 1)
		if o.less(v[child], v[child-1]) {
			child--
		}
		v[hole] = v[child]
		hole = child
	}
	if n&1 == 0 && child == (n-2)/2 {
		child = 2 * (child + 1)
		v[hole] = v[child-1]
		hole = child - 1
	}
	parent := (hole - 1) / 2
	for hole > top && o.less(v[parent], x) {
		v[hole] = v[parent]
		hole = parent
		parent = (hole - 1) / 2
	}
	v[hole] = x
}
