package mlflow

import (
	"fmt"
	"math"

	"github.com/valyala/fastjson"

	"github.com/tally-ml/tally/score"
)

// Keys of a per-row prediction object, in the order they are looked for.
var (
	labelKeys = []string{"label", "predicted_label", "class", "prediction"}
	probKeys  = []string{"probabilities", "probability", "proba", "predict_proba", "scores"}
	valueKeys = []string{"value", "score"}
)

// decode parses a scoring server's answer into out[:n]. A body that is not
// one prediction per row wraps score.ErrUnavailable: the endpoint answered,
// but not with something the node can use.
func (c *Client) decode(body []byte, n int, out []Prediction) error {
	p := c.parsers.Get()
	defer c.parsers.Put(p)
	v, err := p.ParseBytes(body)
	if err != nil {
		return c.garbage("response is not JSON (%v): %s", err, explain(body))
	}
	preds := v
	if v.Type() == fastjson.TypeObject {
		preds = v.Get("predictions")
		if preds == nil {
			return c.garbage(`response has no "predictions": %s`, explain(body))
		}
	}
	if preds.Type() == fastjson.TypeObject {
		return c.decodeColumns(preds, n, out)
	}
	arr, err := preds.Array()
	if err != nil {
		return c.garbage("predictions are a JSON %s, want a list with one entry per row", preds.Type())
	}
	if len(arr) != n {
		return c.garbage("%d predictions for %d rows", len(arr), n)
	}
	for i, e := range arr {
		if err := c.decodeRow(e, &out[i]); err != nil {
			return fmt.Errorf("%w (prediction %d)", err, i)
		}
	}
	return nil
}

// decodeColumns reads a DataFrame answered column-wise: pandas' split
// orient ({"columns": [...], "data": [[row 0], ...]}) or one list per
// column ({"label": [...], "proba": [...]}). A single column is read as a
// bare per-row entry; several as per-row objects keyed by column name.
func (c *Client) decodeColumns(o *fastjson.Value, n int, out []Prediction) error {
	a := c.arenas.Get()
	defer c.arenas.Put(a)
	if data := o.Get("data"); data != nil && data.Type() == fastjson.TypeArray {
		rows, _ := data.Array()
		if len(rows) != n {
			return c.garbage("%d predictions for %d rows", len(rows), n)
		}
		cols := o.GetArray("columns")
		for i, r := range rows {
			e := r
			if cells, err := r.Array(); err == nil {
				switch {
				case len(cells) == 1:
					e = cells[0]
				case len(cols) == len(cells):
					a.Reset()
					obj := a.NewObject()
					for k, cell := range cells {
						obj.Set(columnName(cols[k]), cell)
					}
					e = obj
				}
			}
			if err := c.decodeRow(e, &out[i]); err != nil {
				return fmt.Errorf("%w (prediction %d)", err, i)
			}
		}
		return nil
	}
	obj, _ := o.Object()
	var names []string
	var cols [][]*fastjson.Value
	var bad error
	obj.Visit(func(k []byte, x *fastjson.Value) {
		arr, err := x.Array()
		switch {
		case bad != nil:
		case err != nil:
			bad = c.garbage("prediction column %q is a JSON %s, want a list with one entry per row", k, x.Type())
		case len(arr) != n:
			bad = c.garbage("prediction column %q has %d entries for %d rows", k, len(arr), n)
		default:
			names = append(names, string(k))
			cols = append(cols, arr)
		}
	})
	if bad != nil {
		return bad
	}
	if len(cols) == 0 {
		return c.garbage("predictions are an empty object")
	}
	for i := range n {
		e := cols[0][i]
		if len(cols) > 1 {
			a.Reset()
			row := a.NewObject()
			for k, col := range cols {
				row.Set(names[k], col[i])
			}
			e = row
		}
		if err := c.decodeRow(e, &out[i]); err != nil {
			return fmt.Errorf("%w (prediction %d)", err, i)
		}
	}
	return nil
}

// columnName is a split-orient column name: a string, or a number (pandas'
// default column labels) written as JSON.
func columnName(v *fastjson.Value) string {
	if v.Type() == fastjson.TypeString {
		return string(v.GetStringBytes())
	}
	return string(v.MarshalTo(nil))
}

func (c *Client) garbage(format string, args ...any) error {
	return fmt.Errorf("%w: mlflow: POST %s: %s", score.ErrUnavailable, c.url, fmt.Sprintf(format, args...))
}

// decodeRow sets *p from one row's prediction, keeping the backing array of
// p.Probabilities for reuse.
func (c *Client) decodeRow(e *fastjson.Value, p *Prediction) error {
	probs := p.Probabilities[:0]
	*p = Prediction{}
	switch e.Type() {
	case fastjson.TypeObject:
		return c.setObject(e, probs, p)
	case fastjson.TypeArray:
		return c.setArray(e, probs, p, false)
	default:
		return c.setScalar(e, p, len(c.classes) > 0)
	}
}

// setScalar sets a number, string, bool or null. A number is Value, and
// also the label when label is true and it is integral.
func (c *Client) setScalar(e *fastjson.Value, p *Prediction, label bool) error {
	switch e.Type() {
	case fastjson.TypeNumber:
		f, _ := e.Float64()
		c.setNumber(f, p, label)
	case fastjson.TypeTrue:
		c.setNumber(1, p, true)
	case fastjson.TypeFalse:
		c.setNumber(0, p, true)
	case fastjson.TypeNull:
		p.Value = math.NaN()
	case fastjson.TypeString:
		return c.setString(e.GetStringBytes(), p)
	default:
		return c.garbage("prediction is a %s", e.Type())
	}
	return nil
}

func (c *Client) setNumber(f float64, p *Prediction, label bool) {
	p.Value = f
	if !label || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return
	}
	p.HasLabel = true
	p.Label = int64(f)
	if c.classInts == nil && f >= 0 && int(f) < len(c.classes) {
		// String classes, answered by index.
		p.LabelString = c.classes[int(f)]
	}
}

// setString sets a string label: LabelString, and Label as the class
// (integer classes) or its index in Classes; -1 without Classes.
func (c *Client) setString(s []byte, p *Prediction) error {
	p.HasLabel = true
	if len(c.classes) == 0 {
		p.Label = -1
		p.LabelString = string(s)
		return nil
	}
	for i, cl := range c.classes {
		if cl == string(s) {
			p.LabelString = cl
			p.Label = int64(i)
			if c.classInts != nil {
				p.Label = c.classInts[i]
			}
			return nil
		}
	}
	return c.garbage("label %q is not one of Options.Classes %q", s, c.classes)
}

// setArray sets class probabilities and the label they imply (the most
// probable class). A one-element list without Classes is a Value ([[v]]
// regression output).
func (c *Client) setArray(e *fastjson.Value, probs []float32, p *Prediction, named bool) error {
	arr, _ := e.Array()
	if len(arr) == 1 && len(c.classes) == 0 && !named {
		return c.setScalar(arr[0], p, false)
	}
	if len(c.classes) > 0 && len(arr) != len(c.classes) {
		return c.garbage("%d probabilities for %d classes", len(arr), len(c.classes))
	}
	for _, x := range arr {
		switch x.Type() {
		case fastjson.TypeNumber:
			f, _ := x.Float64()
			probs = append(probs, float32(f))
		case fastjson.TypeNull:
			probs = append(probs, float32(math.NaN()))
		default:
			return c.garbage("probability is a %s", x.Type())
		}
	}
	p.Probabilities = probs
	c.setArgmax(p)
	return nil
}

func (c *Client) setArgmax(p *Prediction) {
	best := -1
	for i, f := range p.Probabilities {
		if !math.IsNaN(float64(f)) && (best < 0 || f > p.Probabilities[best]) {
			best = i
		}
	}
	if best < 0 {
		return
	}
	p.HasLabel = true
	p.Label = int64(best)
	switch {
	case c.classInts != nil:
		p.Label = c.classInts[best]
	case best < len(c.classes):
		p.LabelString = c.classes[best]
	}
}

// setObject reads a per-row object: a label key, a probabilities key, a
// value key, or one number per class named by Classes; failing those, an
// object with a single field is that field's value.
func (c *Client) setObject(e *fastjson.Value, probs []float32, p *Prediction) error {
	found := false
	for _, k := range probKeys {
		if x := e.Get(k); x != nil && x.Type() == fastjson.TypeArray {
			if err := c.setArray(x, probs, p, true); err != nil {
				return err
			}
			found = true
			break
		}
	}
	if !found && len(c.classes) > 0 {
		n := 0
		for _, cl := range c.classes {
			if x := e.Get(cl); x != nil && x.Type() == fastjson.TypeNumber {
				n++
			}
		}
		if n == len(c.classes) {
			for _, cl := range c.classes {
				f, _ := e.Get(cl).Float64()
				probs = append(probs, float32(f))
			}
			p.Probabilities = probs
			c.setArgmax(p)
			found = true
		}
	}
	for _, k := range valueKeys {
		if x := e.Get(k); x != nil && x.Type() == fastjson.TypeNumber {
			p.Value, _ = x.Float64()
			p.HasValue = true // beside a label or probabilities, too
			found = true
			break
		}
	}
	for _, k := range labelKeys {
		x := e.Get(k)
		if x == nil {
			continue
		}
		// A named label wins over the one implied by probabilities, and
		// is not a Value; "prediction" is a Value too (regressors).
		value := p.Value
		if err := c.setScalar(x, p, k != "prediction" || len(c.classes) > 0); err != nil {
			return err
		}
		if k != "prediction" {
			p.Value = value
		}
		found = true
		break
	}
	if found {
		return nil
	}
	o, _ := e.Object()
	if o.Len() == 1 {
		var err error
		o.Visit(func(_ []byte, x *fastjson.Value) {
			err = c.setScalar(x, p, len(c.classes) > 0)
		})
		return err
	}
	if len(c.classes) == 0 && o.Len() > 1 {
		// One number per output of a multi-output regressor, in order.
		numeric := true
		o.Visit(func(_ []byte, x *fastjson.Value) {
			switch x.Type() {
			case fastjson.TypeNumber:
				f, _ := x.Float64()
				probs = append(probs, float32(f))
			case fastjson.TypeNull:
				probs = append(probs, float32(math.NaN()))
			default:
				numeric = false
			}
		})
		if numeric {
			p.Probabilities = probs
			return nil
		}
	}
	return c.garbage("prediction object has none of the keys %q, %q, %q, nor one per class", labelKeys, probKeys, valueKeys)
}
